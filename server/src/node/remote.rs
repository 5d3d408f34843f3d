//! Tasks on other nodes: this node stays the owner of a task it sends to
//! another node (spillback, SPREAD, node affinity, resources only another
//! node has), and of its returns.
//!
//! The task goes out on this node's stream to the other node (`peers`),
//! which runs it as it runs any client's task: its function is registered
//! there first, its arguments by reference travel as values (read from
//! this node's store). Returns come back as `ObjectReady`: small ones
//! inline; large ones are pulled over Arrow Flight (`raw:` tickets) into
//! this node's store. Either way the other node's copy is then released.
//! If the other node dies (its stream breaks, or the head declares it
//! dead), its tasks are sent again, elsewhere, as a retry.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use ember_proto::v1::{self, client_op, node_op, object_value::Body};
use ember_proto::{ActorId, NodeId, ObjectId, TaskId};

use super::actors::{call_actor, created_actor};
use super::placement::{place, LocalNode, Placement, RemoteNode};
use super::tasks::TaskState;
use super::{error_value, system_error, NodeCore};
use crate::peers::PeerCommand;
use crate::resources::ResourceSet;

/// What this node keeps about the other nodes it sends work to.
#[derive(Default)]
pub(super) struct Peers {
    /// Round robin position for SPREAD.
    pub spread_cursor: usize,
    /// Resources of the tasks sent to each node and not finished.
    pub sent: HashMap<NodeId, ResourceSet>,
    /// Functions registered at each node.
    pub functions: HashMap<NodeId, HashSet<Bytes>>,
    /// Returns being pulled, and from where.
    pub pulls: HashMap<ObjectId, NodeId>,
    /// Returns received per remote task (by index).
    pub received: HashMap<TaskId, HashSet<u32>>,
    /// Nodes whose stream broke, and when: no work is sent there for
    /// `LOST_FOR` (the head declares them dead meanwhile, or they recover).
    pub lost: HashMap<NodeId, std::time::Instant>,
    /// Objects asked of the other nodes (refs made elsewhere).
    pub lookups: HashSet<ObjectId>,
    /// Objects this node holds a reference to on another node (refs found
    /// inside values that came from there), released when freed here.
    pub remote_holds: HashMap<ObjectId, NodeId>,
}

/// How long a node whose stream broke gets no work from this one.
const LOST_FOR: std::time::Duration = std::time::Duration::from_secs(10);

impl NodeCore {
    /// The other live nodes, with what they can take now.
    pub(super) fn remote_nodes(&self) -> Vec<RemoteNode> {
        self.cluster_view
            .iter()
            .filter(|n| n.alive && n.node_id.as_ref() != self.node_id.as_bytes())
            .filter_map(|n| {
                let id = NodeId::from_bytes(&n.node_id).ok()?;
                if self
                    .peers
                    .lost
                    .get(&id)
                    .is_some_and(|at| at.elapsed() < LOST_FOR)
                {
                    return None;
                }
                let total = ResourceSet::from_map(&n.resources_total).ok()?;
                let mut available = ResourceSet::from_map(&n.resources_available).ok()?;
                if let Some(sent) = self.peers.sent.get(&id) {
                    available.subtract(sent);
                }
                Some(RemoteNode {
                    id,
                    address: n.address.clone(),
                    total,
                    available,
                })
            })
            .collect()
    }

    /// Where the queued task `task_id` of class `class` should run; `fits`:
    /// its resources are free here now.
    pub(super) fn placement_of(
        &mut self,
        task_id: TaskId,
        class: &ResourceSet,
        fits: bool,
    ) -> Placement {
        let Some(t) = self.tasks.get(&task_id) else {
            return Placement::Local;
        };
        let strategy = t.spec.scheduling_strategy.clone();
        let remotes = self.remote_nodes();
        if remotes.is_empty() && strategy.is_none() {
            return Placement::Local;
        }
        let local = LocalNode {
            id: self.node_id,
            total: &self.total,
            fits_now: fits,
        };
        place(
            class,
            strategy.as_ref(),
            &local,
            &remotes,
            &mut self.peers.spread_cursor,
        )
    }

    fn peer_address(&self, node: NodeId) -> String {
        self.cluster_view
            .iter()
            .find(|n| n.node_id.as_ref() == node.as_bytes())
            .map(|n| n.address.clone())
            .unwrap_or_default()
    }

    /// Send one op on the stream to `node`.
    pub(super) fn send_to_peer(&self, node: NodeId, op: client_op::Op) {
        let _ = self.peer_tx.send(PeerCommand::Send {
            node,
            address: self.peer_address(node),
            ops: vec![v1::ClientOp { op: Some(op) }],
        });
    }

