//! `NodeCore`: the node daemon's state and the decisions it makes — the
//! owner-side task manager, the object directory with reference counts, the
//! local scheduler and the worker pool's bookkeeping.
//!
//! The core is a plain struct behind one mutex. Transports (`local`, `grpc`)
//! decode a batch of ops, lock the core once, hand it the batch and unlock;
//! the core answers by pushing `NodeOp`s into each connection's channel,
//! which the connection's writer drains into one frame. The core never does
//! blocking IO: process starts go to the worker pool task as commands.
//!
//! Task lifecycle: `SubmitTask` → WaitingArgs (until every ObjectRef
//! argument exists) → Queued in its scheduling class → Assigned to a worker
//! (leased with the task's resources, possibly queued behind the worker's
//! running task) → TaskFinished: returns stored, waiters woken, the
//! submitter sent `ObjectReady`. A worker's death requeues its tasks
//! (counting a retry for the running one); retries exhausted, the returns
//! become `ERROR` values.

mod actors;
mod directory;
mod language;
mod objects;
mod placement;
mod remote;
mod residency;
mod tasks;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ember_flight_store::Store;
use ember_proto::v1::{self, node_op, NodeOp};
use ember_proto::{ActorId, JobId, NodeId, ObjectId, TaskId, WorkerId};
use tokio::sync::mpsc;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::resources::{GpuInstances, ResourceSet};

pub use residency::run_store_events;
pub use workers::PoolCommand;

/// The core's maps and sets: keyed by ids (random bytes) and small resource
/// sets, hashed with foldhash rather than SipHash, which was the largest
/// user-space cost of dispatching a task.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A connection's id (local socket or gRPC stream).
pub type ConnId = u64;

/// What the core sends a connection: ops, or a request to close after them.
// Close is rare and Op the hot path: boxing every op would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    Op(NodeOp),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKind {
    /// Not yet said hello.
    New,
    Driver(JobId),
    Worker(WorkerId),
}

/// Where a connection's ops go: a local socket's outbox (encoded at once),
/// or a channel (gRPC streams, tests).
enum Sink {
    Outbox(std::sync::Arc<crate::outbox::Outbox>),
    Channel(mpsc::UnboundedSender<Outgoing>),
}

struct Conn {
    sink: Sink,
    kind: ConnKind,
    /// Objects this process holds a reference to (at most one count each:
    /// the SDK sends add at 0 → 1 and remove at 1 → 0).
    held: HashSet<ObjectId>,
    /// Objects it asked to be told about.
    subscribed: HashSet<ObjectId>,
    /// Shared-memory blocks it created and has not sealed yet: given back
    /// if it disconnects halfway through a write.
    creating: HashSet<ObjectId>,
    /// Locations of objects it was given and has not released (see
    /// `residency`): object → how many.
    grants: HashMap<ObjectId, u32>,
    /// Another node's stream (it said so in its hello): told of the state
    /// of the actors it owns that run here.
    peer: Option<NodeId>,
    /// A gRPC stream (`NodeService.OpenStream`): the client may be on
    /// another machine and maps no shared memory, so stored values it asks
    /// for are sent by value (see `send_mapped`).
    remote: bool,
}

/// Settings the core needs (a subset of `NodeConfig`).
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub token: String,
    pub max_inline_bytes: u64,
    pub pipeline_depth: usize,
    /// Tasks are queued behind a worker's running task only while that task
    /// has run for less than this: quick tasks pipeline, and a task that
    /// turns out slow does not hold others back.
    pub pipeline_window: std::time::Duration,
    pub prestart_workers: usize,
    pub max_workers: usize,
    pub session_dir: std::path::PathBuf,
    pub node_address: String,
    /// How long a Flight `do_put` waits for room in the store.
    pub object_store_wait: std::time::Duration,
    /// The head runs in this process.
    pub is_head: bool,
}

/// Task counters for status.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub finished: u64,
    pub failed: u64,
}

