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
//! - Such processes host actors of the classes they name
//!   (`ServeFunctions.actor_classes`): an actor's creation waits in its
//!   class's queue like a function call and is sent to a process serving
//!   the class; from then on the actor's calls go to that process in
//!   submission order (outside its `concurrency`, which counts function
//!   calls and constructors). If the process disconnects, its actors
//!   restart on another process serving the class while `max_restarts`
//!   allows; a kill tells the process to drop the instance (`drop_actor`).
//!
//! A task naming a function nobody exported or serves fails at once
//! (UNKNOWN_FUNCTION), naming it; so does an actor of a class nobody serves.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use ember_proto::v1::{self, node_op, object_value::Body};
use ember_proto::{ActorId, ObjectId, TaskId};

use super::actors::{call_actor, created_actor};
use super::tasks::TaskState;
use super::{system_error, ConnId, ConnKind, NodeCore};

/// A process serving functions (and actor classes) by name.
pub(super) struct FunctionServer {
    pub language: i32,
    pub names: HashSet<String>,
    /// Actor classes it can host.
    pub classes: HashSet<String>,
    pub concurrency: usize,
    /// Function calls and constructors sent to it and not finished (at
    /// most `concurrency`).
    pub running: HashSet<TaskId>,
    /// Actors it hosts (created, or being created).
    pub actors: HashSet<ActorId>,
    pub pid: u32,
}

/// What a served task waits for: a process serving the function `name`
/// of `language`, or (for an actor's creation) the class `name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ServedKey {
    pub language: i32,
    pub name: String,
    pub class: bool,
}

impl FunctionServer {
    fn serves(&self, key: &ServedKey) -> bool {
        self.language == key.language
            && if key.class {
                self.classes.contains(&key.name)
            } else {
                self.names.contains(&key.name)
            }
    }
}