    /// Whether any live node (this one included) could ever run `request`.
    pub(super) fn could_run_anywhere(&self, request: &ResourceSet) -> bool {
        self.total.contains(request)
            || self
                .remote_nodes()
                .iter()
                .any(|r| r.total.contains(request))
    }

    /// The other node that holds every argument of a new task that is not
    /// here (refs made there, handed over inside values), when it can run
    /// the task: the task goes there rather than the arguments coming here.
    /// Only tasks the default strategy places.
    pub(super) fn node_holding_args(
        &self,
        spec: &v1::TaskSpec,
        absent: &[ObjectId],
        request: &ResourceSet,
    ) -> Option<NodeId> {
        if absent.is_empty()
            || Self::served_key(spec).is_some()
            || spec.scheduling_strategy.is_some()
            || !spec.actor_id.is_empty()
            || spec.actor_creation.is_some()
        {
            return None;
        }
        let node = *self.peers.remote_holds.get(&absent[0])?;
        if absent
            .iter()
            .any(|id| self.peers.remote_holds.get(id) != Some(&node))
        {
            return None;
        }
        self.remote_nodes()
            .iter()
            .any(|r| r.id == node && r.total.contains(request))
            .then_some(node)
    }

    /// Send a queued task to another node. Its arguments must be in
    /// memory here: spilled ones are restored first (and the task comes
    /// back through the queue). Returns false if it stays queued.
    pub(super) fn forward(&mut self, task_id: TaskId, node: NodeId) -> bool {
        let pins = match self.pin_args(task_id) {
            Ok(pins) => pins,
            Err(spilled) => {
                if self.a_task_is_restoring() {
                    return false;
                }
                if let Some(t) = self.tasks.get_mut(&task_id) {
                    t.state = TaskState::RestoringArgs;
                }
                for id in spilled {
                    self.request_restore(id, super::residency::RestoreWaiter::Task(task_id));
                }
                return true;
            }
        };
        if let Some(actor) = self
            .tasks
            .get(&task_id)
            .and_then(|t| created_actor(&t.spec))
        {
            if let Some(a) = self.actors.get_mut(&actor) {
                a.host = Some(node);
            }
        }
        self.send_task(task_id, node, pins);
        true
    }

    /// Send a task (or an actor's creation, or a call to an actor placed
    /// there) to `node`, its arguments by value.
    pub(super) fn send_task(
        &mut self,
        task_id: TaskId,
        node: NodeId,
        pins: super::residency::ArgPins,
    ) {
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        t.state = TaskState::Remote(node);
        let request = t.request.clone();
        let mut spec = t.spec.clone();
        // It runs there: the other node must not send it on.
        if spec.actor_id.is_empty() {
            spec.scheduling_strategy = Some(v1::SchedulingStrategy {
                kind: v1::SchedulingKind::NodeAffinity as i32,
                node_id: node.to_vec().into(),
                soft: false,
            });
        }
        for arg in spec.args.iter_mut() {
            let Ok(id) = ObjectId::from_bytes(&arg.object_ref) else {
                continue;
            };
            if !self.store.contains(&id) && self.peers.remote_holds.get(&id) == Some(&node) {
                continue; // it lives there: sent by reference
            }
            let value = match (self.store.read(&id), self.store.get(&id)) {
                (Some(data), Some(obj)) => v1::ObjectValue {
                    format: obj.format,
                    metadata: obj.metadata.clone(),
                    body: Some(Body::InlineData(data)),
                    contained_refs: Vec::new(),
                },
                _ => error_value(&system_error(
                    v1::ErrorKind::ObjectLost,
                    format!("argument object {id} is no longer available"),
                )),
            };
            arg.object_ref = Bytes::new();
            arg.value = Some(value);
        }
        if let Some(t) = self.tasks.get(&task_id) {
            self.unpin_args(t, pins);
        }
        let mut ops = Vec::new();
        let fid = spec
            .function
            .as_ref()
            .map(|f| f.function_id.clone())
            .unwrap_or_default();
        if self
            .peers
            .functions
            .entry(node)
            .or_default()
            .insert(fid.clone())
        {
            if let Some((payload, _)) = self.functions.get(&fid) {
                ops.push(client_op::Op::RegisterFunction(v1::RegisterFunction {
                    function: spec.function.clone(),
                    payload: payload.clone(),
                    export: false,
                }));
            }
        }
        let code_search_path = ember_proto::JobId::from_bytes(&spec.job_id)
            .ok()
            .and_then(|job| self.jobs.get(&job).cloned())
            .unwrap_or_default();
        if let Some(mut creation) = spec.actor_creation.clone() {
            // The actor is this node's: other nodes find it (and its name)
            // through the head, which names this node as its owner.
            let namespace = ActorId::from_bytes(&creation.actor_id)
                .ok()
                .and_then(|id| self.actors.get(&id))
                .map(|a| a.namespace.clone())
                .unwrap_or_default();
            creation.get_if_exists = false;
            creation.namespace = namespace;
            spec.actor_creation = Some(creation);
            ops.push(client_op::Op::CreateActor(v1::CreateActor {
                request_id: 0,
                spec: Some(spec),
                code_search_path,
            }));
        } else {
            ops.push(client_op::Op::SubmitTask(v1::SubmitTask {
                spec: Some(spec),
                code_search_path,
            }));
        }
        self.peers.sent.entry(node).or_default().add(&request);
        self.peers.received.entry(task_id).or_default();
        tracing::debug!(%task_id, node = %node, "task sent to another node");
        let _ = self.peer_tx.send(PeerCommand::Send {
            node,
            address: self.peer_address(node),
            ops: ops
                .into_iter()
                .map(|op| v1::ClientOp { op: Some(op) })
                .collect(),
        });
    }

