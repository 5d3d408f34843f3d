//! Actors: the actor table, creation on a dedicated worker, method calls
//! forwarded to the actor's worker in the order they were submitted,
//! restarts after a worker dies, kills, named actors and namespaces, and the
//! death of an actor whose owner exits (unless it is detached).
//!
//! An actor's creation is a task (`TaskSpec.actor_creation` set) that goes
//! through the normal path: arguments, the scheduler (with the placement
//! resources), a worker. When it is assigned, the worker's lease switches to
//! the resources the actor holds and the worker becomes the actor's for good.

use std::collections::VecDeque;

use ember_proto::v1::{self, node_op};
use ember_proto::{ActorId, NodeId, ObjectId, TaskId, WorkerId};

use super::residency::RestoreWaiter;
use super::tasks::TaskState;
use super::{system_error, ConnId, ConnKind, NodeCore};

pub(super) struct ActorEntry {
    /// The creation task's spec, submitted again (with a new task id) on restart.
    pub creation_spec: v1::TaskSpec,
    pub creation: v1::ActorCreation,
    pub owner: ConnId,
    pub namespace: String,
    pub state: v1::ActorState,
    pub worker: Option<WorkerId>,
    pub pid: u32,
    pub death_cause: String,
    /// The ERROR value `__init__` raised: every call returns it.
    pub init_error: Option<v1::ObjectValue>,
    pub num_restarts: u32,
    pub restarts_left: i32,
    /// Calls not yet sent to the worker, in submission order.
    pub queue: VecDeque<TaskId>,
    /// The creation task now in flight.
    pub creation_task: Option<TaskId>,
    /// The constructor's arguments are held while the actor may restart;
    /// set once they have been let go (the actor is dead).
    pub args_released: bool,
    /// The other node it was placed on (see `remote`): calls are sent
    /// there, and its state comes from that node's reports.
    pub host: Option<NodeId>,
    /// Calls sent to `host` and not finished, in submission order.
    pub remote_in_flight: VecDeque<TaskId>,
    /// The serving process (a Go or Rust worker) hosting it, for actors of
    /// those languages (see `language`).
    pub server: Option<ConnId>,
    /// Calls sent to `server` and not finished, in submission order.
    pub served_in_flight: VecDeque<TaskId>,
}

impl NodeCore {
    /// The namespace a connection's unqualified names live in.
    pub(super) fn namespace_of(&self, conn: ConnId) -> String {
        let job = match self.conns.get(&conn).map(|c| c.kind) {
            Some(ConnKind::Driver(job)) => Some(job),
            Some(ConnKind::Worker(_)) => ember_proto::JobId::from_bytes(&self.job_of(conn)).ok(),
            _ => None,
        };
        job.and_then(|j| self.namespaces.get(&j).cloned())
            .unwrap_or_default()
    }

    pub(super) fn create_actor(&mut self, conn: ConnId, req: v1::CreateActor) {
        self.create_actor_with(conn, req, false);
    }

    /// A named actor whose name the head has reserved.
    pub(super) fn create_actor_reserved(&mut self, conn: ConnId, req: v1::CreateActor) {
        self.create_actor_with(conn, req, true);
    }

