//! Functions by name, across languages.
//!
//! - Python functions exported by name (`RegisterFunction{export: true}`):
//!   a task naming `{PYTHON, name}` with no function id runs the exported
//!   function in the Python worker pool.
//! - Long-running processes of other languages (Go and Rust workers) serve
//!   functions by name (`ServeFunctions`): a task naming `{GO|RUST, name}`
//!   waits in that name's queue and is sent, arguments inline by value, to
//!   a process serving the name with a free slot (`concurrency` each). Such
//!   tasks hold no node resources: the serving process has its own
//!   capacity. If it disconnects mid-task, the task goes to another server
//!   of the name while `max_retries` allows.
//!
//! A task naming a function nobody exported or serves fails at once
//! (UNKNOWN_FUNCTION), naming it.

use std::collections::HashSet;

use bytes::Bytes;
use ember_proto::v1::{self, node_op, object_value::Body};
use ember_proto::{ObjectId, TaskId};

use super::tasks::TaskState;
use super::{system_error, ConnId, NodeCore};

/// A process serving functions by name.
pub(super) struct FunctionServer {
    pub language: i32,
    pub names: HashSet<String>,
    pub concurrency: usize,
    /// Tasks sent to it and not finished.
    pub running: HashSet<TaskId>,
}

/// (language, name): a served function's queue key.
pub(super) type ServedKey = (i32, String);

fn language_name(language: i32) -> String {
    v1::Language::try_from(language)
        .map(|l| l.as_str_name().to_string())
        .unwrap_or_else(|_| format!("language {language}"))
}

impl NodeCore {
    /// `RegisterFunction{export: true}`: the function is callable by name.
    pub(super) fn export_function(&mut self, function: &v1::FunctionDescriptor) {
        if function.name.is_empty() {
            return;
        }
        tracing::info!(name = %function.name, language = function.language, "function exported by name");
        self.exported.insert(
            (function.language, function.name.clone()),
            function.function_id.clone(),
        );
    }