    /// Ops from another node's stream (answers to the tasks sent there).
    pub fn peer_message(&mut self, node: NodeId, ops: Vec<v1::NodeOp>) {
        for op in ops.into_iter().filter_map(|o| o.op) {
            match op {
                node_op::Op::ObjectReady(ready) => {
                    let (Ok(id), Some(value)) =
                        (ObjectId::from_bytes(&ready.object_id), ready.value)
                    else {
                        continue;
                    };
                    self.remote_return(node, id, value);
                }
                node_op::Op::Error(e) => {
                    let message = e.error.map(|e| e.message).unwrap_or_default();
                    tracing::warn!(node = %node, %message, "another node reported an error");
                }
                node_op::Op::Warning(w) => {
                    tracing::warn!(node = %node, message = %w.message, "warning from another node");
                }
                node_op::Op::ActorReply(r) if r.request_id == 0 => {
                    if let Some(info) = r.actor {
                        self.actor_report(node, info);
                    }
                }
                _ => {}
            }
        }
    }

    /// A value from `node` has refs inside: hold them there (before the
    /// value itself is released there), so they outlive it while this node
    /// can still reach them.
    fn hold_contained_on(&mut self, node: NodeId, value: &v1::ObjectValue) {
        let inner: Vec<ObjectId> = value
            .contained_refs
            .iter()
            .filter_map(|raw| ObjectId::from_bytes(raw).ok())
            .filter(|c| {
                !self.peers.remote_holds.contains_key(c) && !self.tasks.contains_key(&c.task_id())
            })
            .collect();
        if inner.is_empty() {
            return;
        }
        for c in &inner {
            self.peers.remote_holds.insert(*c, node);
        }
        let update = v1::RefUpdate {
            add: inner.iter().map(|c| c.to_vec().into()).collect(),
            ..Default::default()
        };
        self.send_to_peer(node, client_op::Op::RefUpdate(update));
    }

    /// `id` was freed here: let go of the reference held on its node.
    pub(super) fn release_remote_hold(&mut self, id: ObjectId) {
        if let Some(node) = self.peers.remote_holds.remove(&id) {
            let update = v1::RefUpdate {
                remove: vec![id.to_vec().into()],
                ..Default::default()
            };
            self.send_to_peer(node, client_op::Op::RefUpdate(update));
        }
    }

    /// A return of a task that ran on `node` exists there.
    fn remote_return(&mut self, node: NodeId, id: ObjectId, value: v1::ObjectValue) {
        self.hold_contained_on(node, &value);
        match &value.body {
            Some(Body::StoredSize(size)) => {
                // The refs inside live as long as it does here, as for a
                // value stored with `store_value`.
                let inner: Vec<ObjectId> = value
                    .contained_refs
                    .iter()
                    .filter_map(|raw| ObjectId::from_bytes(raw).ok())
                    .collect();
                if !inner.is_empty() && self.objects.contains_key(&id) {
                    for c in &inner {
                        self.objects.entry(*c).or_default().contained_in += 1;
                    }
                    if let Some(e) = self.objects.get_mut(&id) {
                        e.contains = inner;
                    }
                }
                let address = self.peer_address(node);
                self.peers.pulls.insert(id, node);
                let _ = self.peer_tx.send(PeerCommand::Pull {
                    node,
                    address,
                    id,
                    format: value.format,
                    metadata: value.metadata.clone(),
                    size: *size,
                });
            }
            _ => {
                if !self.store.contains(&id) {
                    self.store_value(id, value);
                }
                self.remote_return_stored(node, id);
            }
        }
    }

