//! The owner-side task manager and the local scheduler: submission,
//! argument resolution, queueing by scheduling class, dispatch to leased
//! workers, completion, retries and cancellation.

use std::collections::VecDeque;

use bytes::Bytes;
use ember_proto::v1;
use ember_proto::{NodeId, ObjectId, TaskId, WorkerId};

use super::actors::{call_actor, created_actor};
use super::placement::Placement;
use super::residency::{ArgPins, RestoreWaiter};
use super::{error_value, system_error, ConnId, ConnKind, NodeCore};
use crate::resources::{self, ResourceSet};

/// Most returns a task may declare.
const MAX_RETURNS: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TaskState {
    /// Some ObjectRef arguments do not exist yet.
    WaitingArgs,
    /// Ready, in its class queue.
    Queued,
    /// No node can ever run it (resources exceed every node's total).
    Infeasible,
    /// Sent to this worker (running, or queued behind its running task).
    Assigned(WorkerId),
    /// Ready, but some arguments are spilled: requeued once restored.
    RestoringArgs,
    /// Sent to another node, which runs it (see `remote`).
    Remote(NodeId),
    /// Sent to a process serving its function by name (see `language`).
    Served(ConnId),
}

pub(super) struct TaskEntry {
    pub spec: v1::TaskSpec,
    pub owner: ConnId,
    pub state: TaskState,
    pub request: ResourceSet,
    pub retries_left: i32,
    pub cancelled: bool,
    pub missing_args: usize,
}

impl TaskEntry {
    pub fn display_name(&self) -> String {
        if !self.spec.name.is_empty() {
            return self.spec.name.clone();
        }
        self.spec
            .function
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default()
    }
}