    /// `ServeFunctions` from a process of another language.
    pub(super) fn serve_functions(&mut self, conn: ConnId, req: v1::ServeFunctions) {
        if req.language == v1::Language::Python as i32
            || v1::Language::try_from(req.language).is_err()
        {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                "ServeFunctions: language must be GO or RUST (Python functions are exported \
                 with RegisterFunction{export: true})"
                    .into(),
            );
            self.send_error(conn, 0, err);
            return;
        }
        let server = self.servers.entry(conn).or_insert_with(|| FunctionServer {
            language: req.language,
            names: HashSet::new(),
            concurrency: 1,
            running: HashSet::new(),
        });
        server.language = req.language;
        server.concurrency = (req.concurrency as usize).max(1);
        server.names.extend(req.names.iter().cloned());
        tracing::info!(conn, language = %language_name(req.language), names = ?req.names, concurrency = server.concurrency, "a process serves functions");
        for name in req.names {
            self.pump_served(&(req.language, name));
        }
    }

    /// Whether some process serves `(language, name)` here.
    fn is_served(&self, language: i32, name: &str) -> bool {
        self.servers
            .values()
            .any(|s| s.language == language && s.names.contains(name))
    }

    /// What this node can run by name, as "<LANGUAGE>:<name>" (for the
    /// cluster view: other nodes send such calls here).
    pub(super) fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .servers
            .values()
            .flat_map(|s| {
                let lang = language_name(s.language);
                s.names.iter().map(move |n| format!("{lang}:{n}"))
            })
            .chain(
                self.exported
                    .keys()
                    .map(|(l, n)| format!("{}:{n}", language_name(*l))),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Another live node that can run `(language, name)` by name.
    fn node_running(&self, language: i32, name: &str) -> Option<ember_proto::NodeId> {
        let key = format!("{}:{name}", language_name(language));
        let reachable: HashSet<ember_proto::NodeId> =
            self.remote_nodes().into_iter().map(|r| r.id).collect();
        self.cluster_view
            .iter()
            .filter(|n| n.functions.contains(&key))
            .filter_map(|n| ember_proto::NodeId::from_bytes(&n.node_id).ok())
            .find(|id| reachable.contains(id))
    }

    /// A new task names its function by language and name (no id): find
    /// the exported Python function, or check that someone serves it:
    /// here (`Ok(None)`), or on another node (`Ok(Some(node))`: the task
    /// goes there). The error message when nobody does.
    pub(super) fn resolve_named_function(
        &self,
        spec: &mut v1::TaskSpec,
    ) -> Result<Option<ember_proto::NodeId>, String> {
        let creation = spec.actor_creation.is_some();
        let Some(f) = spec.function.as_mut() else {
            return Ok(None);
        };
        if !f.function_id.is_empty() || f.name.is_empty() {
            return Ok(None);
        }
        if f.language == 0 {
            f.language = v1::Language::Python as i32;
        }
        if f.language == v1::Language::Python as i32 {
            if let Some(id) = self
                .exported
                .get(&(v1::Language::Python as i32, f.name.clone()))
            {
                f.function_id = id.clone();
                return Ok(None);
            }
            if creation {
                // An actor is made here, by its owner: not sent elsewhere.
                return Err(format!(
                    "unknown class: no Python actor class is exported as {:?} on this node \
                     (export one with ember.cross_language.export(cls, {:?}))",
                    f.name, f.name
                ));
            }
            return self
                .node_running(f.language, &f.name)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "unknown function: no Python function is exported as {:?} in the cluster \
                     (export one with ember.cross_language.export(f, {:?}))",
                        f.name, f.name
                    )
                });
        }
        if creation {
            return Err(format!(
                "actors of {} classes are not supported yet (class {:?}); Python actor classes \
                 exported by name are",
                language_name(f.language),
                f.name
            ));
        }
        if self.is_served(f.language, &f.name) {
            return Ok(None);
        }
        self.node_running(f.language, &f.name)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "unknown function: no {} worker serves the function {:?} in the cluster \
                 (start one that registers it and serves: ember.ServeWorker in Go, \
                 Worker::serve in Rust)",
                    language_name(f.language),
                    f.name
                )
            })
    }

    /// A ready task calling a function by name that no process here runs:
    /// send it to a node that runs it, or fail it. True when handled.
    pub(super) fn enqueue_named_elsewhere(&mut self, task_id: TaskId) -> bool {
        let Some(t) = self.tasks.get(&task_id) else {
            return false;
        };
        let Some(f) = t.spec.function.as_ref() else {
            return false;
        };
        if !f.function_id.is_empty()
            || f.name.is_empty()
            || !t.spec.actor_id.is_empty()
            || t.spec.actor_creation.is_some()
            || (f.language != v1::Language::Python as i32 && self.is_served(f.language, &f.name))
        {
            return false;
        }
        let (language, name) = (f.language, f.name.clone());
        match self.node_running(language, &name) {
            Some(node) => {
                if !self.forward(task_id, node) {
                    // Its spilled arguments wait for another task's restore.
                    if let Some(t) = self.tasks.get_mut(&task_id) {
                        t.state = TaskState::RestoringArgs;
                    }
                }
            }
            None => {
                let err = system_error(
                    v1::ErrorKind::UnknownFunction,
                    format!(
                        "unknown function: no node runs the {} function {:?} any more",
                        language_name(language),
                        name
                    ),
                );
                self.fail_task(task_id, err);
            }
        }
        true
    }

    /// The queue key of a task that a serving process runs, if it is one.
    pub(super) fn served_key(spec: &v1::TaskSpec) -> Option<ServedKey> {
        let f = spec.function.as_ref()?;
        let other =
            f.language == v1::Language::Go as i32 || f.language == v1::Language::Rust as i32;
        (other
            && f.function_id.is_empty()
            && spec.actor_id.is_empty()
            && spec.actor_creation.is_none())
        .then(|| (f.language, f.name.clone()))
    }

    /// A served task is ready: it waits for a server of its name.
    pub(super) fn enqueue_served(&mut self, task_id: TaskId, key: ServedKey, front: bool) {
        if let Some(t) = self.tasks.get_mut(&task_id) {
            t.state = TaskState::Queued;
        }
        let queue = self.served.entry(key.clone()).or_default();
        if front {
            queue.push_front(task_id);
        } else {
            queue.push_back(task_id);
        }
        self.pump_served(&key);
    }

    /// Send queued tasks of `key` to servers with a free slot.
    pub(super) fn pump_served(&mut self, key: &ServedKey) {
        loop {
            let Some(&task_id) = self.served.get(key).and_then(|q| q.front()) else {
                return;
            };
            let server = self
                .servers
                .iter()
                .filter(|(_, s)| {
                    s.language == key.0
                        && s.names.contains(&key.1)
                        && s.running.len() < s.concurrency
                })
                .min_by_key(|(_, s)| s.running.len())
                .map(|(c, _)| *c);
            let Some(conn) = server else { return };
            if let Some(q) = self.served.get_mut(key) {
                q.pop_front();
            }
            let Some(t) = self.tasks.get(&task_id) else {
                continue;
            };
            if t.cancelled {
                self.finish_cancelled(task_id);
                continue;
            }
            let mut spec = t.spec.clone();
            // Arguments by value: the serving process reads no shared memory.
            let mut bad = None;
            for (i, arg) in spec.args.iter_mut().enumerate() {
                let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                    if arg
                        .value
                        .as_ref()
                        .is_some_and(|v| v.format == v1::ValueFormat::Pickle as i32)
                    {
                        bad = Some(i);
                    }
                    continue;
                };
                let (Some(obj), Some(data)) = (self.store.get(&id), self.store.read(&id)) else {
                    let err = system_error(
                        v1::ErrorKind::ObjectLost,
                        format!("argument {i} (object {id}) is no longer available"),
                    );
                    arg.value = Some(super::error_value(&err));
                    arg.object_ref = Bytes::new();
                    continue;
                };
                if obj.format == v1::ValueFormat::Pickle as i32 {
                    bad = Some(i);
                }
                arg.value = Some(v1::ObjectValue {
                    format: obj.format,
                    metadata: obj.metadata.clone(),
                    body: Some(Body::InlineData(data)),
                    contained_refs: Vec::new(),
                });
                arg.object_ref = Bytes::new();
            }
            if let Some(i) = bad {
                let err = system_error(
                    v1::ErrorKind::InvalidArgument,
                    format!(
                        "argument {i} of {} function {:?} is a Python-only value (pickle): values \
                         passed to other languages must be msgpack (None, bool, int, float, str, \
                         bytes, lists, dicts) or Arrow",
                        language_name(key.0),
                        key.1
                    ),
                );
                self.fail_task(task_id, err);
                continue;
            }
            if let Some(t) = self.tasks.get_mut(&task_id) {
                t.state = TaskState::Served(conn);
            }
            if let Some(s) = self.servers.get_mut(&conn) {
                s.running.insert(task_id);
            }
            self.send(
                conn,
                node_op::Op::ExecuteTask(v1::ExecuteTask {
                    spec: Some(spec),
                    ..Default::default()
                }),
            );
        }
    }

    /// A serving process finished a task. Returns false when `conn` is not
    /// a serving process (a Python worker's finish is handled elsewhere).
    pub(super) fn served_task_finished(&mut self, conn: ConnId, done: &v1::TaskFinished) -> bool {
        let Some(server) = self.servers.get_mut(&conn) else {
            return false;
        };
        let Ok(task_id) = TaskId::from_bytes(&done.task_id) else {
            return true;
        };
        if !server.running.remove(&task_id) {
            tracing::warn!(%task_id, conn, "finish of a task the process was not running");
            return true;
        }
        let key = self
            .tasks
            .get(&task_id)
            .and_then(|t| Self::served_key(&t.spec));
        match self.tasks.get_mut(&task_id) {
            Some(t) if t.cancelled => self.finish_cancelled(task_id),
            Some(t) if done.retryable_error && t.retries_left != 0 => {
                if t.retries_left > 0 {
                    t.retries_left -= 1;
                }
                if let Some(key) = key.clone() {
                    self.enqueue_served(task_id, key, false);
                }
            }
            Some(_) => self.complete(task_id, done.returns.clone()),
            None => {}
        }
        if let Some(key) = key {
            self.pump_served(&key);
        }
        true
    }

    /// A serving process disconnected: its tasks go to another server of
    /// their name while their retries last.
    pub(super) fn server_gone(&mut self, conn: ConnId) {
        let Some(server) = self.servers.remove(&conn) else {
            return;
        };
        let language = language_name(server.language);
        let mut keys = Vec::new();
        for task_id in server.running {
            let Some(t) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let Some(key) = Self::served_key(&t.spec) else {
                continue;
            };
            if t.retries_left != 0 && !t.cancelled {
                if t.retries_left > 0 {
                    t.retries_left -= 1;
                }
                tracing::warn!(%task_id, function = %key.1, "the {language} process running it disconnected: running it again");
                self.enqueue_served(task_id, key.clone(), true);
            } else {
                let err = system_error(
                    v1::ErrorKind::WorkerCrashed,
                    format!(
                        "the {language} process running {:?} disconnected mid-task and no \
                         retries are left",
                        key.1
                    ),
                );
                self.fail_task(task_id, err);
            }
            keys.push(key);
        }
        for key in keys {
            self.pump_served(&key);
        }
    }
}