    /// A pull of a remote task's return ended (the bytes are in the store
    /// when it succeeded).
    pub fn peer_pulled(&mut self, node: NodeId, id: ObjectId, result: Result<(), String>) {
        self.peers.pulls.remove(&id);
        match result {
            Ok(()) => self.remote_return_stored(node, id),
            Err(message) => {
                tracing::warn!(object_id = %id, node = %node, %message, "pulling a return failed: running its task again");
                self.retry_remote_task(
                    id.task_id(),
                    &format!("its return could not be pulled: {message}"),
                );
            }
        }
    }

    /// An object this node has no trace of (a ref made on another node,
    /// handed over inside a value): ask every other node for it. The one
    /// that has it (or will) answers with `ObjectReady`, and it is copied
    /// here like a remote task's return.
    pub(super) fn look_up_elsewhere(&mut self, id: ObjectId) {
        if self.store.contains(&id)
            || self.tasks.contains_key(&id.task_id())
            || self.peers.lookups.contains(&id)
        {
            return;
        }
        let nodes = self.remote_nodes();
        if nodes.is_empty() {
            return;
        }
        self.peers.lookups.insert(id);
        tracing::debug!(object_id = %id, nodes = nodes.len(), "asking the other nodes for an object");
        for node in nodes {
            let get = v1::GetObjects {
                object_ids: vec![id.to_vec().into()],
                map: false,
            };
            self.send_to_peer(node.id, client_op::Op::GetObjects(get));
        }
    }

    /// A remote task's return (or an object asked of other nodes) is
    /// stored here: tell who waits, release the other node's copy, and
    /// finish the task once every return is in.
    fn remote_return_stored(&mut self, node: NodeId, id: ObjectId) {
        let task_id = id.task_id();
        self.release_on(node, id);
        let Some(t) = self.tasks.get(&task_id) else {
            // An answer to a lookup.
            self.peers.lookups.remove(&id);
            if self.objects.contains_key(&id) {
                self.object_ready(id);
            } else {
                self.store.delete(&id);
            }
            return;
        };
        if t.state != TaskState::Remote(node) {
            tracing::debug!(%task_id, node = %node, state = ?t.state, "a return for a task sent elsewhere since");
            return;
        }
        let owner = t.owner;
        let n = t.spec.num_returns;
        if self.objects.contains_key(&id) {
            self.push_to_owner(owner, id);
            self.object_ready(id);
        } else {
            self.store.delete(&id); // nobody wants it
        }
        let received = self.peers.received.entry(task_id).or_default();
        received.insert(id.index());
        if received.len() as u32 >= n {
            self.finish_remote(task_id, node);
        }
    }

    /// Every return of a remote task is in.
    fn finish_remote(&mut self, task_id: TaskId, node: NodeId) {
        tracing::debug!(%task_id, node = %node, "remote task finished");
        self.peers.received.remove(&task_id);
        let Some(t) = self.tasks.remove(&task_id) else {
            return;
        };
        if let Some(sent) = self.peers.sent.get_mut(&node) {
            sent.subtract(&t.request);
        }
        let failed = (1..=t.spec.num_returns).any(|i| {
            self.store
                .get(&ObjectId::for_return(task_id, i - 1))
                .is_some_and(|o| o.format == v1::ValueFormat::Error as i32)
        });
        if failed {
            self.counters.failed += 1;
        } else {
            self.counters.finished += 1;
        }
        self.release_args(&t);
        if let Some(actor) = call_actor(&t.spec) {
            if let Some(a) = self.actors.get_mut(&actor) {
                a.remote_in_flight.retain(|c| *c != task_id);
            }
        }
        if let Some(actor) = created_actor(&t.spec) {
            // The constructor ran there: alive, or dead with its error.
            let first = ObjectId::for_return(task_id, 0);
            let value = match (self.store.get(&first), self.store.read(&first)) {
                (Some(obj), Some(data)) => Some(v1::ObjectValue {
                    format: obj.format,
                    metadata: obj.metadata.clone(),
                    body: Some(Body::InlineData(data)),
                    contained_refs: Vec::new(),
                }),
                _ => None,
            };
            self.actor_created(actor, value.as_ref());
        }
        self.dispatch();
    }

