//! Criterion benchmarks of the node daemon's hot paths.
//!
//! ```text
//! cargo bench -p ember-server --bench hot_paths            # all groups
//! cargo bench -p ember-server --bench hot_paths -- stream  # groups matching "stream"
//! cargo bench --no-run -p ember-server                     # compile only
//! ```
//!
//! - `task_spec`: protobuf encode and decode of a typical `TaskSpec` (a
//!   Python task from a driver: ids, function descriptor, one inline and one
//!   by-reference argument, `{CPU: 1}`), alone and as a `ClientMessage` of
//!   1,000 submits.
//! - `placement`: the resource checks every placement makes
//!   (`resources::task_request`, `ResourceSet::contains`), and the node core
//!   scheduling 1,000 tasks end to end as `server/src/node/tests.rs` drives
//!   it: one batch of submits from a driver, dispatch to two workers, their
//!   `TaskFinished` batches, the driver dropping its refs (channels stand in
//!   for sockets; no process, no IO); and 1,000 calls of a function a Rust
//!   worker serves, both ends on local outboxes as in the node
//!   (`core_served_call_1000`).
//! - `stream_batching`: the local transport's framing: the core encoding N
//!   ops into a connection's outbox and its writer framing them
//!   (`Outbox::push`, `try_take`, `Batch::frames`), and the reader splitting
//!   a frame of N submits and decoding it (`frame::next_frame` +
//!   `ClientMessage::decode`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ember_flight_store::{Store, StoreConfig};
use ember_proto::v1::{self, client_op::Op, node_op};
use ember_proto::{frame, JobId, NodeId, ObjectId, TaskId, WorkerId};
use ember_server::node::{ConnId, CoreConfig, NodeCore, Outgoing, PoolCommand};
use ember_server::outbox::Outbox;
use ember_server::resources::{task_request, ResourceSet};
use ember_server::NodeConfig;
use prost::Message;
use tokio::sync::mpsc::{self, UnboundedReceiver};

const FUNCTION_ID: [u8; 20] = [7; 20];

/// A Python task as a driver submits it.
fn typical_spec() -> v1::TaskSpec {
    let task_id = TaskId::random();
    let by_ref = ObjectId::for_return(TaskId::random(), 0);
    v1::TaskSpec {
        task_id: task_id.to_vec().into(),
        job_id: JobId([0, 0, 0, 1]).to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            language: v1::Language::Python as i32,
            function_id: FUNCTION_ID.to_vec().into(),
            name: "__main__.rollout".into(),
        }),
        args: vec![
            v1::TaskArg {
                // A small pickled value: protocol 5, a short tuple.
                value: Some(v1::ObjectValue {
                    format: v1::ValueFormat::Pickle as i32,
                    body: Some(v1::object_value::Body::InlineData(Bytes::from(vec![
                        0x80;
                        48
                    ]))),
                    ..Default::default()
                }),
                ..Default::default()
            },
            v1::TaskArg {
                object_ref: by_ref.to_vec().into(),
                ..Default::default()
            },
        ],
        num_returns: 1,
        resources: [("CPU".to_string(), 1.0)].into_iter().collect(),
        max_retries: 3,
        ..Default::default()
    }
}

fn submit_op(spec: v1::TaskSpec) -> v1::ClientOp {
    v1::ClientOp {
        op: Some(Op::SubmitTask(v1::SubmitTask {
            spec: Some(spec),
            ..Default::default()
        })),
    }
}