impl NodeCore {
    pub(super) fn submit(&mut self, conn: ConnId, submit: v1::SubmitTask) {
        let Some(mut spec) = submit.spec else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                "submit without a task spec".into(),
            );
            self.send_error(conn, 0, err);
            return;
        };
        let Ok(task_id) = TaskId::from_bytes(&spec.task_id) else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                format!(
                    "malformed task spec: task_id has {} bytes, expected 16",
                    spec.task_id.len()
                ),
            );
            self.send_error(conn, 0, err);
            return;
        };
        if self.tasks.contains_key(&task_id) {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                format!("task {task_id} was already submitted"),
            );
            self.send_error(conn, 0, err);
            return;
        }
        let num_returns = spec.num_returns.min(MAX_RETURNS);
        // The submitter holds each return.
        for i in 0..num_returns {
            self.hold(conn, ObjectId::for_return(task_id, i));
        }
        if spec.job_id.is_empty() {
            spec.job_id = self.job_of(conn).into();
        }
        if !submit.code_search_path.is_empty() {
            // Sent on by another node: its job's code paths, for the workers.
            if let Ok(job) = ember_proto::JobId::from_bytes(&spec.job_id) {
                let paths = self.jobs.entry(job).or_default();
                for path in submit.code_search_path {
                    if !paths.contains(&path) {
                        paths.push(path);
                    }
                }
            }
        }
        let request = match self.validate(&spec) {
            Ok(r) => r,
            Err(message) => {
                let err = system_error(
                    v1::ErrorKind::InvalidArgument,
                    format!("malformed task spec: {message}"),
                );
                self.fail_returns(task_id, num_returns, &err, conn);
                self.counters.failed += 1;
                return;
            }
        };
        let mut runs_on = None;
        if call_actor(&spec).is_none() {
            match self.resolve_named_function(&mut spec) {
                Ok(node) => runs_on = node,
                Err(message) => {
                    let err = system_error(v1::ErrorKind::UnknownFunction, message);
                    self.fail_returns(task_id, num_returns, &err, conn);
                    self.counters.failed += 1;
                    return;
                }
            }
        }
        let served = Self::served_key(&spec).is_some() || runs_on.is_some();
        let fid = spec
            .function
            .as_ref()
            .map(|f| f.function_id.clone())
            .unwrap_or_default();
        let actor_call = call_actor(&spec);
        if actor_call.is_none() && !served && !self.functions.contains_key(&fid) {
            let name = spec
                .function
                .as_ref()
                .map(|f| f.name.clone())
                .unwrap_or_default();
            let err = system_error(
                v1::ErrorKind::UnknownFunction,
                format!(
                    "unknown function: no function is registered with id {} (name {name:?}); \
                     register it before submitting tasks that call it",
                    hex::encode(&fid)
                ),
            );
            self.fail_returns(task_id, num_returns, &err, conn);
            self.counters.failed += 1;
            return;
        }
        // Arguments by reference: hold them, and wait for the missing ones
        // (unless they all live on one other node that can run the task:
        // then it runs there, next to them).
        let absent: Vec<ObjectId> = spec
            .args
            .iter()
            .filter_map(|a| ObjectId::from_bytes(&a.object_ref).ok())
            .filter(|id| !self.store.contains(id))
            .collect();
        // A function by name that only another node runs goes there (once
        // its arguments are here: see `enqueue`).
        let next_to = match runs_on {
            Some(node) => absent.is_empty().then_some(node),
            None => self.node_holding_args(&spec, &absent, &request),
        };
        let mut missing = 0;
        for arg in &spec.args {
            if arg.object_ref.is_empty() {
                continue;
            }
            let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                continue;
            };
            let ready = self.store.contains(&id);
            let entry = self.objects.entry(id).or_default();
            entry.arg_uses += 1;
            if !ready && next_to.is_none() {
                entry.waiting_tasks.push(task_id);
                missing += 1;
                if !self.tasks.contains_key(&id.task_id()) {
                    self.look_up_elsewhere(id);
                }
            }
        }
        self.hold_nested_args(&spec, true);
        let entry = TaskEntry {
            retries_left: spec.max_retries,
            spec,
            owner: conn,
            state: TaskState::WaitingArgs,
            request,
            cancelled: false,
            missing_args: missing,
        };
        self.tasks.insert(task_id, Box::new(entry));
        if let Some(node) = next_to {
            tracing::debug!(%task_id, node = %node, "task sent to the node that holds its arguments");
            self.forward(task_id, node);
            return;
        }
        if let Some(actor) = actor_call {
            self.submit_actor_call(task_id, actor);
        } else if missing == 0 {
            self.enqueue(task_id, false);
            self.dispatch();
        }
    }

    /// Check a spec; returns its resource request.
    fn validate(&self, spec: &v1::TaskSpec) -> Result<ResourceSet, String> {
        if !spec.actor_id.is_empty() {
            ember_proto::ActorId::from_bytes(&spec.actor_id).map_err(|e| e.to_string())?;
        }
        if spec.num_returns > MAX_RETURNS {
            return Err(format!(
                "num_returns {} exceeds {MAX_RETURNS}",
                spec.num_returns
            ));
        }
        let Some(f) = &spec.function else {
            return Err("no function descriptor".into());
        };
        if f.function_id.is_empty() && f.name.is_empty() {
            return Err("the function descriptor has neither a function_id nor a name".into());
        }
        for (i, arg) in spec.args.iter().enumerate() {
            if !arg.object_ref.is_empty() {
                ObjectId::from_bytes(&arg.object_ref).map_err(|e| format!("argument {i}: {e}"))?;
            } else {
                match arg.value.as_ref().and_then(|v| v.body.as_ref()) {
                    Some(v1::object_value::Body::InlineData(_)) => {}
                    Some(v1::object_value::Body::Shm(_) | v1::object_value::Body::StoredSize(_)) => {
                        return Err(format!(
                            "argument {i}: values in shared memory are passed by reference (put them first)"
                        ))
                    }
                    None if arg.value.is_some() => {}
                    None => return Err(format!("argument {i} has neither a value nor an object_ref")),
                }
            }
        }
        resources::task_request(&spec.resources).map_err(|e| e.to_string())
    }

    pub(super) fn job_of(&self, conn: ConnId) -> Vec<u8> {
        match self.conns.get(&conn).map(|c| c.kind) {
            Some(ConnKind::Driver(job)) => job.to_vec(),
            Some(ConnKind::Worker(wid)) => self
                .workers
                .get(&wid)
                .and_then(|w| w.tasks.front())
                .and_then(|t| self.tasks.get(t))
                .map(|t| t.spec.job_id.to_vec())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// One of the task's arguments now exists.
    pub(super) fn arg_ready(&mut self, task_id: TaskId) {
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        t.missing_args = t.missing_args.saturating_sub(1);
        if t.missing_args == 0 && t.state == TaskState::WaitingArgs {
            if let Some(actor) = call_actor(&t.spec) {
                self.pump_actor(actor);
            } else {
                self.enqueue(task_id, false);
                self.dispatch();
            }
        }
    }

    /// Put a ready task in its class queue (at the front when it is handed
    /// back by a worker), or mark it infeasible.
    pub(super) fn enqueue(&mut self, task_id: TaskId, front: bool) {
        if self.enqueue_named_elsewhere(task_id) {
            return;
        }
        if let Some(key) = self
            .tasks
            .get(&task_id)
            .and_then(|t| Self::served_key(&t.spec))
        {
            self.enqueue_served(task_id, key, front);
            return;
        }
        let Some((request, actor)) = self
            .tasks
            .get(&task_id)
            .map(|t| (t.request.clone(), t.spec.actor_creation.is_some()))
        else {
            return;
        };
        let feasible = self.could_run_anywhere(&request);
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if !feasible {
            if t.state != TaskState::Infeasible {
                t.state = TaskState::Infeasible;
                let what = if actor { "actor creation" } else { "task" };
                let msg = format!(
                    "{what} {} ({}) is infeasible: it requires {} but no node has that much \
                     (this node has {}); it stays pending until a node with these resources joins",
                    task_id,
                    t.display_name(),
                    t.request,
                    self.total
                );
                let owner = t.owner;
                self.warn(owner, msg);
            }
            return;
        }
        t.state = TaskState::Queued;
        let class = t.request.clone();
        let queue = self.queues.entry(class.clone()).or_insert_with(|| {
            self.class_order.push(class);
            VecDeque::new()
        });
        if front {
            queue.push_front(task_id);
        } else {
            queue.push_back(task_id);
        }
    }

    /// Start every queued task that can start now.
    pub(super) fn dispatch(&mut self) {
        if self.stopping {
            return;
        }
        // By index: a class that appears meanwhile (a task found infeasible
        // elsewhere and queued again) is dispatched too.
        let mut next = 0;
        while let Some(class) = self.class_order.get(next).cloned() {
            next += 1;
            while let Some(&task_id) = self.queues.get(&class).and_then(|q| q.front()) {
                let still_queued = self
                    .tasks
                    .get(&task_id)
                    .is_some_and(|t| t.state == TaskState::Queued && !t.cancelled);
                if !still_queued {
                    self.queues.get_mut(&class).map(|q| q.pop_front());
                    continue;
                }
                let fits =
                    self.available.contains(&class) && self.gpus.can_acquire(class.get("GPU"));
                // Another node, when the strategy or the resources say so.
                match self.placement_of(task_id, &class, fits) {
                    Placement::Local | Placement::Wait => {}
                    Placement::Remote { node, .. } => {
                        self.queues.get_mut(&class).map(|q| q.pop_front());
                        if !self.forward(task_id, node) {
                            // Waits for another task's restore: keep its place.
                            if let Some(q) = self.queues.get_mut(&class) {
                                q.push_front(task_id);
                            }
                            break;
                        }
                        continue;
                    }
                    Placement::Infeasible => {
                        self.queues.get_mut(&class).map(|q| q.pop_front());
                        self.enqueue(task_id, false);
                        continue;
                    }
                    Placement::Fail(message) => {
                        self.queues.get_mut(&class).map(|q| q.pop_front());
                        self.fail_task(task_id, system_error(v1::ErrorKind::NodeDied, message));
                        continue;
                    }
                }
                // Its shared-memory arguments stay in memory from here on;
                // spilled ones are restored first, when it could run now and
                // no other task is restoring (see `a_task_is_restoring`).
                let pins = match self.pin_args(task_id) {
                    Ok(pins) => pins,
                    Err(spilled) => {
                        if !fits || self.a_task_is_restoring() {
                            break;
                        }
                        self.queues.get_mut(&class).map(|q| q.pop_front());
                        if let Some(t) = self.tasks.get_mut(&task_id) {
                            t.state = TaskState::RestoringArgs;
                        }
                        for id in spilled {
                            self.request_restore(id, RestoreWaiter::Task(task_id));
                        }
                        continue;
                    }
                };
                let worker = if fits {
                    match self.idle.pop() {
                        Some(w) => {
                            self.lease(w, &class);
                            Some(w)
                        }
                        None => {
                            self.want_workers(&class);
                            None
                        }
                    }
                } else if self
                    .tasks
                    .get(&task_id)
                    .is_some_and(|t| t.spec.actor_creation.is_some())
                {
                    // An actor gets a worker of its own.
                    None
                } else {
                    self.pipeline_target(&class, task_id)
                };
                let Some(worker) = worker else {
                    if let Some(t) = self.tasks.get(&task_id) {
                        self.unpin_args(t, pins);
                    }
                    break;
                };
                self.queues.get_mut(&class).map(|q| q.pop_front());
                self.assign(worker, task_id, pins);
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        let queues = &self.queues;
        self.class_order.retain(|c| queues.contains_key(c));
    }

    /// A task whose spilled arguments were restored goes back to the
    /// front of its queue.
    pub(super) fn requeue_restored(&mut self, task_id: TaskId) {
        if self
            .tasks
            .get(&task_id)
            .is_some_and(|t| t.state == TaskState::RestoringArgs)
        {
            self.enqueue(task_id, true);
        }
    }

    /// Send a task to a leased worker, its shared-memory arguments pinned
    /// (`pins`, from `pin_args`): their locations become the worker's grants.
    pub(super) fn assign(&mut self, wid: WorkerId, task_id: TaskId, pins: ArgPins) {
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        t.state = TaskState::Assigned(wid);
        let fid = t
            .spec
            .function
            .as_ref()
            .map(|f| f.function_id.clone())
            .unwrap_or_default();
        let job = ember_proto::JobId::from_bytes(&t.spec.job_id).ok();
        let creating = created_actor(&t.spec);
        // Arguments by reference get their values in a copy of the spec;
        // a spec with none is sent as it lies.
        let mut resolved = if t.spec.args.iter().any(|a| !a.object_ref.is_empty()) {
            Some(t.spec.clone())
        } else {
            None
        };
        let mut granted = Vec::new();
        if let Some(spec) = resolved.as_mut() {
            let mut pins = pins.into_iter();
            for arg in spec.args.iter_mut() {
                let pinned = pins.next().flatten();
                if arg.object_ref.is_empty() {
                    continue;
                }
                arg.value = Some(self.arg_value(&arg.object_ref, pinned, &mut granted));
            }
        }
        let conn = self.workers.get(&wid).and_then(|w| w.conn);
        for id in granted {
            match conn {
                Some(conn) => self.note_grant(conn, id),
                None => self.store.unpin(&id),
            }
        }
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        if w.tasks.is_empty() {
            w.front_since = std::time::Instant::now();
        }
        w.tasks.push_back(task_id);
        let function_payload = if w.seen_functions.insert(fid.clone()) {
            self.functions
                .get(&fid)
                .map(|(p, _)| p.clone())
                .unwrap_or_default()
        } else {
            Bytes::new()
        };
        let code_search_path = match job {
            Some(job) if w.seen_jobs.insert(job) => {
                self.jobs.get(&job).cloned().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let (gpu_ids, assigned) = match &w.lease {
            Some(l) => (
                l.gpu_devices.iter().map(|d| d.to_string()).collect(),
                l.assigned.clone(),
            ),
            None => (Vec::new(), Default::default()),
        };
        let Some(conn) = w.conn else { return };
        let rest = v1::ExecuteTask {
            spec: None,
            function_payload,
            gpu_ids,
            assigned_resources: assigned,
            code_search_path,
        };
        self.send_execute(conn, task_id, resolved, rest);
        if let Some(actor) = creating {
            self.make_actor_worker(wid, actor);
            self.actor_placed(actor, wid);
        }
    }

    pub(super) fn task_finished(&mut self, conn: ConnId, done: v1::TaskFinished) {
        let Some(ConnKind::Worker(wid)) = self.conns.get(&conn).map(|c| c.kind) else {
            return;
        };
        let Ok(task_id) = TaskId::from_bytes(&done.task_id) else {
            return;
        };
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        let Some(pos) = w.tasks.iter().position(|t| *t == task_id) else {
            tracing::warn!(%task_id, worker = %wid, "finish of a task the worker was not running");
            return;
        };
        w.tasks.remove(pos);
        for i in 0..done.returns.len() {
            let id = ObjectId::for_return(task_id, i as u32);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.creating.remove(&id);
            }
        }
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        // The worker made progress: what runs now started at most this long ago.
        w.front_since = std::time::Instant::now();
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let creating = created_actor(&t.spec);
        let calling = call_actor(&t.spec);
        if let Some(actor) = creating {
            let first = done.returns.first().cloned();
            if t.cancelled {
                self.discard_returns(task_id, &done.returns);
                self.finish_cancelled(task_id);
            } else {
                self.complete(task_id, done.returns);
            }
            self.actor_created(actor, first.as_ref());
        } else if t.cancelled {
            self.discard_returns(task_id, &done.returns);
            self.finish_cancelled(task_id);
        } else if done.retryable_error && t.retries_left != 0 && calling.is_none() {
            if t.retries_left > 0 {
                t.retries_left -= 1;
            }
            tracing::info!(%task_id, retries_left = t.retries_left, "retrying task after an exception");
            self.discard_returns(task_id, &done.returns);
            self.enqueue(task_id, false);
        } else if let (Some(actor), true) = (calling, done.actor_exit) {
            // As in Ray, the call that exits the actor reports the actor's end.
            let err = system_error(
                v1::ErrorKind::ActorDied,
                format!("The actor {actor} exited: it called exit_actor()"),
            );
            self.fail_task(task_id, err);
        } else {
            self.complete(task_id, done.returns);
        }
        if let (Some(actor), true) = (calling, done.actor_exit) {
            self.actor_exited(actor);
        }
        self.worker_maybe_idle(wid);
        self.dispatch();
    }

    /// Store a finished task's returns and wake everyone waiting for them.
    pub(super) fn complete(&mut self, task_id: TaskId, returns: Vec<v1::ObjectValue>) {
        let Some(t) = self.tasks.remove(&task_id) else {
            return;
        };
        self.release_args(&t);
        let n = t.spec.num_returns.min(MAX_RETURNS);
        let failed = returns
            .iter()
            .any(|v| v.format == v1::ValueFormat::Error as i32)
            || returns.len() != n as usize;
        if failed {
            self.counters.failed += 1;
        } else {
            self.counters.finished += 1;
        }
        let mut values = returns.into_iter();
        for i in 0..n {
            let id = ObjectId::for_return(task_id, i);
            let value = values.next().unwrap_or_else(|| {
                error_value(&system_error(
                    v1::ErrorKind::Internal,
                    format!("task {task_id} finished without its return {i}"),
                ))
            });
            if !self.objects.contains_key(&id) {
                // Nobody holds or waits for it: drop it at once.
                if let Some(v1::object_value::Body::Shm(_)) = value.body {
                    self.store.abort(id);
                }
                continue;
            }
            self.store_value(id, value);
            self.push_to_owner(t.owner, id);
            self.object_ready(id);
        }
        // Returns beyond num_returns: free their blocks.
        for (extra, v) in values.enumerate() {
            if let Some(v1::object_value::Body::Shm(_)) = v.body {
                self.store
                    .abort(ObjectId::for_return(task_id, n + extra as u32));
            }
        }
    }

    /// The submitter is told about each return without asking.
    pub(super) fn push_to_owner(&mut self, owner: ConnId, id: ObjectId) {
        let holds = self.conns.get(&owner).is_some_and(|c| c.held.contains(&id));
        if !holds {
            return;
        }
        let entry = self.objects.entry(id).or_default();
        if !entry.subscribers.contains(&owner) {
            entry.subscribers.push(owner);
        }
    }

    /// Throw away returns a worker produced for a task that will not use them.
    fn discard_returns(&mut self, task_id: TaskId, returns: &[v1::ObjectValue]) {
        for (i, v) in returns.iter().enumerate() {
            if let Some(v1::object_value::Body::Shm(_)) = v.body {
                self.store.abort(ObjectId::for_return(task_id, i as u32));
            }
        }
    }

    /// Fail a task for good with `err` in each return.
    pub(super) fn fail_task(&mut self, task_id: TaskId, err: v1::TaskError) {
        let Some(t) = self.tasks.get(&task_id) else {
            return;
        };
        let n = t.spec.num_returns.min(MAX_RETURNS) as usize;
        let mut err = err;
        err.task_id = task_id.to_vec().into();
        err.function_name = t.display_name();
        let value = error_value(&err);
        self.complete(task_id, vec![value; n]);
    }

    pub(super) fn finish_cancelled(&mut self, task_id: TaskId) {
        let name = self
            .tasks
            .get(&task_id)
            .map(|t| t.display_name())
            .unwrap_or_default();
        let err = system_error(
            v1::ErrorKind::TaskCancelled,
            format!("task {task_id} ({name}) was cancelled"),
        );
        self.fail_task(task_id, err);
    }

    /// Fail the returns of a task that was never accepted.
    fn fail_returns(&mut self, task_id: TaskId, n: u32, err: &v1::TaskError, owner: ConnId) {
        let mut err = err.clone();
        err.task_id = task_id.to_vec().into();
        let value = error_value(&err);
        for i in 0..n {
            let id = ObjectId::for_return(task_id, i);
            self.store.delete(&id);
            self.store_value(id, value.clone());
            self.push_to_owner(owner, id);
            self.object_ready(id);
        }
    }

    pub(super) fn release_args(&mut self, t: &TaskEntry) {
        self.hold_nested_args(&t.spec, false);
        for arg in &t.spec.args {
            let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                continue;
            };
            if let Some(o) = self.objects.get_mut(&id) {
                o.arg_uses = o.arg_uses.saturating_sub(1);
                o.waiting_tasks.retain(|w| *w != t.spec_task_id());
            }
            self.maybe_free(id);
        }
    }

    /// A worker died with `tasks` assigned (the first was running).
    pub(super) fn requeue_after_crash(&mut self, tasks: VecDeque<TaskId>, why: &str) {
        for (i, task_id) in tasks.into_iter().enumerate() {
            let Some(t) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            if t.cancelled {
                self.finish_cancelled(task_id);
                continue;
            }
            if i > 0 {
                // Queued behind the running task: it never started.
                self.enqueue(task_id, true);
                continue;
            }
            if t.retries_left != 0 {
                if t.retries_left > 0 {
                    t.retries_left -= 1;
                }
                tracing::info!(%task_id, retries_left = t.retries_left, "retrying task after its worker died");
                self.enqueue(task_id, true);
            } else {
                let name = t.display_name();
                let err = system_error(
                    v1::ErrorKind::WorkerCrashed,
                    format!(
                        "the worker running task {task_id} ({name}) died ({why}) and no retries are left \
                         (max_retries={})",
                        t.spec.max_retries
                    ),
                );
                self.fail_task(task_id, err);
            }
        }
    }

    /// Tasks whose worker cannot be started: fail the queued ones.
    pub(super) fn fail_queued(&mut self, err: v1::TaskError) {
        let queued: Vec<TaskId> = self.queues.values().flatten().copied().collect();
        self.queues.clear();
        self.class_order.clear();
        for task_id in queued {
            self.fail_task(task_id, err.clone());
        }
    }

    pub(super) fn cancel(&mut self, conn: ConnId, req: v1::CancelTask) {
        let Ok(task_id) = TaskId::from_bytes(&req.task_id) else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                "cancel of a malformed task id".into(),
            );
            self.send_error(conn, 0, err);
            return;
        };
        self.cancel_task(task_id, req.force, req.recursive);
        self.dispatch();
    }

    fn cancel_task(&mut self, task_id: TaskId, force: bool, recursive: bool) {
        if recursive {
            let children: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.spec.parent_task_id.as_ref() == task_id.as_bytes())
                .map(|(id, _)| *id)
                .collect();
            for child in children {
                self.cancel_task(child, force, true);
            }
        }
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if t.cancelled {
            return;
        }
        t.cancelled = true;
        if let Some(actor) = call_actor(&t.spec) {
            // As in Ray, a call not started yet never runs, and one its actor
            // runs is not interrupted (the actor's state would be left half
            // changed; an async actor's coroutine is cancelled instead): its
            // result is replaced by the cancellation. Never force-killed.
            match t.state {
                TaskState::Assigned(wid) => self.name_cancelled_for_worker(task_id, wid),
                TaskState::Remote(node) => {
                    let cancel = v1::CancelTask {
                        task_id: task_id.to_vec().into(),
                        force: false,
                        recursive,
                    };
                    self.send_to_peer(node, v1::client_op::Op::CancelTask(cancel));
                }
                TaskState::Served(_) => {}
                _ => {
                    if let Some(a) = self.actors.get_mut(&actor) {
                        a.queue.retain(|q| *q != task_id);
                    }
                    self.finish_cancelled(task_id);
                }
            }
            return;
        }
        match t.state {
            TaskState::Remote(node) => {
                // The node running it cancels it; its returns come back as
                // TASK_CANCELLED (or its result, if it finished first).
                let cancel = v1::CancelTask {
                    task_id: task_id.to_vec().into(),
                    force,
                    recursive,
                };
                self.send_to_peer(node, v1::client_op::Op::CancelTask(cancel));
            }
            TaskState::WaitingArgs
            | TaskState::Queued
            | TaskState::Infeasible
            | TaskState::RestoringArgs => {
                self.finish_cancelled(task_id);
            }
            // The process running it is not interrupted: its result is
            // replaced by the cancellation when it comes back.
            TaskState::Served(_) => {}
            TaskState::Assigned(wid) => {
                let Some(w) = self.workers.get(&wid) else {
                    return;
                };
                if force && w.tasks.front() == Some(&task_id) {
                    if let Some(pid) = w.pid {
                        super::signal_worker(pid, libc::SIGKILL);
                    }
                    return;
                }
                // A queued task is not force-killed: that would kill the task
                // the worker runs.
                self.name_cancelled_for_worker(task_id, wid);
            }
        }
    }

    /// Name `task_id` in its worker's cancel file, then SIGINT the worker:
    /// the worker never starts it if it is still queued there, and
    /// interrupts it if it runs it (a task: KeyboardInterrupt; an async
    /// actor's call: its asyncio task cancelled; other actor calls run on).
    /// Its TaskFinished comes back cancelled, or its result, which is
    /// dropped. Appended, one id a line: two cancels in a row may reach the
    /// worker as one signal.
    fn name_cancelled_for_worker(&self, task_id: TaskId, wid: WorkerId) {
        let Some(pid) = self.workers.get(&wid).and_then(|w| w.pid) else {
            return;
        };
        let dir = self.cfg.session_dir.join("cancel");
        let _ = std::fs::create_dir_all(&dir);
        let line = format!("{}\n", task_id.hex());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(pid.to_string()))
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(error) = written {
            tracing::warn!(%task_id, %error, "cannot name the cancelled task for its worker");
        }
        super::signal_worker(pid, libc::SIGINT);
    }
}

impl TaskEntry {
    fn spec_task_id(&self) -> TaskId {
        TaskId::from_bytes(&self.spec.task_id).unwrap_or(TaskId([0; 16]))
    }
}