    /// Let the other node free its copy of `id`.
    fn release_on(&self, node: NodeId, id: ObjectId) {
        let update = v1::RefUpdate {
            remove: vec![id.to_vec().into()],
            ..Default::default()
        };
        self.send_to_peer(node, client_op::Op::RefUpdate(update));
    }

    /// The stream to `node` broke: its tasks run again elsewhere.
    pub fn peer_lost(&mut self, node: NodeId, why: &str) {
        self.peers.lost.insert(node, std::time::Instant::now());
        self.peers.functions.remove(&node);
        self.peers.sent.remove(&node);
        // Its actors restart (elsewhere) or die, before its other tasks are
        // sent again.
        self.actor_host_lost(node, why);
        self.objects_lost_with(node, why);
        self.remote_owner_lost(node);
        let lost: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Remote(node))
            .map(|(id, _)| *id)
            .collect();
        if !lost.is_empty() {
            tracing::warn!(node = %node, tasks = lost.len(), %why, "lost the node running tasks: sending them again");
        }
        for task_id in lost {
            self.retry_remote_task(
                task_id,
                &format!("the node {node} running it was lost ({why})"),
            );
        }
        self.dispatch();
    }

    /// Objects whose only copy was on `node` (made by `put` there, or by
    /// tasks that node owned, and handed over inside values) are lost:
    /// whoever reads them gets ObjectLostError. (Returns of tasks this node
    /// sent there are copied here when they finish, so they are not.)
    fn objects_lost_with(&mut self, node: NodeId, why: &str) {
        let lost: Vec<ObjectId> = self
            .peers
            .remote_holds
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.peers.remote_holds.remove(&id);
            self.peers.lookups.remove(&id);
            if self.store.contains(&id) || !self.objects.contains_key(&id) {
                continue;
            }
            let err = system_error(
                v1::ErrorKind::ObjectLost,
                format!(
                    "object {id} was lost: its only copy was on node {node}, which died ({why}); \
                     it was made there (by ember.put or a task that node owned), so it cannot \
                     be rebuilt from this node"
                ),
            );
            tracing::warn!(object_id = %id, node = %node, "object lost with its node");
            self.store_value(id, error_value(&err));
            self.object_ready(id);
        }
    }

    /// Run a remote task again (a retry), or fail it when none is left.
    fn retry_remote_task(&mut self, task_id: TaskId, why: &str) {
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if call_actor(&t.spec).is_some() || t.spec.actor_creation.is_some() {
            // Not placed by the queues: its actor decides (see actor_host_lost).
            let err = system_error(
                v1::ErrorKind::ActorDied,
                format!("task {task_id} ({}) was lost: {why}", t.display_name()),
            );
            self.peers.received.remove(&task_id);
            self.fail_task(task_id, err);
            return;
        }
        if let TaskState::Remote(node) = t.state {
            if let Some(sent) = self.peers.sent.get_mut(&node) {
                sent.subtract(&t.request);
            }
        }
        if t.retries_left != 0 {
            if t.retries_left > 0 {
                t.retries_left -= 1;
            }
            t.state = TaskState::Queued;
            self.enqueue(task_id, true);
        } else {
            let name = t.display_name();
            let err = system_error(
                v1::ErrorKind::NodeDied,
                format!("task {task_id} ({name}) failed: {why}, and no retries are left"),
            );
            self.peers.received.remove(&task_id);
            self.fail_task(task_id, err);
        }
    }

    /// The cluster view changed: nodes that died lose their tasks, and
    /// tasks no node could run may now have one.
    pub(super) fn view_changed(&mut self) {
        let dead: Vec<NodeId> = self
            .cluster_view
            .iter()
            .filter(|n| !n.alive)
            .filter_map(|n| NodeId::from_bytes(&n.node_id).ok())
            .filter(|id| {
                self.tasks
                    .values()
                    .any(|t| t.state == TaskState::Remote(*id))
                    || self.actors.values().any(|a| a.host == Some(*id))
                    || self.peers.remote_holds.values().any(|n| n == id)
            })
            .collect();
        for node in dead {
            self.peer_lost(node, "the head declared it dead");
        }
        let revived: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Infeasible)
            .filter(|(_, t)| self.could_run_anywhere(&t.request))
            .map(|(id, _)| *id)
            .collect();
        for task_id in revived {
            if let Some(t) = self.tasks.get_mut(&task_id) {
                t.state = TaskState::Queued;
            }
            self.enqueue(task_id, false);
        }
        self.dispatch();
    }
}