fn task_spec(c: &mut Criterion) {
    let mut group = c.benchmark_group("task_spec");
    let spec = typical_spec();
    let encoded = Bytes::from(spec.encode_to_vec());
    let mut buf = Vec::with_capacity(1024);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&spec).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| v1::TaskSpec::decode(black_box(encoded.clone())).unwrap())
    });

    let batch = v1::ClientMessage {
        ops: (0..1000).map(|_| submit_op(typical_spec())).collect(),
    };
    let batch_bytes = Bytes::from(batch.encode_to_vec());
    group.throughput(Throughput::Elements(1000));
    group.bench_function("encode_batch_1000", |b| {
        let mut out = Vec::with_capacity(batch_bytes.len());
        b.iter(|| {
            out.clear();
            black_box(&batch).encode(&mut out).unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("decode_batch_1000", |b| {
        b.iter(|| v1::ClientMessage::decode(black_box(batch_bytes.clone())).unwrap())
    });
    group.finish();
}

/// A node core with a driver connection, as in server/src/node/tests.rs.
struct Harness {
    core: NodeCore,
    pool: UnboundedReceiver<PoolCommand>,
    driver: ConnId,
    driver_rx: UnboundedReceiver<Outgoing>,
    workers: Vec<(ConnId, UnboundedReceiver<Outgoing>)>,
    _dir: tempfile::TempDir,
}

fn op(o: Op) -> v1::ClientOp {
    v1::ClientOp { op: Some(o) }
}

fn harness(cpus: f64) -> Harness {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store = Arc::new(
        Store::new(StoreConfig {
            arena_path: dir.path().join("arena"),
            capacity: 16 << 20,
            prefault_bytes: 0,
            spill: None,
        })
        .unwrap(),
    );
    let mut node = NodeConfig::defaults();
    node.num_cpus = cpus;
    node.num_gpus = 0.0;
    let cfg = CoreConfig {
        token: "secret".into(),
        max_inline_bytes: 100 << 10,
        pipeline_depth: 8,
        pipeline_window: std::time::Duration::from_millis(20),
        prestart_workers: 0,
        max_workers: 8,
        session_dir: dir.path().to_path_buf(),
        node_address: "127.0.0.1:0".into(),
        object_store_wait: std::time::Duration::from_secs(30),
        is_head: true,
    };
    let (pool_tx, pool) = mpsc::unbounded_channel();
    let (restore_tx, _restores) = mpsc::unbounded_channel();
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
    let register = v1::RegisterFunction {
        function: Some(v1::FunctionDescriptor {
            function_id: FUNCTION_ID.to_vec().into(),
            ..Default::default()
        }),
        payload: "code".into(),
        export: false,
    };
    core.handle_ops(driver, vec![op(Op::RegisterFunction(register))]);
    Harness {
        core,
        pool,
        driver,
        driver_rx,
        workers: Vec::new(),
        _dir: dir,
    }
}

/// An empty task of one CPU, no arguments (the core's own cost per task).
fn empty_task() -> (ObjectId, v1::ClientOp) {
    let id = TaskId::random();
    let spec = v1::TaskSpec {
        task_id: id.to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            function_id: FUNCTION_ID.to_vec().into(),
            ..Default::default()
        }),
        num_returns: 1,
        resources: [("CPU".to_string(), 1.0)].into_iter().collect(),
        max_retries: 1,
        ..Default::default()
    };
    (ObjectId::for_return(id, 0), submit_op(spec))
}

impl Harness {
    fn start_requested_workers(&mut self) {
        while let Ok(PoolCommand::Spawn(id)) = self.pool.try_recv() {
            self.connect_worker(id);
        }
    }

    fn connect_worker(&mut self, id: WorkerId) {
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
        self.workers.push((conn, rx));
    }

    /// Submit `tasks` in one batch, run them all to completion, drop the refs.
    fn run_batch(&mut self, tasks: Vec<(ObjectId, v1::ClientOp)>) {
        let n = tasks.len();
        let (returns, submits): (Vec<ObjectId>, Vec<v1::ClientOp>) = tasks.into_iter().unzip();
        self.core.handle_ops(self.driver, submits);
        let mut finished = 0;
        while finished < n {
            self.start_requested_workers();
            let mut progressed = false;
            for w in 0..self.workers.len() {
                let mut done = Vec::new();
                while let Ok(Outgoing::Op(o)) = self.workers[w].1.try_recv() {
                    if let Some(node_op::Op::ExecuteTask(e)) = o.op {
                        let task_id = e.spec.map(|s| s.task_id).unwrap_or_default();
                        done.push(op(Op::TaskFinished(v1::TaskFinished {
                            task_id,
                            returns: vec![v1::ObjectValue {
                                format: v1::ValueFormat::Raw as i32,
                                body: Some(v1::object_value::Body::InlineData(Bytes::from_static(
                                    b"ok",
                                ))),
                                ..Default::default()
                            }],
                            retryable_error: false,
                            actor_exit: false,
                        })));
                    }
                }
                if !done.is_empty() {
                    finished += done.len();
                    progressed = true;
                    let conn = self.workers[w].0;
                    self.core.handle_ops(conn, done);
                }
            }
            assert!(
                progressed || !self.pool.is_empty(),
                "the core stopped dispatching with {finished}/{n} tasks finished"
            );
        }
        let remove = v1::RefUpdate {
            remove: returns.iter().map(|id| id.to_vec().into()).collect(),
            ..Default::default()
        };
        self.core
            .handle_ops(self.driver, vec![op(Op::RefUpdate(remove))]);
        while self.driver_rx.try_recv().is_ok() {}
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    let request_map: HashMap<String, f64> = [("CPU".to_string(), 1.0)].into_iter().collect();
    let total_map: HashMap<String, f64> = [
        ("CPU".to_string(), 2.0),
        ("GPU".to_string(), 0.0),
        ("memory".to_string(), 16e9),
        ("object_store_memory".to_string(), 7e9),
    ]
    .into_iter()
    .collect();
    let total = ResourceSet::from_map(&total_map).unwrap();
    let request = task_request(&request_map).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("task_request", |b| {
        b.iter(|| task_request(black_box(&request_map)).unwrap())
    });
    group.bench_function("contains", |b| {
        b.iter(|| black_box(&total).contains(black_box(&request)))
    });

    let mut h = harness(2.0);
    h.run_batch((0..100).map(|_| empty_task()).collect()); // workers connected
    group.throughput(Throughput::Elements(1000));
    group.bench_function("core_submit_run_finish_1000", |b| {
        b.iter_batched(
            || (0..1000).map(|_| empty_task()).collect::<Vec<_>>(),
            |tasks| h.run_batch(tasks),
            BatchSize::LargeInput,
        )
    });

    let mut served = served_harness();
    served.run_batch((0..100).map(|_| served_call()).collect());
    group.bench_function("core_served_call_1000", |b| {
        b.iter_batched(
            || (0..1000).map(|_| served_call()).collect::<Vec<_>>(),
            |calls| served.run_batch(calls),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A node core whose driver and serving process (Rust, one name) are local
/// connections with outboxes, as in the node: what the core does per call
/// from a Go or Rust client to a Go or Rust worker.
struct ServedHarness {
    h: Harness,
    driver: ConnId,
    driver_out: Arc<Outbox>,
    server: ConnId,
    server_out: Arc<Outbox>,
    spare: Vec<u8>,
}

fn served_harness() -> ServedHarness {
    let mut sh = ServedHarness {
        h: harness(2.0),
        driver: 0,
        driver_out: Arc::new(Outbox::new()),
        server: 0,
        server_out: Arc::new(Outbox::new()),
        spare: Vec::new(),
    };
    let hello = || v1::Hello {
        token: "secret".into(),
        kind: v1::ClientKind::Driver as i32,
        language: v1::Language::Rust as i32,
        ..Default::default()
    };
    sh.driver = sh.h.core.add_local_conn(sh.driver_out.clone());
    assert!(sh
        .h
        .core
        .handle_ops(sh.driver, vec![op(Op::Hello(hello()))]));
    sh.server = sh.h.core.add_local_conn(sh.server_out.clone());
    let serve = v1::ServeFunctions {
        language: v1::Language::Rust as i32,
        names: vec!["bench.add_one".into()],
        concurrency: 4096,
        actor_classes: Vec::new(),
    };
    assert!(sh.h.core.handle_ops(
        sh.server,
        vec![op(Op::Hello(hello())), op(Op::ServeFunctions(serve))]
    ));
    sh.drain(true);
    sh.drain(false);
    sh
}

/// A Rust client's call of a served function: one small msgpack argument.
fn served_call() -> (ObjectId, v1::ClientOp) {
    let id = TaskId::random();
    let spec = v1::TaskSpec {
        task_id: id.to_vec().into(),
        job_id: JobId([0, 0, 0, 1]).to_vec().into(),
        function: Some(v1::FunctionDescriptor {
            language: v1::Language::Rust as i32,
            name: "bench.add_one".into(),
            ..Default::default()
        }),
        args: vec![v1::TaskArg {
            value: Some(msgpack(&[0x91, 0x2a])),
            ..Default::default()
        }],
        num_returns: 1,
        ..Default::default()
    };
    (ObjectId::for_return(id, 0), submit_op(spec))
}

fn msgpack(bytes: &[u8]) -> v1::ObjectValue {
    v1::ObjectValue {
        format: v1::ValueFormat::Msgpack as i32,
        body: Some(v1::object_value::Body::InlineData(Bytes::copy_from_slice(
            bytes,
        ))),
        ..Default::default()
    }
}

impl ServedHarness {
    /// Take what the core queued for the driver (or the server), decoded.
    fn drain(&mut self, driver: bool) -> Vec<v1::NodeOp> {
        let outbox = if driver {
            &self.driver_out
        } else {
            &self.server_out
        };
        match outbox.try_take(std::mem::take(&mut self.spare)) {
            Ok(batch) => {
                let ops = v1::NodeMessage::decode(batch.entries()).unwrap().ops;
                self.spare = batch.into_buffer();
                ops
            }
            Err(spare) => {
                self.spare = spare;
                Vec::new()
            }
        }
    }

    /// Submit the calls in one batch, answer every ExecuteTask, drop the refs.
    fn run_batch(&mut self, calls: Vec<(ObjectId, v1::ClientOp)>) {
        let n = calls.len();
        let (returns, submits): (Vec<ObjectId>, Vec<v1::ClientOp>) = calls.into_iter().unzip();
        self.h.core.handle_ops(self.driver, submits);
        let mut finished = 0;
        while finished < n {
            let done: Vec<v1::ClientOp> = self
                .drain(false)
                .into_iter()
                .filter_map(|o| match o.op {
                    Some(node_op::Op::ExecuteTask(e)) => {
                        Some(op(Op::TaskFinished(v1::TaskFinished {
                            task_id: e.spec.map(|s| s.task_id).unwrap_or_default(),
                            returns: vec![msgpack(&[0x2b])],
                            ..Default::default()
                        })))
                    }
                    _ => None,
                })
                .collect();
            assert!(
                !done.is_empty(),
                "the core stopped sending calls at {finished}/{n}"
            );
            finished += done.len();
            self.h.core.handle_ops(self.server, done);
        }
        let ready = self.drain(true);
        assert_eq!(ready.len(), n, "one ObjectReady per call");
        let remove = v1::RefUpdate {
            remove: returns.iter().map(|id| id.to_vec().into()).collect(),
            ..Default::default()
        };
        self.h
            .core
            .handle_ops(self.driver, vec![op(Op::RefUpdate(remove))]);
        self.drain(true);
    }
}

fn execute_op() -> v1::NodeOp {
    v1::NodeOp {
        op: Some(node_op::Op::ExecuteTask(v1::ExecuteTask {
            spec: Some(typical_spec()),
            assigned_resources: [("CPU".to_string(), 1.0)].into_iter().collect(),
            ..Default::default()
        })),
    }
}

fn stream_batching(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_batching");
    for n in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(n as u64));
        let ops: Vec<v1::NodeOp> = (0..n).map(|_| execute_op()).collect();
        let mut out = Vec::with_capacity(64 * 1024);
        group.bench_function(format!("write_encode_frame_{n}"), |b| {
            let outbox = Outbox::new();
            let mut spare = Vec::new();
            b.iter(|| {
                for o in &ops {
                    outbox.push(o);
                }
                let mut batch = outbox.try_take(std::mem::take(&mut spare)).ok().unwrap();
                let written = black_box(batch.frames(&mut out).len());
                spare = batch.into_buffer();
                written
            })
        });

        let msg = v1::ClientMessage {
            ops: (0..n).map(|_| submit_op(typical_spec())).collect(),
        };
        let mut framed = Vec::new();
        frame::encode_frame(&msg, &mut framed);
        group.bench_function(format!("read_split_decode_{n}"), |b| {
            b.iter(|| {
                let buf = black_box(&framed[..]);
                let (body, used) = frame::next_frame(buf).unwrap().unwrap();
                let decoded = v1::ClientMessage::decode(&buf[body]).unwrap();
                black_box((decoded.ops.len(), used))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, task_spec, placement, stream_batching);
criterion_main!(benches);