/// The node's state. See the module docs.
pub struct NodeCore {
    pub node_id: NodeId,
    cfg: CoreConfig,
    store: Arc<Store>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    next_job: u32,
    /// Job id -> directories its workers add to sys.path.
    jobs: HashMap<JobId, Vec<String>>,
    /// Job id -> its namespace (named actors live in one).
    namespaces: HashMap<JobId, String>,
    actors: HashMap<ActorId, actors::ActorEntry>,
    /// (namespace, name) -> the named actor.
    actor_names: HashMap<(String, String), ActorId>,
    /// function_id -> (serialized function, display name).
    functions: HashMap<Bytes, (Bytes, String)>,
    /// Boxed: a task spec is hundreds of bytes, and a burst of submissions
    /// grows the table (each growth moves every entry).
    tasks: HashMap<TaskId, Box<tasks::TaskEntry>>,
    objects: HashMap<ObjectId, objects::ObjectEntry>,
    /// Ready tasks per scheduling class (their resource shape), FIFO.
    queues: HashMap<ResourceSet, VecDeque<TaskId>>,
    /// Classes in the order they first appeared (round robin for fairness).
    class_order: Vec<ResourceSet>,
    total: ResourceSet,
    available: ResourceSet,
    gpus: GpuInstances,
    workers: HashMap<WorkerId, workers::WorkerEntry>,
    /// Idle workers, most recently used last (reused first: warm caches).
    idle: Vec<WorkerId>,
    pool_tx: mpsc::UnboundedSender<PoolCommand>,
    counters: Counters,
    pending_creates: Vec<objects::PendingCreate>,
    /// Spilled objects being restored, and who waits for each.
    restoring: HashMap<ObjectId, Vec<residency::RestoreWaiter>>,
    /// Restore requests, served by `run_store_events`.
    restore_tx: mpsc::UnboundedSender<ObjectId>,
    /// Work for other nodes, served by `peers::run_peers`.
    peer_tx: mpsc::UnboundedSender<crate::peers::PeerCommand>,
    /// What this node keeps about the nodes it sends work to.
    peers: remote::Peers,
    /// Workers that exited before saying hello, in a row.
    start_failures: u32,
    last_start_failure: String,
    /// Set when shutting down: no more workers are started.
    stopping: bool,
    /// When memory was last given back to the OS (see `trim_when_idle`).
    trimmed_at: Instant,
    /// Every node of the cluster as the head last reported it (this one
    /// included; its own entry is replaced by fresh figures in status).
    cluster_view: Vec<v1::NodeInfo>,
    /// Calls to the head's actor directory, served by `head_link` (none in
    /// a core without a cluster, as in unit tests: names stay local).
    head_tx: Option<mpsc::UnboundedSender<crate::head_link::HeadCommand>>,
    next_head_token: u64,
    head_waits: HashMap<u64, directory::HeadWait>,
    /// Actors owned by other nodes that this node sends calls to.
    remote_actors: HashMap<ActorId, directory::RemoteActor>,
    /// This node's drivers as reported to the head's job table.
    job_infos: HashMap<JobId, v1::JobInfo>,
    /// Functions callable by (language, name): their function ids.
    exported: HashMap<(i32, String), Bytes>,
    /// Processes of other languages serving functions by name.
    servers: HashMap<ConnId, language::FunctionServer>,
    /// Tasks waiting for a process that serves their function.
    served: HashMap<language::ServedKey, VecDeque<TaskId>>,
    /// Functions whose tasks have blocked in a get or wait (nested tasks'
    /// parents): never queued behind another task, nor another behind them.
    blocking_functions: HashSet<Bytes>,
}