/// How a class appears among a node's names in the cluster view.
fn class_key(language: i32, name: &str) -> String {
    format!("{}:class:{name}", language_name(language))
}

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
        let pid = match self.conns.get(&conn).map(|c| c.kind) {
            Some(ConnKind::Driver(job)) => self.job_infos.get(&job).map_or(0, |j| j.driver_pid),
            _ => 0,
        };
        let server = self.servers.entry(conn).or_insert_with(|| FunctionServer {
            language: req.language,
            names: HashSet::new(),
            classes: HashSet::new(),
            concurrency: 1,
            running: HashSet::new(),
            actors: HashSet::new(),
            pid,
        });
        server.language = req.language;
        server.concurrency = (req.concurrency as usize).max(1);
        server.names.extend(req.names.iter().cloned());
        server.classes.extend(req.actor_classes.iter().cloned());
        tracing::info!(conn, language = %language_name(req.language), names = ?req.names, classes = ?req.actor_classes, concurrency = server.concurrency, "a process serves functions");
        let keys = req
            .names
            .into_iter()
            .map(|name| (name, false))
            .chain(req.actor_classes.into_iter().map(|name| (name, true)));
        for (name, class) in keys {
            self.pump_served(&ServedKey {
                language: req.language,
                name,
                class,
            });
        }
    }

    /// Whether some process here serves the function (or class) `key`.
    fn is_served(&self, key: &ServedKey) -> bool {
        self.servers.values().any(|s| s.serves(key))
    }

    /// What this node can run by name, as "<LANGUAGE>:<name>" (for the
    /// cluster view: other nodes send such calls here).
    pub(super) fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .servers
            .values()
            .flat_map(|s| {
                let lang = language_name(s.language);
                s.names
                    .iter()
                    .map(move |n| format!("{lang}:{n}"))
                    .chain(s.classes.iter().map(|c| class_key(s.language, c)))
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

    /// Another live node that can run `(language, name)` by name (or host
    /// the class `name` when `class`).
    fn node_running(&self, language: i32, name: &str, class: bool) -> Option<ember_proto::NodeId> {
        let key = if class {
            class_key(language, name)
        } else {
            format!("{}:{name}", language_name(language))
        };
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
        // A restart waits for a process serving its class: one may be
        // starting again.
        let restart = created_actor(spec)
            .and_then(|id| self.actors.get(&id))
            .is_some_and(|a| a.num_restarts > 0);
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
                .node_running(f.language, &f.name, false)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "unknown function: no Python function is exported as {:?} in the cluster \
                     (export one with ember.cross_language.export(f, {:?}))",
                        f.name, f.name
                    )
                });
        }
        let key = ServedKey {
            language: f.language,
            name: f.name.clone(),
            class: creation,
        };
        if self.is_served(&key) || (creation && restart) {
            return Ok(None);
        }
        if creation {
            return self
                .node_running(f.language, &f.name, true)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "unknown class: no {} worker serves the actor class {:?} in the cluster \
                     (start one that registers it and serves: ember.RegisterActor + \
                     ember.ServeWorker in Go, Worker::register_actor + serve in Rust)",
                        language_name(f.language),
                        f.name
                    )
                });
        }
        self.node_running(f.language, &f.name, false)
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
            || (f.language != v1::Language::Python as i32
                && self.is_served(&ServedKey {
                    language: f.language,
                    name: f.name.clone(),
                    class: false,
                }))
        {
            return false;
        }
        let (language, name) = (f.language, f.name.clone());
        match self.node_running(language, &name, false) {
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

    /// The queue key of a task that a serving process runs (a function
    /// call, or an actor's creation), if it is one. Calls to its actors are
    /// not queued by name: they go to the process hosting the actor.
    pub(super) fn served_key(spec: &v1::TaskSpec) -> Option<ServedKey> {
        let f = spec.function.as_ref()?;
        let other =
            f.language == v1::Language::Go as i32 || f.language == v1::Language::Rust as i32;
        (other && f.function_id.is_empty() && spec.actor_id.is_empty()).then(|| ServedKey {
            language: f.language,
            name: f.name.clone(),
            class: spec.actor_creation.is_some(),
        })
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
                .filter(|(_, s)| s.serves(key) && s.running.len() < s.concurrency)
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
            let inlined = match self.inlined_copy(&t.spec) {
                Ok(inlined) => inlined,
                Err(err) => {
                    self.fail_task(task_id, *err);
                    continue;
                }
            };
            let creating = created_actor(&t.spec);
            if let Some(t) = self.tasks.get_mut(&task_id) {
                t.state = TaskState::Served(conn);
            }
            let Some(server) = self.servers.get_mut(&conn) else {
                continue;
            };
            server.running.insert(task_id);
            if let Some(actor) = creating {
                server.actors.insert(actor);
                let pid = server.pid;
                if let Some(a) = self.actors.get_mut(&actor) {
                    a.server = Some(conn);
                    a.pid = pid;
                }
            }
            self.send_execute(conn, task_id, inlined, v1::ExecuteTask::default());
        }
    }

    /// Send queued work to `conn`, which has a free slot.
    fn pump_server(&mut self, conn: ConnId) {
        let keys: Vec<ServedKey> = match self.servers.get(&conn) {
            Some(s) => self
                .served
                .iter()
                .filter(|(k, q)| !q.is_empty() && s.serves(k))
                .map(|(k, _)| k.clone())
                .collect(),
            None => return,
        };
        for key in keys {
            self.pump_served(&key);
        }
    }

    /// `spec` with every argument inline, by value (a serving process
    /// reads no shared memory), in a copy; `None` when it has no argument
    /// by reference, and can be sent as it lies. A Python-only (pickle)
    /// argument is refused.
    fn inlined_copy(
        &self,
        spec: &v1::TaskSpec,
    ) -> Result<Option<v1::TaskSpec>, Box<v1::TaskError>> {
        let pickle = |v: &Option<v1::ObjectValue>| {
            v.as_ref()
                .is_some_and(|v| v.format == v1::ValueFormat::Pickle as i32)
        };
        if !spec
            .args
            .iter()
            .any(|arg| !arg.object_ref.is_empty() || pickle(&arg.value))
        {
            return Ok(None);
        }
        let mut spec = spec.clone();
        let (language, name) = spec
            .function
            .as_ref()
            .map(|f| (f.language, f.name.clone()))
            .unwrap_or_default();
        let mut bad = None;
        for (i, arg) in spec.args.iter_mut().enumerate() {
            let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                if pickle(&arg.value) {
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
        match bad {
            None => Ok(Some(spec)),
            Some(i) => Err(Box::new(system_error(
                v1::ErrorKind::InvalidArgument,
                format!(
                    "argument {i} of {} {} {name:?} is a Python-only value (pickle): values \
                     passed to other languages must be msgpack (None, bool, int, float, str, \
                     bytes, lists, dicts) or Arrow",
                    language_name(language),
                    if spec.actor_creation.is_some() {
                        "actor class"
                    } else if spec.actor_id.is_empty() {
                        "function"
                    } else {
                        "actor method of"
                    },
                ),
            ))),
        }
    }

    /// Send the call `task` to the process hosting `actor_id`.
    pub(super) fn send_served_call(&mut self, conn: ConnId, actor_id: ActorId, task: TaskId) {
        let Some(t) = self.tasks.get(&task) else {
            return;
        };
        let inlined = match self.inlined_copy(&t.spec) {
            Ok(inlined) => inlined,
            Err(err) => {
                self.fail_task(task, *err);
                return;
            }
        };
        if let Some(t) = self.tasks.get_mut(&task) {
            t.state = TaskState::Served(conn);
        }
        if let Some(a) = self.actors.get_mut(&actor_id) {
            a.served_in_flight.push_back(task);
        }
        self.send_execute(conn, task, inlined, v1::ExecuteTask::default());
    }

    /// The actor `actor_id`, hosted by a serving process, is killed: the
    /// process drops the instance. Returns the calls it was running (their
    /// results, if any come, are ignored).
    pub(super) fn drop_served_actor(&mut self, actor_id: ActorId) -> VecDeque<TaskId> {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return VecDeque::new();
        };
        let Some(conn) = a.server.take() else {
            return VecDeque::new();
        };
        a.pid = 0;
        let in_flight = std::mem::take(&mut a.served_in_flight);
        if let Some(s) = self.servers.get_mut(&conn) {
            s.actors.remove(&actor_id);
        }
        self.send(
            conn,
            node_op::Op::DropActor(v1::KillActor {
                actor_id: actor_id.to_vec().into(),
                no_restart: true,
            }),
        );
        in_flight
            .into_iter()
            .filter(|t| {
                self.tasks
                    .get(t)
                    .is_some_and(|t| t.state == TaskState::Served(conn))
            })
            .collect()
    }

    /// A serving process finished a task (its returns are taken out of
    /// `done`). Returns false, `done` untouched, when `conn` is not a
    /// serving process (a Python worker's finish is handled elsewhere).
    pub(super) fn served_task_finished(
        &mut self,
        conn: ConnId,
        done: &mut v1::TaskFinished,
    ) -> bool {
        let Some(server) = self.servers.get_mut(&conn) else {
            return false;
        };
        let Ok(task_id) = TaskId::from_bytes(&done.task_id) else {
            return true;
        };
        let counted = server.running.remove(&task_id);
        let Some(t) = self.tasks.get(&task_id) else {
            // Failed already (its actor was killed, or it was cancelled):
            // its slot is free again.
            if counted {
                self.pump_server(conn);
            }
            return true;
        };
        if t.state != TaskState::Served(conn) {
            tracing::warn!(%task_id, conn, "finish of a task the process was not running");
            return true;
        }
        let (creating, calling) = (created_actor(&t.spec), call_actor(&t.spec));
        let key = Self::served_key(&t.spec);
        if let Some(actor) = calling {
            // An actor's call: it was in flight there, in order.
            if let Some(a) = self.actors.get_mut(&actor) {
                a.served_in_flight.retain(|q| *q != task_id);
            }
            let cancelled = t.cancelled;
            if cancelled {
                self.finish_cancelled(task_id);
            } else if done.actor_exit {
                let err = system_error(
                    v1::ErrorKind::ActorDied,
                    format!("The actor {actor} exited: its method asked to"),
                );
                self.fail_task(task_id, err);
                self.drop_served_actor(actor);
                self.actor_exited(actor);
            } else {
                self.complete(task_id, std::mem::take(&mut done.returns));
            }
            return true;
        }
        if !counted {
            tracing::warn!(%task_id, conn, "finish of a task the process was not running");
            return true;
        }
        if let Some(actor) = creating {
            let first = done.returns.first().cloned();
            if t.cancelled {
                self.finish_cancelled(task_id);
            } else {
                self.complete(task_id, std::mem::take(&mut done.returns));
            }
            self.actor_created(actor, first.as_ref());
            // A constructor that failed left no instance: the actor is dead.
            let dead = self
                .actors
                .get(&actor)
                .is_some_and(|a| a.state == v1::ActorState::Dead);
            if dead {
                self.drop_served_actor(actor);
            }
        } else {
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
                Some(_) => self.complete(task_id, std::mem::take(&mut done.returns)),
                None => {}
            }
        }
        if let Some(key) = key {
            self.pump_served(&key);
        }
        true
    }

    /// A serving process disconnected: its actors restart on another
    /// process serving their class while `max_restarts` allows; its
    /// function calls go to another server of their name while their
    /// retries last.
    pub(super) fn server_gone(&mut self, conn: ConnId) {
        let Some(server) = self.servers.remove(&conn) else {
            return;
        };
        let language = language_name(server.language);
        for actor_id in &server.actors {
            let Some(a) = self.actors.get_mut(actor_id) else {
                continue;
            };
            if a.server != Some(conn) {
                continue;
            }
            a.server = None;
            let in_flight: VecDeque<TaskId> = std::mem::take(&mut a.served_in_flight)
                .into_iter()
                .filter(|t| {
                    self.tasks
                        .get(t)
                        .is_some_and(|t| t.state == TaskState::Served(conn))
                })
                .collect();
            tracing::warn!(actor = %actor_id, calls = in_flight.len(), "the {language} process hosting an actor disconnected");
            self.actor_worker_died(
                *actor_id,
                in_flight,
                &format!("the {language} process hosting it disconnected"),
            );
        }
        let mut keys = Vec::new();
        for task_id in server.running {
            let Some(t) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let Some(key) = Self::served_key(&t.spec) else {
                continue;
            };
            if key.class {
                continue; // its actor's restart (above) dealt with it
            }
            if t.retries_left != 0 && !t.cancelled {
                if t.retries_left > 0 {
                    t.retries_left -= 1;
                }
                tracing::warn!(%task_id, function = %key.name, "the {language} process running it disconnected: running it again");
                self.enqueue_served(task_id, key.clone(), true);
            } else {
                let err = system_error(
                    v1::ErrorKind::WorkerCrashed,
                    format!(
                        "the {language} process running {:?} disconnected mid-task and no \
                         retries are left",
                        key.name
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
