//! Starts a real `ember` node on 127.0.0.1 port 0 and drives it over its Unix
//! socket (the local protocol) and its TCP port (Arrow Flight, token check),
//! then runs tasks on real Python workers when the project venv exists.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use ember_proto::frame;
use ember_proto::v1::{self, client_op, node_op, object_value::Body};
use ember_proto::{ObjectId, TaskId};
use futures::StreamExt;
use prost::Message;

struct Node {
    child: Child,
    info: serde_json::Value,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Everything the node's workers logged (for failure messages).
    fn worker_logs(&self) -> String {
        let mut out = String::new();
        let sessions = self._dir.path().join("sessions");
        for entry in std::fs::read_dir(sessions).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("logs/workers.log")) {
                out.push_str(&text);
            }
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn venv_python() -> Option<PathBuf> {
    let p = workspace().join(".venv/bin/python");
    p.exists().then_some(p)
}

fn start_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ember"));
    cmd.args([
        "start",
        "--head",
        "--block",
        "--port",
        "0",
        "--num-cpus",
        "2",
    ])
    .arg("--object-store-memory")
    .arg((64u64 << 20).to_string())
    .arg("--ready-file")
    .arg(&ready)
    .arg("--session-root")
    .arg(dir.path().join("sessions"))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    match venv_python() {
        Some(py) => cmd.arg("--python").arg(py),
        None => cmd.arg("--prestart-workers").arg("0"),
    };
    let mut child = cmd.spawn().expect("start ember");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Ok(info) = serde_json::from_str(&text) {
                return Node {
                    child,
                    info,
                    _dir: dir,
                };
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "node exited during startup"
        );
        assert!(Instant::now() < deadline, "node not ready within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
    /// Ops received and not yet looked at (the node batches several per frame).
    pending: std::collections::VecDeque<node_op::Op>,
    /// Objects that arrived while waiting for another one (results come in any order).
    arrived: std::collections::HashMap<Vec<u8>, Option<v1::ObjectValue>>,
}

impl Client {
    fn connect(node: &Node, token: &str) -> Self {
        let sock = UnixStream::connect(node.info["socket"].as_str().unwrap()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut c = Client {
            sock,
            buf: Vec::new(),
            pending: Default::default(),
            arrived: Default::default(),
        };
        c.send(vec![client_op::Op::Hello(v1::Hello {
            token: token.into(),
            kind: v1::ClientKind::Driver as i32,
            pid: std::process::id(),
            language: v1::Language::Rust as i32,
            ..Default::default()
        })]);
        c
    }

    fn send(&mut self, ops: Vec<client_op::Op>) {
        let msg = v1::ClientMessage {
            ops: ops
                .into_iter()
                .map(|op| v1::ClientOp { op: Some(op) })
                .collect(),
        };
        let mut out = Vec::new();
        frame::encode_frame(&msg, &mut out);
        self.sock.write_all(&out).unwrap();
    }

    /// The next op from the node, or None when it closed the connection.
    fn next_op(&mut self) -> Option<node_op::Op> {
        loop {
            if let Some(op) = self.pending.pop_front() {
                return Some(op);
            }
            if let Some((body, used)) = frame::next_frame(&self.buf).unwrap() {
                let msg = v1::NodeMessage::decode(&self.buf[body]).unwrap();
                self.buf.drain(..used);
                self.pending
                    .extend(msg.ops.into_iter().filter_map(|o| o.op));
                continue;
            }
            let mut chunk = [0u8; 65536];
            let n = self.sock.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn ready(&mut self, id: ObjectId) -> Option<v1::ObjectValue> {
        loop {
            if let Some(value) = self.arrived.remove(id.as_bytes()) {
                return value;
            }
            if let node_op::Op::ObjectReady(r) = self.next_op()? {
                self.arrived.insert(r.object_id.to_vec(), r.value);
            }
        }
    }
}

fn put_id() -> ObjectId {
    let mut b = [0u8; 20];
    b[..16].copy_from_slice(&TaskId::random().0);
    ObjectId(b)
}

#[test]
fn wrong_token_is_refused_and_node_keeps_serving() {
    let node = start_node();
    let mut bad = Client::connect(&node, "not-the-token");
    match bad.next_op() {
        Some(node_op::Op::Error(e)) => {
            assert_eq!(e.error.unwrap().kind, v1::ErrorKind::Unauthenticated as i32)
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(bad.next_op().is_none(), "connection closed after refusal");
    let token = node.info["token"].as_str().unwrap();
    let mut good = Client::connect(&node, token);
    assert!(matches!(good.next_op(), Some(node_op::Op::HelloReply(_))));
}

#[test]
fn objects_inline_and_in_shared_memory_and_over_flight() {
    let node = start_node();
    let token = node.info["token"].as_str().unwrap().to_string();
    let mut c = Client::connect(&node, &token);
    let Some(node_op::Op::HelloReply(hello)) = c.next_op() else {
        panic!("no hello reply")
    };

    // Inline put and get.
    let small = put_id();
    c.send(vec![
        client_op::Op::PutObject(v1::PutObject {
            object_id: small.to_vec().into(),
            value: Some(v1::ObjectValue {
                format: v1::ValueFormat::Raw as i32,
                body: Some(Body::InlineData("hello".into())),
                ..Default::default()
            }),
        }),
        client_op::Op::GetObjects(v1::GetObjects {
            object_ids: vec![small.to_vec().into()],
            map: false,
        }),
    ]);
    let v = c.ready(small).expect("object ready");
    assert_eq!(v.body, Some(Body::InlineData("hello".into())));

    // Create, write in place, seal.
    let big = put_id();
    let data: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
    c.send(vec![client_op::Op::CreateObject(v1::CreateObject {
        request_id: 7,
        object_id: big.to_vec().into(),
        size: data.len() as u64,
        timeout_ms: 0,
    })]);
    let loc = match c.next_op() {
        Some(node_op::Op::CreateObjectReply(r)) => r.location.unwrap(),
        other => panic!("expected a create reply, got {other:?}"),
    };
    let arena = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&hello.shm_path)
        .unwrap();
    arena.write_all_at(&data, loc.offset).unwrap();
    c.send(vec![
        client_op::Op::PutObject(v1::PutObject {
            object_id: big.to_vec().into(),
            value: Some(v1::ObjectValue {
                format: v1::ValueFormat::Raw as i32,
                body: Some(Body::Shm(loc)),
                ..Default::default()
            }),
        }),
        client_op::Op::GetObjects(v1::GetObjects {
            object_ids: vec![big.to_vec().into()],
            map: false,
        }),
    ]);
    // Announced by size; a location only comes as a grant (map = true),
    // which the client gives back with an unmap.
    assert_eq!(
        c.ready(big).expect("object ready").body,
        Some(Body::StoredSize(data.len() as u64))
    );
    c.send(vec![client_op::Op::GetObjects(v1::GetObjects {
        object_ids: vec![big.to_vec().into()],
        map: true,
    })]);
    assert_eq!(
        c.ready(big).expect("object granted").body,
        Some(Body::Shm(loc))
    );
    c.send(vec![client_op::Op::RefUpdate(v1::RefUpdate {
        unmap: vec![big.to_vec().into()],
        ..Default::default()
    })]);

    // A create larger than the store is refused with the sizes.
    c.send(vec![client_op::Op::CreateObject(v1::CreateObject {
        request_id: 8,
        object_id: put_id().to_vec().into(),
        size: 1 << 30,
        timeout_ms: 0,
    })]);
    match c.next_op() {
        Some(node_op::Op::Error(e)) => {
            let err = e.error.unwrap();
            assert_eq!(e.request_id, 8);
            assert_eq!(err.kind, v1::ErrorKind::ObjectStoreFull as i32);
            assert!(err.message.contains("capacity"), "{}", err.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }

    // Pull the shared-memory object with a Flight client.
    let address = node.info["address"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut anonymous = FlightServiceClient::new(channel.clone());
        let refused = anonymous
            .do_get(arrow_flight::Ticket {
                ticket: big.hex().into(),
            })
            .await
            .expect_err("a call without the token must be refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        let mut client =
            FlightServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", auth.clone());
                Ok(req)
            })
            .max_decoding_message_size(64 << 20);
        let stream = client
            .do_get(arrow_flight::Ticket {
                ticket: big.hex().into(),
            })
            .await
            .unwrap()
            .into_inner()
            .map(|r| r.map_err(arrow_flight::error::FlightError::from));
        let mut batches =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream);
        let mut got = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch.unwrap();
            let col = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .unwrap();
            for i in 0..arrow_array::Array::len(col) {
                got.extend_from_slice(col.value(i));
            }
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "flight returned different bytes");
    });
}

/// A pickle made by the real Python (no hard-coded bytes).
fn python_pickle(py: &Path, expr: &str) -> Vec<u8> {
    let out = Command::new(py)
        .args([
            "-c",
            &format!("import pickle, operator, sys; sys.stdout.buffer.write(pickle.dumps({expr}, protocol=5))"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn tasks_run_on_python_workers() {
    let Some(py) = venv_python() else {
        eprintln!(
            "no project venv (.venv): run `make venv`; skipping the worker half of this test"
        );
        return;
    };
    let node = start_node();
    let token = node.info["token"].as_str().unwrap().to_string();
    let mut c = Client::connect(&node, &token);
    assert!(matches!(c.next_op(), Some(node_op::Op::HelloReply(_))));
    let function_id: bytes::Bytes = vec![9u8; 20].into();
    c.send(vec![client_op::Op::RegisterFunction(
        v1::RegisterFunction {
            function: Some(v1::FunctionDescriptor {
                language: v1::Language::Python as i32,
                function_id: function_id.clone(),
                name: "operator.add".into(),
            }),
            payload: python_pickle(&py, "operator.add").into(),
            export: false,
        },
    )]);
    let arg = |expr: &str| v1::TaskArg {
        value: Some(v1::ObjectValue {
            format: v1::ValueFormat::Pickle as i32,
            body: Some(Body::InlineData(python_pickle(&py, expr).into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut results = Vec::new();
    for i in 0..20 {
        let task = TaskId::random();
        c.send(vec![client_op::Op::SubmitTask(v1::SubmitTask {
            spec: Some(v1::TaskSpec {
                task_id: task.to_vec().into(),
                function: Some(v1::FunctionDescriptor {
                    language: v1::Language::Python as i32,
                    function_id: function_id.clone(),
                    name: "operator.add".into(),
                }),
                args: vec![arg(&i.to_string()), arg("1000")],
                num_returns: 1,
                resources: [("CPU".to_string(), 1.0)].into_iter().collect(),
                max_retries: 3,
                ..Default::default()
            }),
            code_search_path: Vec::new(),
        })]);
        results.push((i, ObjectId::for_return(task, 0)));
    }
    for (i, id) in results {
        let value = c.ready(id).unwrap_or_else(|| {
            panic!(
                "no result for task {i}; worker log:\n{}",
                node.worker_logs()
            )
        });
        assert_eq!(
            value.format,
            v1::ValueFormat::Pickle as i32,
            "task {i} failed: {value:?}"
        );
        let Some(Body::InlineData(bytes)) = value.body else {
            panic!("inline result expected")
        };
        let out = Command::new(&py)
            .args([
                "-c",
                "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read()))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(&bytes)?;
                child.wait_with_output()
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            (i + 1000).to_string()
        );
    }
}

#[test]
fn remote_clients_use_the_grpc_stream() {
    let node = start_node();
    let token = node.info["token"].as_str().unwrap().to_string();
    let address = node.info["address"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut anonymous = v1::node_service_client::NodeServiceClient::new(channel.clone());
        let refused = anonymous
            .get_cluster_status(v1::GetClusterStatusRequest {})
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        let mut client = v1::node_service_client::NodeServiceClient::with_interceptor(
            channel,
            move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", auth.clone());
                Ok(req)
            },
        );
        let id = put_id();
        let ops = |ops: Vec<client_op::Op>| v1::ClientMessage {
            ops: ops
                .into_iter()
                .map(|op| v1::ClientOp { op: Some(op) })
                .collect(),
        };
        let outgoing = futures::stream::iter(vec![
            ops(vec![client_op::Op::Hello(v1::Hello {
                token: token.clone(),
                kind: v1::ClientKind::Driver as i32,
                language: v1::Language::Go as i32,
                ..Default::default()
            })]),
            ops(vec![
                client_op::Op::PutObject(v1::PutObject {
                    object_id: id.to_vec().into(),
                    value: Some(v1::ObjectValue {
                        format: v1::ValueFormat::Msgpack as i32,
                        body: Some(Body::InlineData(vec![0x2a].into())),
                        ..Default::default()
                    }),
                }),
                client_op::Op::GetObjects(v1::GetObjects {
                    object_ids: vec![id.to_vec().into()],
                    map: false,
                }),
            ]),
        ])
        // Keep the request stream open until the test has its answers.
        .chain(futures::stream::pending());
        let mut incoming = client.open_stream(outgoing).await.unwrap().into_inner();
        let mut saw_hello = false;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), incoming.next())
                .await
                .expect("answer within 30 s")
                .expect("stream open")
                .unwrap();
            for op in msg.ops.into_iter().filter_map(|o| o.op) {
                match op {
                    node_op::Op::HelloReply(_) => saw_hello = true,
                    node_op::Op::ObjectReady(r) => {
                        assert!(saw_hello);
                        assert_eq!(r.object_id.as_ref(), id.as_bytes());
                        assert_eq!(
                            r.value.unwrap().body,
                            Some(Body::InlineData(vec![0x2a].into()))
                        );
                        let status = client
                            .get_cluster_status(v1::GetClusterStatusRequest {})
                            .await
                            .unwrap()
                            .into_inner()
                            .status
                            .unwrap();
                        assert_eq!(status.nodes.len(), 1);
                        assert!(status.num_objects >= 1);
                        return;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    });
}

#[test]
fn a_writer_that_disconnects_mid_write_leaves_no_half_written_object() {
    let node = start_node();
    let token = node.info["token"].as_str().unwrap().to_string();
    let used = |c: &mut Client| -> u64 {
        c.send(vec![client_op::Op::InfoRequest(v1::InfoRequest {
            request_id: 5,
            kind: v1::InfoKind::ClusterStatus as i32,
        })]);
        loop {
            if let Some(node_op::Op::InfoReply(r)) = c.next_op() {
                return r.cluster_status.unwrap().nodes[0].object_store_used;
            }
        }
    };
    {
        let mut writer = Client::connect(&node, &token);
        assert!(matches!(writer.next_op(), Some(node_op::Op::HelloReply(_))));
        writer.send(vec![client_op::Op::CreateObject(v1::CreateObject {
            request_id: 1,
            object_id: put_id().to_vec().into(),
            size: 4 << 20,
            timeout_ms: 0,
        })]);
        assert!(matches!(
            writer.next_op(),
            Some(node_op::Op::CreateObjectReply(_))
        ));
        assert!(
            used(&mut writer) >= 4 << 20,
            "the block is allocated while written"
        );
        // Dropped here: the connection closes before any seal.
    }
    let mut observer = Client::connect(&node, &token);
    assert!(matches!(
        observer.next_op(),
        Some(node_op::Op::HelloReply(_))
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while used(&mut observer) != 0 {
        assert!(
            Instant::now() < deadline,
            "the unsealed block was never given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
