//! Unit tests of the core's scheduling and resource accounting, driven
//! through its op interface with channels standing in for sockets.

use std::collections::HashMap;
use std::sync::Arc;

use ember_flight_store::{Store, StoreConfig};
use ember_proto::v1::{self, client_op::Op, node_op};
use ember_proto::{NodeId, ObjectId, TaskId, WorkerId};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::*;

struct Harness {
    core: NodeCore,
    pool: UnboundedReceiver<PoolCommand>,
    /// Restore requests the core made (served by hand in tests).
    restores: UnboundedReceiver<ObjectId>,
    driver: ConnId,
    driver_rx: UnboundedReceiver<Outgoing>,
    workers: Vec<(WorkerId, ConnId, UnboundedReceiver<Outgoing>)>,
    _dir: tempfile::TempDir,
}

const FUNCTION_ID: &[u8] = &[7; 20];

fn harness(cpus: f64, pipeline_depth: usize) -> Harness {
    harness_with_store(cpus, pipeline_depth, 16 << 20, false)
}

/// A harness whose store holds `capacity` bytes and spills when `spill`.
fn harness_with_store(cpus: f64, pipeline_depth: usize, capacity: u64, spill: bool) -> Harness {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let store = Arc::new(
        Store::new(StoreConfig {
            arena_path: dir.path().join("arena"),
            capacity,
            prefault_bytes: 0,
            spill: spill.then(|| ember_flight_store::SpillConfig {
                dir: dir.path().join("spill"),
                max_disk_fraction: 1.0,
            }),
        })
        .unwrap(),
    );
    let mut node = NodeConfig::defaults();
    node.num_cpus = cpus;
    node.num_gpus = 0.0;
    let cfg = CoreConfig {
        token: "secret".into(),
        max_inline_bytes: 100 << 10,
        pipeline_depth,
        pipeline_window: std::time::Duration::from_secs(60),
        prestart_workers: 0,
        max_workers: 8,
        session_dir: dir.path().to_path_buf(),
        node_address: "127.0.0.1:0".into(),
        object_store_wait: std::time::Duration::from_secs(30),
        is_head: true,
    };
    let (pool_tx, pool) = mpsc::unbounded_channel();
    let (restore_tx, restores) = mpsc::unbounded_channel();
    let (peer_tx, _peers) = mpsc::unbounded_channel();
    let mut core = NodeCore::new(
        NodeId::random(),
        cfg,
        &node,
        store,
        pool_tx,
        restore_tx,
        peer_tx,
    )
    .unwrap();
    let (tx, driver_rx) = mpsc::unbounded_channel();
    let driver = core.add_conn(tx);
    let hello = v1::Hello {
        token: "secret".into(),
        kind: v1::ClientKind::Driver as i32,
        ..Default::default()
    };
    assert!(core.handle_ops(driver, vec![op(Op::Hello(hello))]));
    core.handle_ops(driver, vec![register(FUNCTION_ID)]);
    Harness {
        core,
        pool,
        restores,
        driver,
        driver_rx,
        workers: Vec::new(),
        _dir: dir,
    }
}

fn op(o: Op) -> v1::ClientOp {
    v1::ClientOp { op: Some(o) }
}

/// Registers a (Python) function with this id.
fn register(function_id: &[u8]) -> v1::ClientOp {
    op(Op::RegisterFunction(v1::RegisterFunction {
        function: Some(v1::FunctionDescriptor {
            function_id: function_id.to_vec().into(),
            ..Default::default()
        }),
        payload: "code".into(),
        export: false,
    }))
}

fn task(cpus: f64, custom: Option<&str>) -> (TaskId, v1::ClientOp) {
    task_of(FUNCTION_ID, cpus, custom)
}

fn task_of(function_id: &[u8], cpus: f64, custom: Option<&str>) -> (TaskId, v1::ClientOp) {
    let id = TaskId::random();
    let mut resources: HashMap<String, f64> = [("CPU".to_string(), cpus)].into_iter().collect();
    if let Some(name) = custom {
        resources.insert(name.into(), 1.0);
    }
    let spec = v1::TaskSpec {
        task_id: id.to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            function_id: function_id.to_vec().into(),
            ..Default::default()
        }),
        num_returns: 1,
        resources,
        max_retries: 1,
        ..Default::default()
    };
    (
        id,
        op(Op::SubmitTask(v1::SubmitTask {
            spec: Some(spec),
            ..Default::default()
        })),
    )
}

impl Harness {
    /// Connect every worker the core asked the pool for.
    fn start_requested_workers(&mut self) {
        while let Ok(PoolCommand::Spawn(id)) = self.pool.try_recv() {
            let (tx, rx) = mpsc::unbounded_channel();
            let conn = self.core.add_conn(tx);
            let hello = v1::Hello {
                token: "secret".into(),
                kind: v1::ClientKind::Worker as i32,
                worker_id: id.to_vec().into(),
                pid: 0,
                ..Default::default()
            };
            assert!(self.core.handle_ops(conn, vec![op(Op::Hello(hello))]));
            self.workers.push((id, conn, rx));
        }
    }

    /// Task ids each worker was sent, in order.
    fn executed(&mut self) -> Vec<Vec<TaskId>> {
        self.workers
            .iter_mut()
            .map(|(_, _, rx)| {
                let mut ids = Vec::new();
                while let Ok(Outgoing::Op(o)) = rx.try_recv() {
                    if let Some(node_op::Op::ExecuteTask(e)) = o.op {
                        ids.push(TaskId::from_bytes(&e.spec.unwrap().task_id).unwrap());
                    }
                }
                ids
            })
            .collect()
    }

    fn finish(&mut self, worker: usize, task: TaskId) {
        let conn = self.workers[worker].1;
        let done = v1::TaskFinished {
            task_id: task.to_vec().into(),
            returns: vec![v1::ObjectValue {
                format: v1::ValueFormat::Raw as i32,
                body: Some(v1::object_value::Body::InlineData("ok".into())),
                ..Default::default()
            }],
            retryable_error: false,
            actor_exit: false,
        };
        self.core.handle_ops(conn, vec![op(Op::TaskFinished(done))]);
    }