impl NodeCore {
    pub fn new(
        node_id: NodeId,
        cfg: CoreConfig,
        node: &NodeConfig,
        store: Arc<Store>,
        pool_tx: mpsc::UnboundedSender<PoolCommand>,
        restore_tx: mpsc::UnboundedSender<ObjectId>,
        peer_tx: mpsc::UnboundedSender<crate::peers::PeerCommand>,
    ) -> Result<Self, NodeError> {
        let mut total_map = node.resources.clone();
        total_map.insert("CPU".into(), node.num_cpus);
        total_map.insert("GPU".into(), node.num_gpus);
        total_map.insert("object_store_memory".into(), store.capacity() as f64);
        // Like Ray: memory for tasks' heaps is what the object store leaves.
        total_map.entry("memory".into()).or_insert_with(|| {
            crate::config::physical_memory().saturating_sub(store.capacity()) as f64
        });
        let total = ResourceSet::from_map(&total_map)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        Ok(Self {
            node_id,
            cfg,
            store,
            conns: HashMap::default(),
            next_conn: 1,
            next_job: 1,
            jobs: HashMap::default(),
            namespaces: HashMap::default(),
            actors: HashMap::default(),
            actor_names: HashMap::default(),
            functions: HashMap::default(),
            tasks: HashMap::default(),
            objects: HashMap::default(),
            queues: HashMap::default(),
            class_order: Vec::new(),
            available: total.clone(),
            gpus: GpuInstances::new(node.num_gpus.floor() as usize),
            total,
            workers: HashMap::default(),
            idle: Vec::new(),
            pool_tx,
            counters: Counters::default(),
            pending_creates: Vec::new(),
            restoring: HashMap::default(),
            restore_tx,
            peer_tx,
            peers: remote::Peers::default(),
            start_failures: 0,
            last_start_failure: String::new(),
            stopping: false,
            trimmed_at: Instant::now(),
            head_tx: None,
            next_head_token: 0,
            head_waits: HashMap::default(),
            remote_actors: HashMap::default(),
            job_infos: HashMap::default(),
            exported: HashMap::default(),
            servers: HashMap::default(),
            served: HashMap::default(),
            blocking_functions: HashSet::default(),
            cluster_view: Vec::new(),
        })
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn report_job(&self, info: v1::JobInfo) {
        if let Some(tx) = &self.head_tx {
            let _ = tx.send(crate::head_link::HeadCommand::RegisterJob(info));
        }
    }

    /// Ask the head for its job table (none without a head link).
    pub fn request_jobs(
        &self,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<v1::JobInfo>, String>>> {
        let tx = self.head_tx.as_ref()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        tx.send(crate::head_link::HeadCommand::ListJobs(reply))
            .ok()?;
        Some(rx)
    }

    /// Use the head's actor directory through `tx` (see `head_link`).
    pub fn set_head_link(&mut self, tx: mpsc::UnboundedSender<crate::head_link::HeadCommand>) {
        self.head_tx = Some(tx);
    }

    /// Start the configured number of workers ahead of demand.
    pub fn prestart(&mut self) {
        for _ in 0..self.cfg.prestart_workers {
            self.spawn_worker();
        }
    }

    /// A new connection; its ops arrive through `handle_ops`.
    pub fn add_conn(&mut self, tx: mpsc::UnboundedSender<Outgoing>) -> ConnId {
        self.add_conn_of(Sink::Channel(tx), false)
    }

    /// A local socket's connection: its ops are encoded into `outbox`.
    pub fn add_local_conn(&mut self, outbox: std::sync::Arc<crate::outbox::Outbox>) -> ConnId {
        self.add_conn_of(Sink::Outbox(outbox), false)
    }

    /// `conn` hands over a block the node filled for it (a large put
    /// received by value on a gRPC stream): tracked as if the client had
    /// created it, so that it is given back if the client goes away before
    /// its `PutObject` is handled. False (and the block given back) if the
    /// connection is gone.
    pub fn adopt_block(&mut self, conn: ConnId, id: ObjectId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) => {
                c.creating.insert(id);
                true
            }
            None => {
                self.store.abort(id);
                false
            }
        }
    }