    fn create_actor_with(&mut self, conn: ConnId, req: v1::CreateActor, reserved: bool) {
        let reply_error = |core: &mut Self, kind: v1::ErrorKind, message: String| {
            core.send_error(conn, req.request_id, system_error(kind, message));
        };
        let Some(spec) = req.spec else {
            return reply_error(
                self,
                v1::ErrorKind::InvalidArgument,
                "create_actor without a spec".into(),
            );
        };
        let Some(creation) = spec.actor_creation.clone() else {
            return reply_error(
                self,
                v1::ErrorKind::InvalidArgument,
                "create_actor spec lacks actor_creation".into(),
            );
        };
        let Ok(actor_id) = ActorId::from_bytes(&creation.actor_id) else {
            return reply_error(
                self,
                v1::ErrorKind::InvalidArgument,
                "actor_creation.actor_id must be 16 bytes".into(),
            );
        };
        if let Err(e) = crate::resources::ResourceSet::from_map(&creation.held_resources) {
            return reply_error(
                self,
                v1::ErrorKind::InvalidArgument,
                format!("held_resources: {e}"),
            );
        }
        if self.actors.contains_key(&actor_id) {
            return reply_error(
                self,
                v1::ErrorKind::AlreadyExists,
                format!("actor {actor_id} already exists"),
            );
        }
        let namespace = if creation.namespace.is_empty() {
            self.namespace_of(conn)
        } else {
            creation.namespace.clone()
        };
        // Hosted for another node: that node owns the name (reserved at
        // the head); it is not one of this node's names.
        let hosted = self.conns.get(&conn).is_some_and(|c| c.peer.is_some());
        if !creation.name.is_empty() && !hosted {
            let key = (namespace.clone(), creation.name.clone());
            if let Some(existing) = self.actor_names.get(&key).copied() {
                let alive = self
                    .actors
                    .get(&existing)
                    .is_some_and(|a| a.state != v1::ActorState::Dead);
                if alive {
                    if creation.get_if_exists {
                        let info = self.actor_info(existing);
                        self.send(
                            conn,
                            node_op::Op::ActorReply(v1::ActorReply {
                                request_id: req.request_id,
                                actor: info,
                            }),
                        );
                    } else {
                        reply_error(
                            self,
                            v1::ErrorKind::AlreadyExists,
                            format!(
                                "The name {} (namespace={namespace}) is already taken.",
                                creation.name
                            ),
                        );
                    }
                    return;
                }
            }
            // The head reserves it cluster-wide first.
            if !reserved {
                let req = v1::CreateActor {
                    request_id: req.request_id,
                    spec: Some(spec.clone()),
                    code_search_path: req.code_search_path.clone(),
                };
                if self.reserve_actor_name(conn, req, &namespace) {
                    return;
                }
            }
            self.actor_names.insert(key, actor_id);
        }
        let entry = ActorEntry {
            creation_spec: spec.clone(),
            restarts_left: creation.max_restarts,
            creation,
            owner: conn,
            namespace,
            state: v1::ActorState::Pending,
            worker: None,
            pid: 0,
            death_cause: String::new(),
            init_error: None,
            num_restarts: 0,
            queue: VecDeque::new(),
            creation_task: TaskId::from_bytes(&spec.task_id).ok(),
            args_released: false,
            host: None,
            remote_in_flight: VecDeque::new(),
            server: None,
            served_in_flight: VecDeque::new(),
        };
        self.actors.insert(actor_id, entry);
        if !reserved {
            self.register_actor_at_head(actor_id);
        }
        // A restart runs the constructor again with the same arguments.
        self.hold_actor_args(&spec, true);
        if req.request_id != 0 {
            let info = self.actor_info(actor_id);
            self.send(
                conn,
                node_op::Op::ActorReply(v1::ActorReply {
                    request_id: req.request_id,
                    actor: info,
                }),
            );
        }
        let creation_task = TaskId::from_bytes(&spec.task_id).ok();
        self.submit(
            conn,
            v1::SubmitTask {
                spec: Some(spec),
                code_search_path: req.code_search_path,
            },
        );
        // A creation always waits for a worker: if it is not pending now it was refused.
        if !creation_task.is_some_and(|t| self.tasks.contains_key(&t)) {
            // Refused at once (malformed spec, unknown class): calls fail,
            // saying why (the refusal is the creation's return value).
            let why = creation_task
                .and_then(|t| self.store.read(&ObjectId::for_return(t, 0)))
                .and_then(|data| {
                    use prost::Message;
                    v1::TaskError::decode(data.as_ref()).ok()
                })
                .map(|e| e.message)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "malformed spec or unknown class".into());
            if let Some(a) = self.actors.get_mut(&actor_id) {
                a.state = v1::ActorState::Dead;
                a.creation_task = None;
                a.death_cause = format!("its creation was refused: {why}");
            }
            self.pump_actor(actor_id);
        }
    }

    pub(super) fn get_actor(&mut self, conn: ConnId, req: v1::GetActor) {
        let namespace = if req.namespace.is_empty() {
            self.namespace_of(conn)
        } else {
            req.namespace.clone()
        };
        let found = self
            .actor_names
            .get(&(namespace.clone(), req.name.clone()))
            .copied()
            .filter(|id| {
                self.actors
                    .get(id)
                    .is_some_and(|a| a.state != v1::ActorState::Dead)
            });
        if found.is_none()
            && self.get_actor_from_head(conn, req.request_id, namespace.clone(), req.name.clone())
        {
            return;
        }
        match found {
            Some(id) => {
                let info = self.actor_info(id);
                self.send(
                    conn,
                    node_op::Op::ActorReply(v1::ActorReply {
                        request_id: req.request_id,
                        actor: info,
                    }),
                );
            }
            None => self.send_error(
                conn,
                req.request_id,
                system_error(
                    v1::ErrorKind::NotFound,
                    format!(
                        "Failed to look up actor with name '{}' in namespace '{namespace}'",
                        req.name
                    ),
                ),
            ),
        }
    }

    pub(super) fn actor_info(&self, id: ActorId) -> Option<v1::ActorInfo> {
        let a = self.actors.get(&id)?;
        let mut creation = a.creation.clone();
        creation.namespace = a.namespace.clone();
        Some(v1::ActorInfo {
            actor_id: id.to_vec().into(),
            state: a.state as i32,
            class_function: a.creation_spec.function.clone(),
            creation: Some(creation),
            death_cause: a.death_cause.clone(),
            num_restarts: a.num_restarts,
            node_id: a.host.unwrap_or(self.node_id).to_vec().into(),
            pid: a.pid,
        })
    }

    pub(super) fn all_actor_infos(&self) -> Vec<v1::ActorInfo> {
        self.actors
            .keys()
            .filter_map(|id| self.actor_info(*id))
            .collect()
    }

    /// A method call was submitted (its args may still be missing).
    pub(super) fn submit_actor_call(&mut self, task_id: TaskId, actor_id: ActorId) {
        if !self.actors.contains_key(&actor_id) && self.submit_remote_actor_call(task_id, actor_id)
        {
            return;
        }
        match self.actors.get_mut(&actor_id) {
            Some(a) => a.queue.push_back(task_id),
            None => {
                let err = system_error(
                    v1::ErrorKind::ActorDied,
                    format!("no actor {actor_id} exists on this node (it may have been created elsewhere or never)"),
                );
                self.fail_task(task_id, err);
                return;
            }
        }
        self.pump_actor(actor_id);
    }

    /// Send the actor the calls at the front of its queue whose arguments
    /// exist (in order: a call waiting for arguments holds back later ones),
    /// or fail them all if the actor is dead.
    pub(super) fn pump_actor(&mut self, actor_id: ActorId) {
        let Some(a) = self.actors.get(&actor_id) else {
            self.pump_remote_actor(actor_id);
            return;
        };
        match a.state {
            v1::ActorState::Dead => {
                let release = self.actors.get_mut(&actor_id).and_then(|a| {
                    (!std::mem::replace(&mut a.args_released, true))
                        .then(|| a.creation_spec.clone())
                });
                if let Some(spec) = release {
                    self.hold_actor_args(&spec, false);
                    // Dead for good: the directory hears it once.
                    self.register_actor_at_head(actor_id);
                }
                let queued: Vec<TaskId> = self
                    .actors
                    .get_mut(&actor_id)
                    .map(|a| a.queue.drain(..).collect())
                    .unwrap_or_default();
                for task in queued {
                    self.fail_actor_call(actor_id, task);
                }
            }
            v1::ActorState::Alive => {
                let (worker, host, server) = (a.worker, a.host, a.server);
                if worker.is_none() && host.is_none() && server.is_none() {
                    return;
                }
                loop {
                    let Some(&task) = self.actors.get(&actor_id).and_then(|a| a.queue.front())
                    else {
                        return;
                    };
                    let next = self.next_call(actor_id, task);
                    if matches!(next, NextCall::Wait) {
                        return;
                    }
                    if let Some(a) = self.actors.get_mut(&actor_id) {
                        a.queue.pop_front();
                    }
                    let pins = match next {
                        NextCall::Send(pins) => pins,
                        NextCall::Cancelled => {
                            self.finish_cancelled(task);
                            continue;
                        }
                        _ => continue,
                    };
                    match (worker, host, server) {
                        (Some(worker), _, _) => self.assign(worker, task, pins),
                        (None, Some(node), _) => {
                            if let Some(a) = self.actors.get_mut(&actor_id) {
                                a.remote_in_flight.push_back(task);
                            }
                            self.send_task(task, node, pins);
                        }
                        (None, None, Some(conn)) => {
                            // Sent by value at once: nothing stays pinned.
                            if let Some(t) = self.tasks.get(&task) {
                                self.unpin_args(t, pins);
                            }
                            self.send_served_call(conn, actor_id, task);
                        }
                        (None, None, None) => return,
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the call `task` at the front of `actor_id`'s queue can go
    /// now: its arguments exist and are pinned in memory (spilled ones are
    /// restored first, and later calls wait too: calls run in order).
    pub(super) fn next_call(&mut self, actor_id: ActorId, task: TaskId) -> NextCall {
        let Some(t) = self.tasks.get(&task) else {
            return NextCall::Gone;
        };
        if t.missing_args > 0 {
            return NextCall::Wait;
        }
        if t.cancelled {
            return NextCall::Cancelled;
        }
        match self.pin_args(task) {
            Ok(pins) => NextCall::Send(pins),
            Err(spilled) => {
                for id in spilled {
                    self.request_restore(id, RestoreWaiter::ActorCall(actor_id, task));
                }
                NextCall::Wait
            }
        }
    }

    /// A call to a dead actor: its returns get the death (or `__init__`'s error).
    fn fail_actor_call(&mut self, actor_id: ActorId, task: TaskId) {
        let Some(a) = self.actors.get(&actor_id) else {
            return;
        };
        if let Some(init_error) = a.init_error.clone() {
            let n = self
                .tasks
                .get(&task)
                .map(|t| t.spec.num_returns as usize)
                .unwrap_or(0);
            self.complete(task, vec![init_error; n]);
            return;
        }
        let class = a.creation.class_name.clone();
        let err = system_error(
            v1::ErrorKind::ActorDied,
            format!("The actor {class} ({actor_id}) died: {}", a.death_cause),
        );
        self.fail_task(task, err);
    }

    /// Hold (or let go of) the objects a constructor's arguments refer to.
    fn hold_actor_args(&mut self, spec: &v1::TaskSpec, hold: bool) {
        for arg in &spec.args {
            let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                continue;
            };
            if hold {
                self.objects.entry(id).or_default().arg_uses += 1;
            } else {
                if let Some(o) = self.objects.get_mut(&id) {
                    o.arg_uses = o.arg_uses.saturating_sub(1);
                }
                self.maybe_free(id);
            }
        }
        self.hold_nested_args(spec, hold);
    }

    /// The creation task was assigned to `wid`: the worker is the actor's.
    pub(super) fn actor_placed(&mut self, actor_id: ActorId, wid: WorkerId) {
        let pid = self.workers.get(&wid).and_then(|w| w.pid).unwrap_or(0);
        if let Some(a) = self.actors.get_mut(&actor_id) {
            a.worker = Some(wid);
            a.pid = pid;
        }
    }

    /// The creation task finished: alive, or dead with `__init__`'s error.
    pub(super) fn actor_created(&mut self, actor_id: ActorId, result: Option<&v1::ObjectValue>) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        a.creation_task = None;
        if a.state == v1::ActorState::Dead {
            return;
        }
        match result {
            Some(v) if v.format == v1::ValueFormat::Error as i32 => {
                a.state = v1::ActorState::Dead;
                a.death_cause = "its constructor (__init__) raised an exception".into();
                a.init_error = Some(v.clone());
                let worker = a.worker.take();
                if let Some(pid) = worker
                    .and_then(|w| self.workers.get(&w))
                    .and_then(|w| w.pid)
                {
                    super::signal_worker(pid, libc::SIGKILL);
                }
            }
            _ => a.state = v1::ActorState::Alive,
        }
        self.report_actor(actor_id);
        self.pump_actor(actor_id);
    }

    /// `ember.kill`: with `no_restart` the actor is dead for good.
    pub(super) fn kill_actor(&mut self, req: v1::KillActor) {
        let Ok(actor_id) = ActorId::from_bytes(&req.actor_id) else {
            return;
        };
        self.kill_actor_with(
            actor_id,
            req.no_restart,
            "it was killed with ember.kill()".into(),
        );
    }

    pub(super) fn kill_actor_with(&mut self, actor_id: ActorId, no_restart: bool, cause: String) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        if a.state == v1::ActorState::Dead {
            return;
        }
        if no_restart {
            a.state = v1::ActorState::Dead;
            a.death_cause = cause;
        }
        if let Some(node) = a.host {
            // It runs on another node: that node kills it (and restarts it
            // if it may), and reports.
            if !no_restart && a.restarts_left != 0 {
                a.state = v1::ActorState::Restarting;
            }
            let kill = v1::KillActor {
                actor_id: actor_id.to_vec().into(),
                no_restart,
            };
            self.send_to_peer(node, v1::client_op::Op::KillActor(kill));
            self.pump_actor(actor_id);
            return;
        }
        if a.server.is_some() {
            // A Go or Rust process hosts it: it drops the instance, and the
            // actor restarts (elsewhere too) as if that process had died.
            let in_flight = self.drop_served_actor(actor_id);
            self.actor_worker_died(actor_id, in_flight, "it was killed with ember.kill()");
            return;
        }
        let worker = a.worker;
        let creation_task = a.creation_task;
        let pid = worker
            .and_then(|w| self.workers.get(&w))
            .and_then(|w| w.pid);
        match pid {
            // Its death is handled when its connection closes.
            Some(pid) => {
                if let Some(a) = self.actors.get_mut(&actor_id) {
                    if a.state != v1::ActorState::Dead && a.restarts_left != 0 {
                        // Calls from now on wait for the restart instead of
                        // reaching the worker that is about to die.
                        a.state = v1::ActorState::Restarting;
                    }
                }
                super::signal_worker(pid, libc::SIGKILL)
            }
            None if no_restart => {
                // Not placed yet: drop the pending creation.
                if let Some(task) = creation_task {
                    if let Some(t) = self.tasks.get_mut(&task) {
                        t.cancelled = true;
                        if !matches!(t.state, TaskState::Assigned(_)) {
                            self.finish_cancelled(task);
                        }
                    }
                }
            }
            None => {}
        }
        self.report_actor(actor_id);
        self.pump_actor(actor_id);
    }

    /// The actor's worker died with `in_flight` calls (and maybe the
    /// creation) sent to it.
    pub(super) fn actor_worker_died(
        &mut self,
        actor_id: ActorId,
        in_flight: VecDeque<TaskId>,
        why: &str,
    ) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        a.worker = None;
        a.pid = 0;
        let creation_task = a.creation_task.take();
        if a.state != v1::ActorState::Dead {
            if a.restarts_left != 0 {
                if a.restarts_left > 0 {
                    a.restarts_left -= 1;
                }
                a.num_restarts += 1;
                a.state = v1::ActorState::Restarting;
            } else {
                a.state = v1::ActorState::Dead;
                a.death_cause = format!(
                    "its worker process died ({why}) and it may not restart (max_restarts={})",
                    a.creation.max_restarts
                );
            }
        }
        let restarting = a.state == v1::ActorState::Restarting;
        // The creation that was running: done with, one way or the other.
        if let Some(task) = creation_task {
            if self.tasks.contains_key(&task) {
                let err = system_error(
                    v1::ErrorKind::ActorDied,
                    format!("actor creation interrupted: {why}"),
                );
                self.fail_task(task, err);
            }
        }
        // Calls in flight: sent again after the restart while their retries
        // last, else failed.
        let mut retry = Vec::new();
        for task in in_flight {
            if Some(task) == creation_task {
                continue;
            }
            let Some(t) = self.tasks.get_mut(&task) else {
                continue;
            };
            if restarting && t.retries_left != 0 && !t.cancelled {
                if t.retries_left > 0 {
                    t.retries_left -= 1;
                }
                t.state = TaskState::Queued;
                retry.push(task);
            } else if restarting {
                let err = system_error(
                    v1::ErrorKind::ActorDied,
                    format!(
                        "the actor's worker died ({why}) while running this call and max_task_retries \
                         does not allow sending it again; the actor is restarting"
                    ),
                );
                self.fail_task(task, err);
            } else {
                self.fail_actor_call(actor_id, task);
            }
        }
        if let Some(a) = self.actors.get_mut(&actor_id) {
            for task in retry.into_iter().rev() {
                a.queue.push_front(task);
            }
        }
        self.report_actor(actor_id);
        if restarting {
            self.restart_actor(actor_id);
        } else {
            self.pump_actor(actor_id);
        }
    }

    /// Run the constructor again on a new worker.
    fn restart_actor(&mut self, actor_id: ActorId) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let mut spec = a.creation_spec.clone();
        let task_id = TaskId::random();
        spec.task_id = task_id.to_vec().into();
        a.creation_task = Some(task_id);
        let owner = a.owner;
        tracing::info!(actor = %actor_id, restarts = a.num_restarts, "restarting actor");
        self.submit(
            owner,
            v1::SubmitTask {
                spec: Some(spec),
                ..Default::default()
            },
        );
        // Nobody holds the new creation's return: let it go when done.
        if let Some(c) = self.conns.get_mut(&owner) {
            c.held.remove(&ObjectId::for_return(task_id, 0));
        }
        if let Some(o) = self.objects.get_mut(&ObjectId::for_return(task_id, 0)) {
            o.holders = o.holders.saturating_sub(1);
        }
    }

    /// The method called `exit_actor()`: the actor ends, without restart.
    pub(super) fn actor_exited(&mut self, actor_id: ActorId) {
        if let Some(a) = self.actors.get_mut(&actor_id) {
            a.state = v1::ActorState::Dead;
            a.death_cause = "it called exit_actor()".into();
        }
        self.report_actor(actor_id);
        self.pump_actor(actor_id);
    }

    /// Tell the node that owns `actor_id` (when its owner is another
    /// node's stream) what state the actor is in now.
    fn report_actor(&self, actor_id: ActorId) {
        let Some(a) = self.actors.get(&actor_id) else {
            return;
        };
        if self.conns.get(&a.owner).is_none_or(|c| c.peer.is_none()) {
            return;
        }
        let owner = a.owner;
        let info = self.actor_info(actor_id);
        self.send(
            owner,
            node_op::Op::ActorReply(v1::ActorReply {
                request_id: 0,
                actor: info,
            }),
        );
    }

    /// `node`, which hosts one of this node's actors, reports its state.
    pub(super) fn actor_report(&mut self, node: NodeId, info: v1::ActorInfo) {
        let Ok(actor_id) = ActorId::from_bytes(&info.actor_id) else {
            return;
        };
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        if a.host != Some(node) || a.state == v1::ActorState::Dead {
            return;
        }
        let state = v1::ActorState::try_from(info.state).unwrap_or(v1::ActorState::Pending);
        a.pid = info.pid;
        a.num_restarts = a.num_restarts.max(info.num_restarts);
        if a.creation.max_restarts >= 0 {
            a.restarts_left = (a.creation.max_restarts - a.num_restarts as i32).max(0);
        }
        match state {
            v1::ActorState::Dead => {
                a.state = v1::ActorState::Dead;
                a.death_cause = info.death_cause;
            }
            // Until its constructor's return is here, it is pending.
            v1::ActorState::Alive if a.creation_task.is_some() => {}
            s => a.state = s,
        }
        tracing::debug!(actor = %actor_id, node = %node, state = ?a.state, "actor state reported by its node");
        self.pump_actor(actor_id);
    }

    /// `node`, which hosted actors of this node, is lost: they restart
    /// (elsewhere) while `max_restarts` allows, with the calls that were
    /// running there sent again while their `max_task_retries` allow.
    pub(super) fn actor_host_lost(&mut self, node: NodeId, why: &str) {
        let hosted: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| a.host == Some(node))
            .map(|(id, _)| *id)
            .collect();
        for actor_id in hosted {
            let Some(a) = self.actors.get_mut(&actor_id) else {
                continue;
            };
            a.host = None;
            let in_flight: VecDeque<TaskId> = std::mem::take(&mut a.remote_in_flight)
                .into_iter()
                .filter(|t| {
                    self.tasks
                        .get(t)
                        .is_some_and(|t| t.state == TaskState::Remote(node))
                })
                .collect();
            for task in &in_flight {
                self.peers.received.remove(task);
            }
            if let Some(creation) = self.actors.get(&actor_id).and_then(|a| a.creation_task) {
                self.peers.received.remove(&creation);
            }
            tracing::warn!(actor = %actor_id, node = %node, calls = in_flight.len(), "the node running an actor was lost");
            self.actor_worker_died(
                actor_id,
                in_flight,
                &format!("its node {node} was lost: {why}"),
            );
        }
    }

    /// A connection closed: the non-detached actors it owned die with it.
    /// The node that owned detached actors running here is gone: this
    /// node owns them from now on, and tells the head, so that other nodes
    /// reach them here.
    pub(super) fn adopt_detached(&mut self, conn: ConnId) {
        let adopted: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| {
                a.owner == conn && a.creation.detached && a.state != v1::ActorState::Dead
            })
            .map(|(id, _)| *id)
            .collect();
        for id in adopted {
            tracing::info!(actor = %id, "the node that owned this detached actor is gone: this node owns it now");
            self.register_actor_at_head(id);
        }
    }

    pub(super) fn owner_gone(&mut self, conn: ConnId) {
        let owned: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| {
                a.owner == conn && !a.creation.detached && a.state != v1::ActorState::Dead
            })
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            self.kill_actor_with(
                id,
                true,
                "its owner (the driver or worker that created it) exited".into(),
            );
        }
    }
}

/// What to do with the call at the front of an actor's queue.
pub(super) enum NextCall {
    /// Its arguments are not all here (or in memory) yet: it and the calls
    /// behind it wait.
    Wait,
    /// No longer known: take it off.
    Gone,
    /// Cancelled: take it off, then finish it as cancelled.
    Cancelled,
    /// Send it, its arguments pinned.
    Send(super::residency::ArgPins),
}

/// The actor id of a method call's spec, if it is one.
pub(super) fn call_actor(spec: &v1::TaskSpec) -> Option<ActorId> {
    if spec.actor_id.is_empty() {
        return None;
    }
    ActorId::from_bytes(&spec.actor_id).ok()
}

/// The actor a creation task makes, if it is one.
pub(super) fn created_actor(spec: &v1::TaskSpec) -> Option<ActorId> {
    spec.actor_creation
        .as_ref()
        .and_then(|c| ActorId::from_bytes(&c.actor_id).ok())
}