    fn cpu_available(&self) -> i64 {
        self.core.available.get("CPU")
    }
}

#[test]
fn two_cpus_run_two_tasks_and_queue_the_rest() {
    let mut h = harness(2.0, 0);
    let ids: Vec<TaskId> = (0..4)
        .map(|_| {
            let (id, submit) = task(1.0, None);
            h.core.handle_ops(h.driver, vec![submit]);
            id
        })
        .collect();
    h.start_requested_workers();
    assert_eq!(h.workers.len(), 2, "one worker per task that fits");
    let sent = h.executed();
    assert_eq!(sent.iter().map(|s| s.len()).sum::<usize>(), 2);
    assert_eq!(h.cpu_available(), 0);
    // Finishing one starts the next on the freed worker.
    let (w, first) = sent
        .iter()
        .enumerate()
        .find(|(_, s)| !s.is_empty())
        .map(|(i, s)| (i, s[0]))
        .unwrap();
    h.finish(w, first);
    let sent = h.executed();
    assert_eq!(sent[w].len(), 1);
    assert_eq!(h.cpu_available(), 0);
    assert!(ids.contains(&sent[w][0]));
    assert_eq!(h.core.cluster_status().tasks.unwrap().finished, 1);
}

#[test]
fn busy_workers_get_pipelined_tasks_and_hand_them_back_when_blocked() {
    let mut h = harness(1.0, 4);
    let (a, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    h.start_requested_workers();
    let (b, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    let sent = h.executed();
    assert_eq!(
        sent[0],
        vec![a, b],
        "b is queued behind a on the only worker"
    );
    // a blocks in get: its CPU is lent out and b comes back to be run elsewhere.
    let conn = h.workers[0].1;
    let blocked = v1::WorkerBlocked {
        returned_task_ids: vec![b.to_vec().into()],
    };
    h.core
        .handle_ops(conn, vec![op(Op::WorkerBlocked(blocked))]);
    assert_eq!(h.cpu_available(), 10_000, "a's CPU is lent out");
    h.start_requested_workers();
    assert_eq!(h.cpu_available(), 0, "b took the lent CPU");
    let sent = h.executed();
    assert_eq!(sent[1], vec![b], "a second worker runs b");
    h.finish(1, b);
    h.core
        .handle_ops(conn, vec![op(Op::WorkerUnblocked(v1::WorkerUnblocked {}))]);
    h.finish(0, a);
    assert_eq!(h.cpu_available(), 10_000, "all CPU back once both finish");
}

#[test]
fn nothing_is_pipelined_behind_or_as_a_task_of_a_function_that_blocked() {
    const CHILD: &[u8] = &[8; 20];
    let mut h = harness(1.0, 4);
    h.core.handle_ops(h.driver, vec![register(CHILD)]);
    let (parent, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    h.start_requested_workers();
    // Nothing is known yet: the first child is queued behind its parent, which
    // hands it back when it blocks; the parent's function is now known to block.
    let (c1, submit) = task_of(CHILD, 1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    assert_eq!(h.executed()[0], vec![parent, c1]);
    let conn = h.workers[0].1;
    let blocked = v1::WorkerBlocked {
        returned_task_ids: vec![c1.to_vec().into()],
    };
    h.core
        .handle_ops(conn, vec![op(Op::WorkerBlocked(blocked))]);
    h.start_requested_workers();
    assert_eq!(h.executed()[1], vec![c1], "c1 took the lent CPU");
    // Children are still queued behind a running child ...
    let (c2, submit) = task_of(CHILD, 1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    assert_eq!(h.executed()[1], vec![c2], "c2 is queued behind c1");
    // ... but a second parent is not queued behind anything: it waits for a CPU.
    let (parent2, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    assert!(h.executed().iter().all(|sent| sent.is_empty()));
    h.core
        .handle_ops(conn, vec![op(Op::WorkerUnblocked(v1::WorkerUnblocked {}))]);
    h.finish(1, c1);
    h.finish(1, c2);
    h.finish(0, parent);
    let sent = h.executed();
    assert_eq!(
        sent.iter().flatten().copied().collect::<Vec<_>>(),
        vec![parent2],
        "parent2 runs once a CPU is free"
    );
    let runs_parent2 = sent.iter().position(|s| !s.is_empty()).unwrap();
    // And nothing is queued behind the running parent2.
    let (c3, submit) = task_of(CHILD, 1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    assert!(h.executed().iter().all(|sent| sent.is_empty()));
    h.finish(runs_parent2, parent2);
    assert_eq!(
        h.executed().iter().flatten().copied().collect::<Vec<_>>(),
        vec![c3]
    );
}

#[test]
fn infeasible_tasks_are_reported_and_stay_pending() {
    let mut h = harness(2.0, 0);
    let (id, submit) = task(1.0, Some("tpu"));
    h.core.handle_ops(h.driver, vec![submit]);
    let status = h.core.cluster_status();
    assert_eq!(status.tasks.unwrap().infeasible, 1);
    assert_eq!(status.infeasible[0].task_id.as_ref(), id.as_bytes());
    let mut warned = false;
    while let Ok(Outgoing::Op(o)) = h.driver_rx.try_recv() {
        if let Some(node_op::Op::Warning(w)) = o.op {
            warned |= w.message.contains("infeasible");
        }
    }
    assert!(warned, "the submitter is warned");
}

#[test]
fn worker_death_retries_then_fails() {
    let mut h = harness(1.0, 0);
    let (id, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    h.core.handle_ops(
        h.driver,
        vec![op(Op::GetObjects(v1::GetObjects {
            object_ids: vec![ObjectId::for_return(id, 0).to_vec().into()],
            map: false,
        }))],
    );
    for attempt in 0..2 {
        h.start_requested_workers();
        let sent = h.executed();
        assert_eq!(
            sent.last().unwrap(),
            &vec![id],
            "attempt {attempt} runs the task"
        );
        let conn = h.workers.last().unwrap().1;
        h.core.remove_conn(conn);
    }
    let mut failure = None;
    while let Ok(Outgoing::Op(o)) = h.driver_rx.try_recv() {
        if let Some(node_op::Op::ObjectReady(r)) = o.op {
            failure = r.value;
        }
    }
    let value = failure.expect("the driver hears of the failure");
    assert_eq!(value.format, v1::ValueFormat::Error as i32);
    assert_eq!(h.cpu_available(), 10_000);
}

#[test]
fn workers_beyond_the_prestarted_number_stop_after_idling() {
    let mut h = harness(1.0, 0);
    let (id, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    h.start_requested_workers();
    let _ = h.executed();
    h.finish(0, id);
    let later = std::time::Instant::now() + std::time::Duration::from_secs(1);
    h.core.tick(later);
    let closed = |rx: &mut UnboundedReceiver<Outgoing>| {
        let mut closed = false;
        while let Ok(o) = rx.try_recv() {
            closed |= matches!(o, Outgoing::Close);
        }
        closed
    };
    assert!(
        !closed(&mut h.workers[0].2),
        "not yet: idle for a second only"
    );
    h.core.tick(later + std::time::Duration::from_secs(60));
    assert!(
        closed(&mut h.workers[0].2),
        "the idle worker is told to exit"
    );
}

fn actor_creation(name: &str, max_restarts: i32) -> (ember_proto::ActorId, TaskId, v1::ClientOp) {
    let actor = ember_proto::ActorId::random();
    let task = TaskId::random();
    let spec = v1::TaskSpec {
        task_id: task.to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            function_id: FUNCTION_ID.to_vec().into(),
            ..Default::default()
        }),
        num_returns: 1,
        resources: [("CPU".to_string(), 1.0)].into_iter().collect(),
        actor_creation: Some(v1::ActorCreation {
            actor_id: actor.to_vec().into(),
            name: name.into(),
            max_restarts,
            max_task_retries: 0,
            class_name: "Counter".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let request_id = if name.is_empty() { 0 } else { 1 };
    (
        actor,
        task,
        op(Op::CreateActor(v1::CreateActor {
            request_id,
            spec: Some(spec),
            ..Default::default()
        })),
    )
}

fn actor_call(actor: ember_proto::ActorId) -> (TaskId, v1::ClientOp) {
    let id = TaskId::random();
    let spec = v1::TaskSpec {
        task_id: id.to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            function_id: FUNCTION_ID.to_vec().into(),
            ..Default::default()
        }),
        num_returns: 1,
        actor_id: actor.to_vec().into(),
        method_name: "inc".into(),
        ..Default::default()
    };
    (
        id,
        op(Op::SubmitTask(v1::SubmitTask {
            spec: Some(spec),
            ..Default::default()
        })),
    )
}

fn driver_errors(h: &mut Harness) -> Vec<v1::TaskError> {
    let mut out = Vec::new();
    while let Ok(Outgoing::Op(o)) = h.driver_rx.try_recv() {
        match o.op {
            Some(node_op::Op::ObjectReady(r)) => {
                let v = r.value.unwrap();
                if v.format == v1::ValueFormat::Error as i32 {
                    if let Some(v1::object_value::Body::InlineData(d)) = v.body {
                        out.push(prost::Message::decode(d).unwrap());
                    }
                }
            }
            Some(node_op::Op::Error(e)) => out.push(e.error.unwrap()),
            _ => {}
        }
    }
    out
}

#[test]
fn actor_calls_reach_its_worker_in_order_and_it_holds_no_cpu_by_default() {
    let mut h = harness(1.0, 8);
    let (actor, creation, create) = actor_creation("", 0);
    h.core.handle_ops(h.driver, vec![create]);
    let calls: Vec<TaskId> = (0..5)
        .map(|_| {
            let (id, call) = actor_call(actor);
            h.core.handle_ops(h.driver, vec![call]);
            id
        })
        .collect();
    h.start_requested_workers();
    assert_eq!(h.executed()[0], vec![creation]);
    assert_eq!(h.cpu_available(), 10_000, "placed with 1 CPU, holds none");
    h.finish(0, creation);
    assert_eq!(
        h.executed()[0],
        calls,
        "calls follow creation, in submission order"
    );
    // A plain task does not land on the actor's worker.
    let (t, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    h.start_requested_workers();
    let sent = h.executed();
    assert!(sent[0].is_empty() && sent[1] == vec![t]);
}

#[test]
fn killed_actor_fails_calls_and_restarts_when_allowed() {
    let mut h = harness(2.0, 0);
    let (actor, creation, create) = actor_creation("", 1);
    h.core.handle_ops(h.driver, vec![create]);
    h.start_requested_workers();
    let _ = h.executed();
    h.finish(0, creation);
    let (call, submit) = actor_call(actor);
    h.core.handle_ops(h.driver, vec![submit]);
    assert_eq!(h.executed()[0], vec![call]);
    // The worker dies mid-call: one restart is allowed, the call is not retried.
    let conn = h.workers[0].1;
    h.core.remove_conn(conn);
    assert_eq!(h.core.actors[&actor].state, v1::ActorState::Restarting);
    assert!(driver_errors(&mut h)
        .iter()
        .any(|e| e.kind == v1::ErrorKind::ActorDied as i32));
    h.start_requested_workers();
    let sent = h.executed();
    let recreated = sent
        .iter()
        .flatten()
        .next()
        .copied()
        .expect("creation runs again");
    let w = sent.iter().position(|s| !s.is_empty()).unwrap();
    h.finish(w, recreated);
    assert_eq!(h.core.actors[&actor].state, v1::ActorState::Alive);
    // Killed for good: later calls fail at once.
    h.core.handle_ops(
        h.driver,
        vec![op(Op::KillActor(v1::KillActor {
            actor_id: actor.to_vec().into(),
            no_restart: true,
        }))],
    );
    let conn = h.workers[w].1;
    h.core.remove_conn(conn);
    let (_, submit) = actor_call(actor);
    h.core.handle_ops(h.driver, vec![submit]);
    let errors = driver_errors(&mut h);
    assert!(errors
        .iter()
        .any(|e| e.kind == v1::ErrorKind::ActorDied as i32 && e.message.contains("ember.kill")));
    assert_eq!(h.cpu_available(), 20_000);
}

#[test]
fn names_are_unique_per_namespace_and_die_with_their_owner() {
    let mut h = harness(2.0, 0);
    let (_, _, create) = actor_creation("svc", 0);
    h.core.handle_ops(h.driver, vec![create]);
    let (_, _, again) = actor_creation("svc", 0);
    h.core.handle_ops(h.driver, vec![again]);
    let errors = driver_errors(&mut h);
    assert!(
        errors
            .iter()
            .any(|e| e.kind == v1::ErrorKind::AlreadyExists as i32),
        "{errors:?}"
    );
    let lookup = op(Op::GetActor(v1::GetActor {
        request_id: 9,
        name: "svc".into(),
        namespace: String::new(),
    }));
    h.core.handle_ops(h.driver, vec![lookup]);
    let mut found = false;
    while let Ok(Outgoing::Op(o)) = h.driver_rx.try_recv() {
        if let Some(node_op::Op::ActorReply(r)) = o.op {
            found |= r.request_id == 9 && r.actor.unwrap().creation.unwrap().name == "svc";
        }
    }
    assert!(found);
    // The driver exits: its (non-detached) actor dies and its name is free.
    let driver = h.driver;
    h.core.remove_conn(driver);
    assert!(h
        .core
        .actors
        .values()
        .all(|a| a.state == v1::ActorState::Dead));
}

#[test]
fn workers_a_dead_fork_server_was_starting_are_asked_for_again() {
    let mut h = harness(1.0, 0);
    let (_, submit) = task(1.0, None);
    h.core.handle_ops(h.driver, vec![submit]);
    assert!(matches!(h.pool.try_recv(), Ok(PoolCommand::Spawn(_))));
    assert!(h.pool.try_recv().is_err(), "one worker is starting");
    h.core.fork_server_died("fork server exited".into());
    let Ok(PoolCommand::Spawn(id)) = h.pool.try_recv() else {
        panic!("the lost worker is asked of the next fork server");
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = h.core.add_conn(tx);
    let hello = v1::Hello {
        token: "secret".into(),
        kind: v1::ClientKind::Worker as i32,
        worker_id: id.to_vec().into(),
        ..Default::default()
    };
    assert!(h.core.handle_ops(conn, vec![op(Op::Hello(hello))]));
    let mut ran = false;
    while let Ok(Outgoing::Op(o)) = rx.try_recv() {
        ran |= matches!(o.op, Some(node_op::Op::ExecuteTask(_)));
    }
    assert!(ran, "the queued task runs on the new worker");
}

mod language {
    //! Functions served by name by processes of other languages.
    use super::*;

    /// A Go process: says hello as a driver, then serves `names`.
    fn go_server(
        h: &mut Harness,
        names: &[&str],
        concurrency: u32,
    ) -> (ConnId, UnboundedReceiver<Outgoing>) {
        go_server_with(h, names, &[], concurrency)
    }

    /// A Go process serving functions `names` and actor classes `classes`.
    fn go_server_with(
        h: &mut Harness,
        names: &[&str],
        classes: &[&str],
        concurrency: u32,
    ) -> (ConnId, UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = h.core.add_conn(tx);
        let hello = v1::Hello {
            token: "secret".into(),
            kind: v1::ClientKind::Driver as i32,
            language: v1::Language::Go as i32,
            ..Default::default()
        };
        let serve = v1::ServeFunctions {
            language: v1::Language::Go as i32,
            names: names.iter().map(|n| n.to_string()).collect(),
            concurrency,
            actor_classes: classes.iter().map(|n| n.to_string()).collect(),
        };
        assert!(h.core.handle_ops(
            conn,
            vec![op(Op::Hello(hello)), op(Op::ServeFunctions(serve))]
        ));
        (conn, rx)
    }

    fn call(name: &str, arg: v1::ObjectValue) -> (TaskId, v1::ClientOp) {
        let id = TaskId::random();
        let spec = v1::TaskSpec {
            task_id: id.to_vec().into(),
            function: Some(v1::FunctionDescriptor {
                language: v1::Language::Go as i32,
                name: name.into(),
                ..Default::default()
            }),
            args: vec![v1::TaskArg {
                value: Some(arg),
                ..Default::default()
            }],
            num_returns: 1,
            max_retries: 1,
            cross_language: true,
            ..Default::default()
        };
        (
            id,
            op(Op::SubmitTask(v1::SubmitTask {
                spec: Some(spec),
                ..Default::default()
            })),
        )
    }

    fn msgpack(bytes: &[u8]) -> v1::ObjectValue {
        v1::ObjectValue {
            format: v1::ValueFormat::Msgpack as i32,
            body: Some(v1::object_value::Body::InlineData(bytes.to_vec().into())),
            ..Default::default()
        }
    }

    fn executed(rx: &mut UnboundedReceiver<Outgoing>) -> Vec<v1::ExecuteTask> {
        let mut out = Vec::new();
        while let Ok(Outgoing::Op(o)) = rx.try_recv() {
            if let Some(node_op::Op::ExecuteTask(e)) = o.op {
                out.push(e);
            }
        }
        out
    }

    fn finish(h: &mut Harness, conn: ConnId, task: TaskId, value: v1::ObjectValue) {
        let done = v1::TaskFinished {
            task_id: task.to_vec().into(),
            returns: vec![value],
            ..Default::default()
        };
        h.core.handle_ops(conn, vec![op(Op::TaskFinished(done))]);
    }

    /// The value the driver was told of for `task`'s return, if any.
    fn driver_value(h: &mut Harness, task: TaskId) -> Option<v1::ObjectValue> {
        let id = ObjectId::for_return(task, 0);
        h.core.handle_ops(
            h.driver,
            vec![op(Op::GetObjects(v1::GetObjects {
                object_ids: vec![id.to_vec().into()],
                map: false,
            }))],
        );
        let mut found = None;
        while let Ok(Outgoing::Op(o)) = h.driver_rx.try_recv() {
            if let Some(node_op::Op::ObjectReady(r)) = o.op {
                if r.object_id.as_ref() == id.as_bytes() {
                    found = r.value;
                }
            }
        }
        found
    }

    #[test]
    fn served_functions_run_on_their_server_within_its_concurrency_and_hold_no_cpu() {
        let mut h = harness(1.0, 0);
        let (go, mut go_rx) = go_server(&mut h, &["add"], 2);
        let cpu = h.cpu_available();
        let calls: Vec<TaskId> = (0..3)
            .map(|i| {
                let (id, submit) = call("add", msgpack(&[i]));
                h.core.handle_ops(h.driver, vec![submit]);
                id
            })
            .collect();
        let sent = executed(&mut go_rx);
        assert_eq!(sent.len(), 2, "two at a time");
        let spec = sent[0].spec.clone().unwrap();
        assert_eq!(
            spec.args[0].value.as_ref().unwrap().format,
            v1::ValueFormat::Msgpack as i32
        );
        assert_eq!(h.cpu_available(), cpu, "no CPU held for served tasks");
        assert!(h.pool.try_recv().is_err(), "no Python worker started");
        finish(&mut h, go, calls[0], msgpack(&[42]));
        let third = executed(&mut go_rx);
        assert_eq!(third.len(), 1);
        let value = driver_value(&mut h, calls[0]).expect("the return reached the driver");
        assert_eq!(value.format, v1::ValueFormat::Msgpack as i32);
    }

    #[test]
    fn a_name_nobody_serves_fails_at_once_naming_it() {
        let mut h = harness(1.0, 0);
        let (id, submit) = call("nobody.home", msgpack(&[1]));
        h.core.handle_ops(h.driver, vec![submit]);
        let value = driver_value(&mut h, id).expect("failed at once");
        assert_eq!(value.format, v1::ValueFormat::Error as i32);
        let Some(v1::object_value::Body::InlineData(data)) = value.body else {
            panic!("inline error")
        };
        use prost::Message;
        let err = v1::TaskError::decode(data.as_ref()).unwrap();
        assert_eq!(err.kind, v1::ErrorKind::UnknownFunction as i32);
        assert!(
            err.message.contains("nobody.home") && err.message.contains("GO"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_server_that_disconnects_mid_task_has_it_run_on_another() {
        let mut h = harness(1.0, 0);
        let (first, mut first_rx) = go_server(&mut h, &["work"], 1);
        let (id, submit) = call("work", msgpack(&[1]));
        h.core.handle_ops(h.driver, vec![submit]);
        assert_eq!(executed(&mut first_rx).len(), 1);
        // It dies before a second server exists: the task waits for one.
        h.core.remove_conn(first);
        let (second, mut second_rx) = go_server(&mut h, &["work"], 1);
        assert_eq!(executed(&mut second_rx).len(), 1, "sent to the new server");
        finish(&mut h, second, id, msgpack(&[7]));
        assert_eq!(
            driver_value(&mut h, id).unwrap().format,
            v1::ValueFormat::Msgpack as i32
        );
    }

    #[test]
    fn python_only_values_are_refused_for_other_languages_and_exports_resolve_by_name() {
        let mut h = harness(1.0, 0);
        let (_go, mut go_rx) = go_server(&mut h, &["f"], 1);
        let pickled = v1::ObjectValue {
            format: v1::ValueFormat::Pickle as i32,
            body: Some(v1::object_value::Body::InlineData("x".into())),
            ..Default::default()
        };
        let (id, submit) = call("f", pickled);
        h.core.handle_ops(h.driver, vec![submit]);
        assert!(executed(&mut go_rx).is_empty());
        let value = driver_value(&mut h, id).unwrap();
        assert_eq!(value.format, v1::ValueFormat::Error as i32);
        // A Python function exported by name runs when called by its name.
        let export = v1::RegisterFunction {
            function: Some(v1::FunctionDescriptor {
                language: v1::Language::Python as i32,
                function_id: FUNCTION_ID.to_vec().into(),
                name: "scoring.predict".into(),
            }),
            payload: "code".into(),
            export: true,
        };
        h.core
            .handle_ops(h.driver, vec![op(Op::RegisterFunction(export))]);
        let (id, mut submit) = call("scoring.predict", msgpack(&[1]));
        if let Some(Op::SubmitTask(s)) = submit.op.as_mut() {
            s.spec.as_mut().unwrap().function.as_mut().unwrap().language =
                v1::Language::Python as i32;
        }
        h.core.handle_ops(h.driver, vec![submit]);
        h.start_requested_workers();
        assert_eq!(h.executed().concat(), vec![id], "a Python worker runs it");
    }

    /// Create an actor of the Go class `class`; its calls say `method`.
    fn go_actor(
        h: &mut Harness,
        class: &str,
        max_restarts: i32,
        max_task_retries: i32,
    ) -> (ember_proto::ActorId, TaskId) {
        let actor = ember_proto::ActorId::random();
        let task = TaskId::random();
        let spec = v1::TaskSpec {
            task_id: task.to_vec().into(),
            function: Some(v1::FunctionDescriptor {
                language: v1::Language::Go as i32,
                name: class.into(),
                ..Default::default()
            }),
            args: vec![v1::TaskArg {
                value: Some(msgpack(&[5])),
                ..Default::default()
            }],
            num_returns: 1,
            max_retries: max_restarts,
            cross_language: true,
            actor_creation: Some(v1::ActorCreation {
                actor_id: actor.to_vec().into(),
                max_restarts,
                max_task_retries,
                class_name: class.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let create = v1::CreateActor {
            request_id: 0,
            spec: Some(spec),
            ..Default::default()
        };
        h.core
            .handle_ops(h.driver, vec![op(Op::CreateActor(create))]);
        (actor, task)
    }

    /// A call of `method` that may be sent again `retries` times.
    fn go_call(h: &mut Harness, actor: ember_proto::ActorId, method: &str, retries: i32) -> TaskId {
        let (id, mut submit) = call("Counter", msgpack(&[1]));
        if let Some(Op::SubmitTask(s)) = submit.op.as_mut() {
            let spec = s.spec.as_mut().unwrap();
            spec.actor_id = actor.to_vec().into();
            spec.method_name = method.into();
            spec.max_retries = retries;
        }
        h.core.handle_ops(h.driver, vec![submit]);
        id
    }

    fn dropped(rx: &mut UnboundedReceiver<Outgoing>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Outgoing::Op(o)) = rx.try_recv() {
            if let Some(node_op::Op::DropActor(k)) = o.op {
                out.push(k.actor_id.to_vec());
            }
        }
        out
    }

    fn inline(value: v1::ObjectValue) -> Vec<u8> {
        match value.body {
            Some(v1::object_value::Body::InlineData(data)) => data.to_vec(),
            other => panic!("not inline: {other:?}"),
        }
    }

    fn error_of(value: v1::ObjectValue) -> v1::TaskError {
        assert_eq!(value.format, v1::ValueFormat::Error as i32);
        let Some(v1::object_value::Body::InlineData(data)) = value.body else {
            panic!("inline error")
        };
        prost::Message::decode(data.as_ref()).unwrap()
    }

    #[test]
    fn served_actors_live_on_a_server_of_their_class_and_get_calls_in_order() {
        let mut h = harness(1.0, 0);
        let (go, mut go_rx) = go_server_with(&mut h, &["add"], &["Counter"], 1);
        let (actor, creation) = go_actor(&mut h, "Counter", 0, 0);
        let calls: Vec<TaskId> = (0..3).map(|_| go_call(&mut h, actor, "Incr", 0)).collect();
        let sent = executed(&mut go_rx);
        assert_eq!(sent.len(), 1, "only the constructor until it is done");
        let spec = sent[0].spec.clone().unwrap();
        assert_eq!(spec.task_id.as_ref(), creation.as_bytes());
        assert!(spec.actor_creation.is_some());
        assert_eq!(h.core.actors[&actor].state, v1::ActorState::Pending);
        finish(&mut h, go, creation, msgpack(&[0xc0]));
        assert_eq!(h.core.actors[&actor].state, v1::ActorState::Alive);
        let sent: Vec<TaskId> = executed(&mut go_rx)
            .iter()
            .map(|e| TaskId::from_bytes(&e.spec.as_ref().unwrap().task_id).unwrap())
            .collect();
        assert_eq!(sent, calls, "every call, in order, beyond concurrency 1");
        // Its calls do not take the process's function slot.
        let (add, submit) = call("add", msgpack(&[1]));
        h.core.handle_ops(h.driver, vec![submit]);
        assert_eq!(executed(&mut go_rx).len(), 1, "the function runs too");
        finish(&mut h, go, calls[0], msgpack(&[6]));
        finish(&mut h, go, add, msgpack(&[2]));
        assert_eq!(inline(driver_value(&mut h, calls[0]).unwrap()), vec![6]);
        assert_eq!(inline(driver_value(&mut h, add).unwrap()), vec![2]);
        let info = h.core.actor_info(actor).unwrap();
        assert_eq!(info.state, v1::ActorState::Alive as i32);
    }

    #[test]
    fn a_served_actor_restarts_on_another_server_then_dies_when_killed() {
        let mut h = harness(1.0, 0);
        let (first, mut first_rx) = go_server_with(&mut h, &[], &["Counter"], 1);
        let (actor, creation) = go_actor(&mut h, "Counter", 1, 1);
        finish(&mut h, first, creation, msgpack(&[0xc0]));
        let call = go_call(&mut h, actor, "Incr", 1);
        assert_eq!(executed(&mut first_rx).len(), 2, "creation and the call");
        // The process hosting it dies mid-call: it restarts once no server
        // is left (waiting for one), and the call is sent again after.
        h.core.remove_conn(first);
        assert_eq!(h.core.actors[&actor].state, v1::ActorState::Restarting);
        let (second, mut second_rx) = go_server_with(&mut h, &[], &["Counter"], 1);
        let sent = executed(&mut second_rx);
        assert_eq!(sent.len(), 1, "the constructor runs again there");
        let recreated = TaskId::from_bytes(&sent[0].spec.as_ref().unwrap().task_id).unwrap();
        assert_ne!(recreated, creation);
        finish(&mut h, second, recreated, msgpack(&[0xc0]));
        let resent = executed(&mut second_rx);
        assert_eq!(resent.len(), 1);
        assert_eq!(
            resent[0].spec.as_ref().unwrap().task_id.as_ref(),
            call.as_bytes()
        );
        finish(&mut h, second, call, msgpack(&[6]));
        assert_eq!(inline(driver_value(&mut h, call).unwrap()), vec![6]);
        assert_eq!(h.core.actor_info(actor).unwrap().num_restarts, 1);
        // Killed for good: the process drops it; calls fail ActorDied.
        let in_flight = go_call(&mut h, actor, "Incr", 0);
        h.core.handle_ops(
            h.driver,
            vec![op(Op::KillActor(v1::KillActor {
                actor_id: actor.to_vec().into(),
                no_restart: true,
            }))],
        );
        assert_eq!(dropped(&mut second_rx), vec![actor.to_vec()]);
        let err = error_of(driver_value(&mut h, in_flight).unwrap());
        assert_eq!(err.kind, v1::ErrorKind::ActorDied as i32, "{}", err.message);
        // Its late answer is ignored.
        finish(&mut h, second, in_flight, msgpack(&[7]));
        let later = go_call(&mut h, actor, "Incr", 0);
        let err = error_of(driver_value(&mut h, later).unwrap());
        assert!(err.message.contains("ember.kill"), "{}", err.message);
        assert!(executed(&mut second_rx).is_empty());
    }

    #[test]
    fn a_class_nobody_serves_fails_at_once_and_a_failed_constructor_fails_every_call() {
        let mut h = harness(1.0, 0);
        let (actor, creation) = go_actor(&mut h, "Nobody", 0, 0);
        let err = error_of(driver_value(&mut h, creation).unwrap());
        assert_eq!(err.kind, v1::ErrorKind::UnknownFunction as i32);
        assert!(
            err.message.contains("Nobody") && err.message.contains("class"),
            "{}",
            err.message
        );
        let call = go_call(&mut h, actor, "Incr", 0);
        let err = error_of(driver_value(&mut h, call).unwrap());
        assert_eq!(err.kind, v1::ErrorKind::ActorDied as i32);

        let (go, mut go_rx) = go_server_with(&mut h, &[], &["Counter"], 1);
        let (actor, creation) = go_actor(&mut h, "Counter", 3, 0);
        let call = go_call(&mut h, actor, "Incr", 0);
        assert_eq!(executed(&mut go_rx).len(), 1);
        let raised = v1::TaskError {
            kind: v1::ErrorKind::TaskFailed as i32,
            message: "start must be positive".into(),
            ..Default::default()
        };
        finish(&mut h, go, creation, crate::node::error_value(&raised));
        assert_eq!(h.core.actors[&actor].state, v1::ActorState::Dead);
        let err = error_of(driver_value(&mut h, call).unwrap());
        assert_eq!(err.message, "start must be positive");
        assert!(
            executed(&mut go_rx).is_empty(),
            "no call reaches the process"
        );
    }
}

mod residency {
    //! Grants of shared-memory locations and restores of spilled objects.

    use super::*;
    use ember_flight_store::PinOutcome;
    use v1::object_value::Body;

    const SIZE: usize = 1 << 20;

    impl Harness {
        /// Put `SIZE` bytes through shared memory the way a driver does.
        fn put_shm(&mut self, byte: u8) -> ObjectId {
            let id = ObjectId::random();
            let create = v1::CreateObject {
                request_id: 1,
                object_id: id.to_vec().into(),
                size: SIZE as u64,
                timeout_ms: 0,
            };
            self.core
                .handle_ops(self.driver, vec![op(Op::CreateObject(create))]);
            let location = loop {
                match self.driver_rx.try_recv() {
                    Ok(Outgoing::Op(v1::NodeOp {
                        op: Some(node_op::Op::CreateObjectReply(r)),
                    })) => break r.location.unwrap(),
                    Ok(_) => continue,
                    Err(e) => panic!("no create reply: {e:?}"),
                }
            };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(self.core.store().arena_path())
                .unwrap();
            use std::io::{Seek, Write};
            file.seek(std::io::SeekFrom::Start(location.offset))
                .unwrap();
            file.write_all(&vec![byte; SIZE]).unwrap();
            let put = v1::PutObject {
                object_id: id.to_vec().into(),
                value: Some(v1::ObjectValue {
                    format: v1::ValueFormat::Raw as i32,
                    body: Some(Body::Shm(location)),
                    ..Default::default()
                }),
            };
            self.core
                .handle_ops(self.driver, vec![op(Op::PutObject(put))]);
            id
        }

        fn submit_with_arg(&mut self, arg: ObjectId) -> TaskId {
            let (id, submit) = task(1.0, None);
            let Some(Op::SubmitTask(mut s)) = submit.op else {
                unreachable!()
            };
            s.spec.as_mut().unwrap().args.push(v1::TaskArg {
                object_ref: arg.to_vec().into(),
                ..Default::default()
            });
            self.core
                .handle_ops(self.driver, vec![op(Op::SubmitTask(s))]);
            id
        }

        /// The ExecuteTask ops worker `i` was sent.
        fn executions(&mut self, i: usize) -> Vec<v1::ExecuteTask> {
            let mut out = Vec::new();
            while let Ok(Outgoing::Op(o)) = self.workers[i].2.try_recv() {
                if let Some(node_op::Op::ExecuteTask(e)) = o.op {
                    out.push(e);
                }
            }
            out
        }

        /// ObjectReady values the driver was sent for `id`.
        fn driver_ready(&mut self, id: ObjectId) -> Vec<v1::ObjectValue> {
            let mut out = Vec::new();
            while let Ok(Outgoing::Op(o)) = self.driver_rx.try_recv() {
                if let Some(node_op::Op::ObjectReady(r)) = o.op {
                    if r.object_id.as_ref() == id.as_bytes() {
                        out.push(r.value.unwrap());
                    }
                }
            }
            out
        }

        fn unmap(&mut self, conn: ConnId, id: ObjectId) {
            let update = v1::RefUpdate {
                unmap: vec![id.to_vec().into()],
                ..Default::default()
            };
            self.core.handle_ops(conn, vec![op(Op::RefUpdate(update))]);
        }

        fn release(&mut self, id: ObjectId) {
            let update = v1::RefUpdate {
                remove: vec![id.to_vec().into()],
                ..Default::default()
            };
            self.core
                .handle_ops(self.driver, vec![op(Op::RefUpdate(update))]);
        }

        fn spill(&mut self, id: ObjectId) {
            let store = self.core.store().clone();
            let request = store.request_room(16 << 20);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !store.is_spilled(&id) {
                assert!(std::time::Instant::now() < deadline, "not spilled");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(request);
        }

        /// Serve the restore the core asked for, as `run_store_events` does.
        fn serve_restore(&mut self) -> ObjectId {
            let id = self.restores.try_recv().expect("a restore request");
            let store = self.core.store().clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            let result = runtime.block_on(store.restore(id, deadline));
            self.core.restore_done(id, result);
            id
        }
    }

    fn shm_arg(exec: &v1::ExecuteTask) -> v1::ShmLocation {
        match exec.spec.as_ref().unwrap().args[0]
            .value
            .as_ref()
            .unwrap()
            .body
        {
            Some(Body::Shm(location)) => location,
            ref other => panic!("expected a location, got {other:?}"),
        }
    }

    #[test]
    fn announcements_carry_the_size_and_map_requests_a_pinned_location() {
        let mut h = harness(1.0, 0);
        let id = h.put_shm(3);
        let get = |map| {
            op(Op::GetObjects(v1::GetObjects {
                object_ids: vec![id.to_vec().into()],
                map,
            }))
        };
        h.core.handle_ops(h.driver, vec![get(false)]);
        let announced = h.driver_ready(id);
        assert_eq!(announced[0].body, Some(Body::StoredSize(SIZE as u64)));
        assert_eq!(h.core.store().pins(&id), 0);
        h.core.handle_ops(h.driver, vec![get(true), get(true)]);
        let granted = h.driver_ready(id);
        assert!(matches!(granted[0].body, Some(Body::Shm(_))));
        assert_eq!(h.core.store().pins(&id), 2, "one pin per location sent");
        // Released by the driver, the object lives on while it is mapped.
        h.release(id);
        assert!(h.core.store().contains(&id));
        h.unmap(h.driver, id);
        assert_eq!(h.core.store().pins(&id), 1);
        h.unmap(h.driver, id);
        h.unmap(h.driver, id); // one too many: ignored
        assert!(!h.core.store().contains(&id), "freed with the last grant");
    }

    #[test]
    fn task_arguments_are_granted_to_the_worker_until_it_unmaps_or_dies() {
        let mut h = harness(1.0, 0);
        let id = h.put_shm(5);
        let first = h.submit_with_arg(id);
        h.start_requested_workers();
        let exec = h.executions(0);
        assert_eq!(exec.len(), 1);
        assert_eq!(shm_arg(&exec[0]).size, SIZE as u64);
        assert_eq!(h.core.store().pins(&id), 1);
        h.finish(0, first);
        assert_eq!(
            h.core.store().pins(&id),
            1,
            "a mapping may outlive the task"
        );
        let worker = h.workers[0].1;
        h.unmap(worker, id);
        assert_eq!(h.core.store().pins(&id), 0);
        // A worker that dies gives its grants back.
        let second = h.submit_with_arg(id);
        assert_eq!(h.executions(0).len(), 1);
        assert_eq!(h.core.store().pins(&id), 1);
        h.release(id);
        h.core.remove_conn(worker);
        assert_eq!(h.core.store().pins(&id), 0);
        assert!(h.core.tasks.contains_key(&second), "retried");
    }

    #[test]
    fn spilled_arguments_are_restored_before_the_task_is_sent() {
        let mut h = harness_with_store(1.0, 0, 4 << 20, true);
        let id = h.put_shm(9);
        h.spill(id);
        assert!(matches!(h.core.store().pin_shm(&id), PinOutcome::Spilled));
        let t = h.submit_with_arg(id);
        h.start_requested_workers();
        assert!(h.workers.is_empty(), "no worker is taken while it waits");
        assert_eq!(h.core.tasks[&t].state, tasks::TaskState::RestoringArgs);
        assert_eq!(h.serve_restore(), id);
        h.start_requested_workers();
        let exec = h.executions(0);
        assert_eq!(exec.len(), 1, "sent once restored");
        let location = shm_arg(&exec[0]);
        let data = h.core.store().read(&id).unwrap();
        assert_eq!(data.len(), SIZE);
        assert!(data.iter().all(|&b| b == 9));
        assert_eq!(h.core.store().pins(&id), 1);
        assert_eq!(location.size, SIZE as u64);
    }

    #[test]
    fn map_requests_of_spilled_objects_are_answered_after_the_restore() {
        let mut h = harness_with_store(1.0, 0, 4 << 20, true);
        let id = h.put_shm(4);
        h.spill(id);
        let map = v1::GetObjects {
            object_ids: vec![id.to_vec().into()],
            map: true,
        };
        h.core.handle_ops(h.driver, vec![op(Op::GetObjects(map))]);
        assert!(h.driver_ready(id).is_empty());
        h.serve_restore();
        let granted = h.driver_ready(id);
        assert!(matches!(granted[0].body, Some(Body::Shm(_))));
        assert_eq!(h.core.store().pins(&id), 1);
        // A restore that cannot read the file back fails the waiter with a
        // clear error (and not the object: a later restore may work).
        h.unmap(h.driver, id);
        h.spill(id);
        let file = h.core.store().spill_dir().unwrap().join(id.hex());
        let saved = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let map = v1::GetObjects {
            object_ids: vec![id.to_vec().into()],
            map: true,
        };
        h.core
            .handle_ops(h.driver, vec![op(Op::GetObjects(map.clone()))]);
        h.serve_restore();
        let failed = h.driver_ready(id);
        assert_eq!(failed[0].format, v1::ValueFormat::Error as i32);
        let Some(Body::InlineData(data)) = &failed[0].body else {
            panic!("an inline error")
        };
        use prost::Message;
        let err = v1::TaskError::decode(data.as_ref()).unwrap();
        assert_eq!(err.kind, v1::ErrorKind::ObjectLost as i32);
        assert!(err.message.contains(&id.hex()), "{}", err.message);
        std::fs::write(&file, saved).unwrap();
        h.core.handle_ops(h.driver, vec![op(Op::GetObjects(map))]);
        h.serve_restore();
        assert!(matches!(h.driver_ready(id)[0].body, Some(Body::Shm(_))));
    }
}