    /// A connection over gRPC: stored values go to it by value.
    pub fn add_remote_conn(&mut self, tx: mpsc::UnboundedSender<Outgoing>) -> ConnId {
        self.add_conn_of(Sink::Channel(tx), true)
    }

    fn add_conn_of(&mut self, sink: Sink, remote: bool) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                sink,
                kind: ConnKind::New,
                held: HashSet::default(),
                subscribed: HashSet::default(),
                creating: HashSet::default(),
                grants: HashMap::default(),
                peer: None,
                remote,
            },
        );
        id
    }

    fn send(&self, conn: ConnId, op: node_op::Op) {
        match self.conns.get(&conn).map(|c| &c.sink) {
            Some(Sink::Outbox(outbox)) => outbox.push(&NodeOp { op: Some(op) }),
            Some(Sink::Channel(tx)) => {
                let _ = tx.send(Outgoing::Op(NodeOp { op: Some(op) }));
            }
            None => {}
        }
    }

    /// Send `task_id` as `ExecuteTask{spec, ..rest}` (`rest.spec` unset):
    /// `copy` (its spec with arguments filled in) when there is one, else
    /// its stored spec, encoded where it lies where the connection has an
    /// outbox (see [`Outbox::push_execute`](crate::outbox::Outbox::push_execute)).
    fn send_execute(
        &self,
        conn: ConnId,
        task_id: TaskId,
        copy: Option<v1::TaskSpec>,
        rest: v1::ExecuteTask,
    ) {
        let execute = |spec, rest| {
            node_op::Op::ExecuteTask(v1::ExecuteTask {
                spec: Some(spec),
                ..rest
            })
        };
        if let Some(spec) = copy {
            return self.send(conn, execute(spec, rest));
        }
        let Some(t) = self.tasks.get(&task_id) else {
            return;
        };
        match self.conns.get(&conn).map(|c| &c.sink) {
            Some(Sink::Outbox(outbox)) => outbox.push_execute(&t.spec, &rest),
            Some(Sink::Channel(_)) => self.send(conn, execute(t.spec.clone(), rest)),
            None => {}
        }
    }

    fn send_error(&self, conn: ConnId, request_id: u64, err: v1::TaskError) {
        self.send(
            conn,
            node_op::Op::Error(v1::ErrorReply {
                request_id,
                error: Some(err),
            }),
        );
    }

    fn warn(&self, conn: ConnId, message: String) {
        tracing::warn!(conn, %message, "warning sent to client");
        self.send(conn, node_op::Op::Warning(v1::Warning { message }));
    }

    /// Handle the first op of a connection. Returns false (after telling the
    /// client why) when the connection must be closed.
    fn hello(&mut self, conn: ConnId, hello: v1::Hello) -> bool {
        if !constant_time_eq(hello.token.as_bytes(), self.cfg.token.as_bytes()) {
            let err = NodeError::Unauthenticated(
                "the cluster token is missing or wrong (it is in the session file session.json)"
                    .into(),
            );
            self.send_error(conn, 0, err.to_task_error());
            self.close(conn);
            return false;
        }
        let kind = match v1::ClientKind::try_from(hello.kind) {
            Ok(v1::ClientKind::Worker) => {
                let Ok(wid) = WorkerId::from_bytes(&hello.worker_id) else {
                    return self.refuse(conn, "worker hello without a valid worker_id");
                };
                if !self.worker_connected(wid, conn, hello.pid) {
                    return self.refuse(conn, "unknown worker id: workers are started by the node");
                }
                ConnKind::Worker(wid)
            }
            Ok(v1::ClientKind::Driver) => {
                // Job ids travel with tasks sent to other nodes: a counter
                // per node would collide there. Random, unused here, not 0.
                let job = loop {
                    let candidate = JobId((self.next_job ^ rand::random::<u32>()).to_le_bytes());
                    if candidate.0 != [0; 4] && !self.jobs.contains_key(&candidate) {
                        break candidate;
                    }
                };
                self.next_job += 1;
                self.jobs.insert(job, hello.code_search_path.clone());
                let namespace = if hello.namespace.is_empty() {
                    format!("anonymous-{}", job.hex())
                } else {
                    hello.namespace.clone()
                };
                self.namespaces.insert(job, namespace);
                ConnKind::Driver(job)
            }
            _ => {
                return self.refuse(
                    conn,
                    "hello must say whether the client is a driver or a worker",
                )
            }
        };
        let job_id = match kind {
            ConnKind::Driver(job) => job.to_vec(),
            _ => Vec::new(),
        };
        let peer = NodeId::from_bytes(&hello.peer_node_id).ok();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.kind = kind;
            c.peer = peer;
        }
        if let (ConnKind::Driver(job), None) = (kind, peer) {
            let info = v1::JobInfo {
                job_id: job.to_vec().into(),
                node_id: self.node_id.to_vec().into(),
                node_address: self.cfg.node_address.clone(),
                namespace: self.namespaces.get(&job).cloned().unwrap_or_default(),
                driver_pid: hello.pid,
                start_time_ms: crate::head::now_ms(),
                end_time_ms: 0,
                finished: false,
            };
            self.report_job(info.clone());
            self.job_infos.insert(job, info);
        }
        let reply = v1::HelloReply {
            node_id: self.node_id.to_vec().into(),
            job_id: job_id.into(),
            shm_path: self.store.arena_path().to_string_lossy().into_owned(),
            shm_size: self.store.capacity(),
            session_dir: self.cfg.session_dir.to_string_lossy().into_owned(),
            max_inline_bytes: self.cfg.max_inline_bytes,
            node_address: self.cfg.node_address.clone(),
        };
        self.send(conn, node_op::Op::HelloReply(reply));
        if matches!(kind, ConnKind::Worker(_)) {
            self.dispatch();
        }
        true
    }

    fn refuse(&mut self, conn: ConnId, why: &str) -> bool {
        self.send_error(
            conn,
            0,
            NodeError::InvalidArgument(why.into()).to_task_error(),
        );
        self.close(conn);
        false
    }

    /// Tell a connection why it is being closed, then close it.
    pub fn reply_error_and_close(&mut self, conn: ConnId, err: v1::TaskError) {
        self.send_error(conn, 0, err);
        self.close(conn);
    }

    fn close(&self, conn: ConnId) {
        match self.conns.get(&conn).map(|c| &c.sink) {
            Some(Sink::Outbox(outbox)) => outbox.close(),
            Some(Sink::Channel(tx)) => {
                let _ = tx.send(Outgoing::Close);
            }
            None => {}
        }
    }

    /// Handle a batch of ops from one connection. Returns false when the
    /// connection must be closed.
    pub fn handle_ops(
        &mut self,
        conn: ConnId,
        ops: impl IntoIterator<Item = v1::ClientOp>,
    ) -> bool {
        use v1::client_op::Op;
        for op in ops {
            let Some(op) = op.op else { continue };
            let kind = match self.conns.get(&conn) {
                Some(c) => c.kind,
                None => return false,
            };
            if kind == ConnKind::New {
                let Op::Hello(hello) = op else {
                    return self.refuse(conn, "the first message must be a hello");
                };
                if !self.hello(conn, hello) {
                    return false;
                }
                continue;
            }
            match op {
                Op::Hello(_) => {
                    self.send_error(
                        conn,
                        0,
                        NodeError::InvalidArgument("hello sent twice".into()).to_task_error(),
                    );
                }
                Op::RegisterFunction(f) => self.register_function(conn, f),
                Op::SubmitTask(s) => self.submit(conn, s),
                Op::RefUpdate(u) => self.ref_update(conn, u),
                Op::GetObjects(g) => self.get_objects(conn, g),
                Op::PutObject(p) => self.put_object(conn, p),
                Op::CreateObject(c) => self.create_object(conn, c),
                Op::AbortObject(a) => self.abort_object(a),
                Op::CancelTask(c) => self.cancel(conn, c),
                Op::TaskFinished(mut f) => {
                    if !self.served_task_finished(conn, &mut f) {
                        self.task_finished(conn, f)
                    }
                }
                Op::ServeFunctions(s) => self.serve_functions(conn, s),
                Op::WorkerBlocked(b) => self.worker_blocked(conn, b),
                Op::WorkerUnblocked(_) => self.worker_unblocked(conn),
                Op::CreateActor(c) => self.create_actor(conn, c),
                Op::GetActor(g) => self.get_actor(conn, g),
                Op::KillActor(k) => {
                    let known = ActorId::from_bytes(&k.actor_id)
                        .is_ok_and(|id| self.actors.contains_key(&id));
                    if known {
                        self.kill_actor(k)
                    } else {
                        self.kill_remote_actor(k)
                    }
                }
                Op::InfoRequest(r) => {
                    let reply = v1::InfoReply {
                        request_id: r.request_id,
                        cluster_status: Some(self.cluster_status()),
                    };
                    self.send(conn, node_op::Op::InfoReply(reply));
                }
            }
        }
        true
    }

    /// The connection is gone: drop its references, and if it was a
    /// worker, handle the worker's death.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let ConnKind::Worker(wid) = c.kind {
            self.worker_died(wid, "its connection to the node closed");
        }
        if let ConnKind::Driver(job) = c.kind {
            if let Some(mut info) = self.job_infos.remove(&job) {
                info.finished = true;
                info.end_time_ms = crate::head::now_ms();
                self.report_job(info);
            }
        }
        self.server_gone(conn);
        self.owner_gone(conn);
        if c.peer.is_some() {
            self.adopt_detached(conn);
        }
        self.pending_creates_of_gone(conn);
        for id in c.creating {
            // Sealed blocks are left alone; an unsealed one is given back.
            self.store.abort(id);
        }
        for id in c.subscribed {
            if let Some(o) = self.objects.get_mut(&id) {
                o.subscribers.retain(|s| *s != conn);
                o.map_subscribers.retain(|s| *s != conn);
            }
            self.maybe_free(id);
        }
        for (id, n) in c.grants {
            self.release_grants_of(id, n);
        }
        for waiters in self.restoring.values_mut() {
            waiters.retain(|w| *w != residency::RestoreWaiter::Conn(conn));
        }
        for id in c.held {
            if let Some(o) = self.objects.get_mut(&id) {
                o.holders = o.holders.saturating_sub(1);
            }
            self.maybe_free(id);
        }
        self.dispatch();
    }

    fn register_function(&mut self, _conn: ConnId, f: v1::RegisterFunction) {
        let Some(desc) = f.function else { return };
        if desc.function_id.is_empty() || desc.function_id.len() > 64 {
            return;
        }
        if f.export {
            self.export_function(&desc);
        }
        self.functions
            .entry(desc.function_id.clone())
            .or_insert((f.payload, desc.name));
    }

    /// Periodic housekeeping: expire waits for store room, stop workers
    /// that idled too long.
    pub fn tick(&mut self, now: Instant) {
        self.expire_creates(now);
        self.reap_idle_workers(now);
        self.trim_when_idle(now);
    }

    /// While no task is in flight, give the memory that tables and transfer
    /// buffers grew to back to the OS every few seconds, so an idle node
    /// stays small (the allocator keeps freed buffers warm while busy).
    fn trim_when_idle(&mut self, now: Instant) {
        if !self.tasks.is_empty()
            || now.duration_since(self.trimmed_at) < std::time::Duration::from_secs(2)
        {
            return;
        }
        self.trimmed_at = now;
        self.tasks.shrink_to_fit();
        self.objects.shrink_to_fit();
        self.queues.shrink_to_fit();
        // SAFETY: both only release free heap memory (the binary allocates
        // with mimalloc; libraries' C code and the lib's tests with malloc).
        unsafe {
            libmimalloc_sys::mi_collect(true);
            libc::malloc_trim(0);
        }
    }

    /// Stop starting workers and return every worker pid (to be killed).
    pub fn begin_shutdown(&mut self) -> Vec<u32> {
        self.stopping = true;
        self.workers.values().filter_map(|w| w.pid).collect()
    }

    pub fn cluster_status(&self) -> v1::ClusterStatus {
        let mut counts = v1::TaskCounts {
            finished: self.counters.finished,
            failed: self.counters.failed,
            ..Default::default()
        };
        let mut infeasible = Vec::new();
        for (id, t) in &self.tasks {
            match t.state {
                tasks::TaskState::Assigned(_)
                | tasks::TaskState::Remote(_)
                | tasks::TaskState::Served(_) => counts.running += 1,
                tasks::TaskState::Infeasible => {
                    counts.pending += 1;
                    counts.infeasible += 1;
                    infeasible.push(v1::InfeasibleTask {
                        task_id: id.to_vec().into(),
                        name: t.display_name(),
                        resources: t.request.to_map(),
                    });
                }
                _ => counts.pending += 1,
            }
        }
        let stats = self.store.stats();
        let me = self.node_info();
        let mut nodes = vec![me.clone()];
        nodes.extend(
            self.cluster_view
                .iter()
                .filter(|n| n.node_id != me.node_id)
                .cloned(),
        );
        v1::ClusterStatus {
            nodes,
            tasks: Some(counts),
            infeasible,
            num_objects: stats.num_objects,
            actors: self.all_actor_infos(),
            jobs: Vec::new(), // the head's table, added by the gRPC status call
        }
    }

    /// This node as the cluster sees it.
    pub fn node_info(&self) -> v1::NodeInfo {
        let stats = self.store.stats();
        v1::NodeInfo {
            node_id: self.node_id.to_vec().into(),
            address: self.cfg.node_address.clone(),
            alive: true,
            is_head: self.cfg.is_head,
            resources_total: self.total.to_map(),
            resources_available: self.available_for_status().to_map(),
            object_store_capacity: stats.capacity,
            object_store_used: stats.used + stats.inline_bytes,
            num_workers: self.workers.len() as u32,
            object_store_spilled: stats.spilled_bytes,
            object_store_num_spilled: stats.num_spilled,
            functions: self.function_names(),
        }
    }

    /// The cluster's nodes as the head reported them.
    pub fn set_cluster_view(&mut self, nodes: Vec<v1::NodeInfo>) {
        self.cluster_view = nodes;
        self.view_changed();
    }

    fn available_for_status(&self) -> ResourceSet {
        // Oversubscription (a blocked worker resuming) shows as 0, not negative.
        self.available.clamped_at_zero()
    }
}

/// Send `sig` to a worker process. Refuses pids that are not a single
/// process of ours (0 and negative address process groups, 1 is init), so a
/// bogus pid in a hello can never make the node signal its own group.
pub fn signal_worker(pid: u32, sig: i32) {
    if pid <= 1 || pid > i32::MAX as u32 {
        tracing::warn!(pid, sig, "refusing to signal an invalid pid");
        return;
    }
    // SAFETY: kill(2) of one process id; no memory is involved.
    unsafe { libc::kill(pid as i32, sig) };
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An `ERROR` object value holding `err`.
pub fn error_value(err: &v1::TaskError) -> v1::ObjectValue {
    use prost::Message;
    v1::ObjectValue {
        format: v1::ValueFormat::Error as i32,
        metadata: Bytes::new(),
        body: Some(v1::object_value::Body::InlineData(
            err.encode_to_vec().into(),
        )),
        contained_refs: Vec::new(),
    }
}

/// A `TaskError` made by the node (not by user code).
pub fn system_error(kind: v1::ErrorKind, message: String) -> v1::TaskError {
    v1::TaskError {
        kind: kind as i32,
        type_name: kind.as_str_name().to_string(),
        message,
        ..Default::default()
    }
}
