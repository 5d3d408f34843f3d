//! The client and the worker against a real node (`ember start --head`,
//! see tests/common): put/get, calls to Rust functions served by a Worker
//! in this process, errors, timeouts, references, the gRPC transport.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestNode;
use ember::{
    ByteBuf, CallOptions, Client, Error, Function, Language, ObjectRef, Options, ServeOptions,
    Value, Worker,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Person {
    name: String,
    age: u32,
    scores: Vec<f64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greeting {
    text: String,
    adult: bool,
}

/// A worker serving the test functions, connected to `node`.
fn test_worker() -> Worker {
    let mut w = Worker::new();
    w.register("add", |a: i64, b: i64| -> Result<i64, String> { Ok(a + b) });
    w.register("greet", |p: Person| -> Result<Greeting, String> {
        Ok(Greeting {
            text: format!("hello {} ({:.1})", p.name, p.scores.iter().sum::<f64>()),
            adult: p.age >= 18,
        })
    });
    w.register(
        "join",
        |parts: Vec<String>, sep: String| -> Result<String, String> { Ok(parts.join(&sep)) },
    );
    w.register("nothing", || -> Result<(), String> { Ok(()) });
    w.register("len", |b: ByteBuf| -> Result<usize, String> { Ok(b.len()) });
    w.register("fill", |n: usize, byte: u8| -> Result<Vec<u8>, String> {
        Ok(vec![byte; n])
    });
    w.register("fail", |x: i64| -> Result<i64, String> {
        Err(format!("bad input: {x}"))
    });
    w.register("panic", |_x: i64| -> Result<i64, String> {
        panic!("the function panicked on purpose")
    });
    w.register("sleep_ms", |ms: u64| -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    });
    w.register_async("shout", |s: String| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, String>(s.to_uppercase())
    });
    w.register("echo", |v: Value| -> Result<Value, String> { Ok(v) });
    w
}

async fn serve(node: &TestNode, worker: Worker) -> ember::Serving {
    worker
        .start(ServeOptions::new(node.options()).concurrency(16))
        .await
        .expect("the worker connects and serves")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_get_round_trips_small_values() {
    let node = TestNode::start();
    let client = Client::connect(node.options()).await.expect("connect");
    assert!(!client.is_remote());

    let n = client.put(&42i64).await.unwrap();
    assert_eq!(n.get().await.unwrap(), 42);
    assert_eq!(client.get(&n).await.unwrap(), 42);

    let s = client.put(&"héllo".to_string()).await.unwrap();
    assert_eq!(s.get().await.unwrap(), "héllo");

    let p = Person {
        name: "ada".into(),
        age: 36,
        scores: vec![1.5, -2.25],
    };
    let r = client.put(&p).await.unwrap();
    assert_eq!(r.get().await.unwrap(), p);
    // The same object read as a dynamic value: a map by field name.
    let dynamic = r.cast::<Value>().get().await.unwrap();
    assert_eq!(dynamic["name"], Value::from("ada"));
    assert_eq!(dynamic["age"], Value::from(36));

    let b = client.put(&ByteBuf::from(vec![0u8, 1, 255])).await.unwrap();
    assert_eq!(b.get().await.unwrap().into_vec(), vec![0u8, 1, 255]);
    let v = client.put(&vec![0.5f64; 1000]).await.unwrap();
    assert_eq!(v.get().await.unwrap(), vec![0.5f64; 1000]);
    let none = client.put(&None::<i64>).await.unwrap();
    assert_eq!(none.get().await.unwrap(), None);

    let raw = client.put_raw(b"raw bytes".to_vec()).await.unwrap();
    assert_eq!(raw.get().await.unwrap().into_vec(), b"raw bytes".to_vec());
    let (format, bytes) = raw.get_bytes().await.unwrap();
    assert_eq!(format, ember::ValueFormat::Raw);
    assert_eq!(bytes, b"raw bytes");

    // Read as the wrong type: a codec error naming the type.
    match n.cast::<String>().get().await {
        Err(Error::Codec(m)) => assert!(m.contains("String"), "{m}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert_eq!(client.stats().shm_writes, 0, "small values travel inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_value_goes_through_shared_memory() {
    let node = TestNode::start();
    let client = Client::connect(node.options()).await.expect("connect");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = client.put(&data).await.unwrap();
    let stats = client.stats();
    assert_eq!(
        stats.shm_writes, 1,
        "a 5 MB put is written into shared memory"
    );
    let back: Vec<u8> = r.get().await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the 5 MB value came back changed");
    assert_eq!(
        client.stats().shm_reads,
        1,
        "and read back from shared memory"
    );
    // Twice (each get maps it again, under a new grant).
    let again = r.cast::<ByteBuf>().get().await.unwrap();
    assert!(again.as_slice() == data.as_slice());
    assert_eq!(client.stats().shm_reads, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_client_calls_rust_functions_served_by_a_worker() {
    let node = TestNode::start();
    let serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let sum = client
        .call::<i64>(&Function::rust("add"), (40, 2))
        .await
        .unwrap();
    assert_eq!(sum.get().await.unwrap(), 42);

    let p = Person {
        name: "grace".into(),
        age: 17,
        scores: vec![1.0, 2.5],
    };
    let g = client
        .call::<Greeting>(&Function::rust("greet"), (&p,))
        .await
        .unwrap();
    assert_eq!(
        g.get().await.unwrap(),
        Greeting {
            text: "hello grace (3.5)".into(),
            adult: false
        }
    );

    let joined = client
        .call::<String>(&Function::rust("join"), (vec!["a", "b", "c"], "-"))
        .await
        .unwrap();
    assert_eq!(joined.get().await.unwrap(), "a-b-c");

    let unit = client
        .call::<()>(&Function::rust("nothing"), ())
        .await
        .unwrap();
    unit.get().await.unwrap();

    let shout = client
        .call::<String>(&Function::rust("shout"), ("quiet",))
        .await
        .unwrap();
    assert_eq!(shout.get().await.unwrap(), "QUIET");

    // A Vec of arguments of one type.
    let sum = client
        .call::<i64>(&Function::rust("add"), vec![1i64, 2])
        .await
        .unwrap();
    assert_eq!(sum.get().await.unwrap(), 3);

    // Dynamic values pass through unchanged.
    let v = Value::Map(vec![
        (
            Value::from("k"),
            Value::Array(vec![Value::from(1), Value::Nil]),
        ),
        (Value::from("b"), Value::Binary(vec![9, 8])),
    ]);
    let echoed = client
        .call::<Value>(&Function::rust("echo"), (&v,))
        .await
        .unwrap();
    assert_eq!(echoed.get().await.unwrap(), v);

    // An argument by reference: a put object, resolved by the node.
    let put = client.put(&ByteBuf::from(vec![7u8; 1000])).await.unwrap();
    let n = client
        .call::<usize>(&Function::rust("len"), (&put,))
        .await
        .unwrap();
    assert_eq!(n.get().await.unwrap(), 1000);

    // Large argument (put into shared memory, passed by reference) and a
    // large return (written into shared memory by the worker).
    let big = ByteBuf::from(vec![3u8; 3_000_000]);
    let n = client
        .call::<usize>(&Function::rust("len"), (&big,))
        .await
        .unwrap();
    assert_eq!(n.get().await.unwrap(), 3_000_000);
    assert_eq!(client.stats().shm_writes, 1);
    let filled = client
        .call::<Vec<u8>>(&Function::rust("fill"), (4_000_000usize, 5u8))
        .await
        .unwrap();
    let filled = filled.get().await.unwrap();
    assert_eq!(filled.len(), 4_000_000);
    assert!(filled.iter().all(|b| *b == 5));
    assert_eq!(
        client.stats().shm_reads,
        1,
        "the large return was read from shared memory"
    );
    assert!(serving.client().stats().shm_writes >= 1);

    // Many calls at once, then all results.
    let add = Function::rust("add");
    let refs: Vec<ObjectRef<i64>> =
        futures::future::try_join_all((0..500i64).map(|i| client.call::<i64>(&add, (i, i))))
            .await
            .unwrap();
    let values = client.get_all(&refs).await.unwrap();
    assert_eq!(values, (0..500i64).map(|i| 2 * i).collect::<Vec<_>>());
    assert!(serving.client().stats().tasks_executed >= 508);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_function_surfaces_as_task_failed() {
    let node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let r = client
        .call::<i64>(&Function::rust("fail"), (7,))
        .await
        .unwrap();
    match r.get().await {
        Err(Error::TaskFailed {
            language,
            type_name,
            message,
            function,
            ..
        }) => {
            assert_eq!(language, Language::Rust);
            assert!(type_name.contains("String"), "{type_name}");
            assert_eq!(message, "bad input: 7");
            assert_eq!(function, "fail");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }

    let r = client
        .call::<i64>(&Function::rust("panic"), (1,))
        .await
        .unwrap();
    match r.get().await {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => {
            assert_eq!(type_name, "panic");
            assert!(message.contains("panicked on purpose"), "{message}");
        }
        other => panic!("expected TaskFailed from a panic, got {other:?}"),
    }

    // Wrong argument types: the function is not run.
    let r = client
        .call::<i64>(&Function::rust("add"), ("x", 1))
        .await
        .unwrap();
    match r.get().await {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => {
            assert_eq!(type_name, "ArgumentError");
            assert!(message.contains("argument 0"), "{message}");
        }
        other => panic!("expected an argument error, got {other:?}"),
    }
    let r = client
        .call::<i64>(&Function::rust("add"), (1,))
        .await
        .unwrap();
    match r.get().await {
        Err(Error::TaskFailed { message, .. }) => {
            assert!(message.contains("takes 2 arguments"), "{message}")
        }
        other => panic!("expected an arity error, got {other:?}"),
    }

    // The worker still serves after all that.
    let ok = client
        .call::<i64>(&Function::rust("add"), (1, 1))
        .await
        .unwrap();
    assert_eq!(ok.get().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_nobody_serves_fails_fast_naming_it() {
    let node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let start = Instant::now();
    let r = client
        .call::<i64>(&Function::rust("nobody.serves.this"), (1,))
        .await
        .unwrap();
    match r.get_timeout(Duration::from_secs(30)).await {
        Err(Error::UnknownFunction { function, message }) => {
            assert_eq!(function, "nobody.serves.this");
            assert!(message.contains("nobody.serves.this"), "{message}");
        }
        other => panic!("expected UnknownFunction, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );

    // A Go function of that name is unknown too, and so is a Python one.
    for f in [Function::go("add"), Function::python("not.exported")] {
        let r = client.call::<i64>(&f, (1, 2)).await.unwrap();
        match r.get_timeout(Duration::from_secs(30)).await {
            Err(Error::UnknownFunction { function, .. }) => assert_eq!(function, f.name),
            other => panic!("expected UnknownFunction for {f}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_token_is_unauthenticated() {
    let node = TestNode::start();
    let opts = Options {
        token: Some("not-the-token".into()),
        ..node.options()
    };
    match Client::connect(opts).await {
        Err(Error::Unauthenticated(m)) => assert!(m.contains("token"), "{m}"),
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
    // Over gRPC too.
    let opts = Options {
        address: Some(node.info.address.clone()),
        token: Some("not-the-token".into()),
        force_remote: true,
        ..node.options()
    };
    match Client::connect(opts).await {
        Err(Error::Unauthenticated(_)) => {}
        other => panic!("expected Unauthenticated over gRPC, got {other:?}"),
    }
    // No node at all: a connection error that says where it looked.
    let empty = tempfile::tempdir().unwrap();
    match Client::connect(Options::default().with_session_root(empty.path())).await {
        Err(Error::Connection(m)) => assert!(m.contains("no running ember node"), "{m}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_with_a_timeout_and_wait() {
    let node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let slow = client
        .call::<u64>(&Function::rust("sleep_ms"), (1500u64,))
        .await
        .unwrap();
    let start = Instant::now();
    match slow.get_timeout(Duration::from_millis(200)).await {
        Err(Error::Timeout(m)) => assert!(m.contains("sleep_ms"), "{m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1400),
        "{waited:?}"
    );
    // The value still arrives.
    assert_eq!(
        slow.get_timeout(Duration::from_secs(30)).await.unwrap(),
        1500
    );

    let fast = client
        .call::<u64>(&Function::rust("sleep_ms"), (1u64,))
        .await
        .unwrap();
    let slow = client
        .call::<u64>(&Function::rust("sleep_ms"), (3000u64,))
        .await
        .unwrap();
    let (ready, not_ready) = client
        .wait(
            &[slow.clone(), fast.clone()],
            1,
            Some(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].id(), fast.id());
    assert_eq!(not_ready[0].id(), slow.id());
    let (ready, not_ready) = client
        .wait(
            &[slow.clone(), fast.clone()],
            2,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    assert_eq!(
        (ready.len(), not_ready.len()),
        (1, 1),
        "the timeout ends the wait"
    );
    let (ready, _) = client.wait(&[slow, fast], 2, None).await.unwrap();
    assert_eq!(ready.len(), 2);
}

/// Objects in the node, from its status.
async fn num_objects(node: &TestNode) -> u64 {
    use ember::proto::v1::node_service_client::NodeServiceClient;
    let mut client = NodeServiceClient::connect(format!("http://{}", node.info.address))
        .await
        .expect("grpc");
    let mut req = tonic::Request::new(ember::proto::v1::GetClusterStatusRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", node.info.token).parse().unwrap(),
    );
    let status = client
        .get_cluster_status(req)
        .await
        .expect("status")
        .into_inner();
    status.status.expect("status").num_objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_refs_are_released_in_the_node() {
    let node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let mut refs = Vec::new();
    for i in 0..20i64 {
        refs.push(client.put(&i).await.unwrap());
    }
    let big = client
        .put(&ByteBuf::from(vec![1u8; 2_000_000]))
        .await
        .unwrap();
    let add = Function::rust("add");
    let results: Vec<ObjectRef<i64>> =
        futures::future::try_join_all((0..10i64).map(|i| client.call::<i64>(&add, (i, 1))))
            .await
            .unwrap();
    client.get_all(&results).await.unwrap();
    let held = num_objects(&node).await;
    assert!(
        held >= 31,
        "the node holds {held} objects, expected at least 31"
    );
    drop(refs);
    drop(big);
    drop(results);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = num_objects(&node).await;
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} objects are still held after their refs were dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_whose_worker_goes_away_runs_on_another() {
    let node = TestNode::start();
    let started = Arc::new(AtomicUsize::new(0));
    let mut a = Worker::new();
    let s = started.clone();
    a.register("who", move || -> Result<String, String> {
        s.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(3));
        Ok("a".into())
    });
    let serving_a = serve(&node, a).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let r = client
        .call_with::<String>(
            &Function::rust("who"),
            (),
            &CallOptions::default().max_retries(1),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "worker a never started the task");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    serving_a.stop().await;
    let mut b = Worker::new();
    b.register("who", || -> Result<String, String> { Ok("b".into()) });
    let _serving_b = serve(&node, b).await;
    assert_eq!(r.get_timeout(Duration::from_secs(30)).await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grpc_transport_calls_puts_and_gets() {
    let node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    // An empty session root: nothing local to find, so the address and
    // token are all there is.
    let empty = tempfile::tempdir().unwrap();
    let opts = Options {
        address: Some(node.info.address.clone()),
        token: Some(node.info.token.clone()),
        session_root: Some(empty.path().to_path_buf()),
        ..Default::default()
    };
    let client = Client::connect(opts).await.expect("connect over gRPC");
    assert!(client.is_remote());
    let r = client.put(&"over grpc".to_string()).await.unwrap();
    assert_eq!(r.get().await.unwrap(), "over grpc");
    let sum = client
        .call::<i64>(&Function::rust("add"), (2, 3))
        .await
        .unwrap();
    assert_eq!(sum.get().await.unwrap(), 5);
    // A value larger than max_inline_bytes goes inline over gRPC.
    let big = client
        .put(&ByteBuf::from(vec![4u8; 1_000_000]))
        .await
        .unwrap();
    let n = client
        .call::<usize>(&Function::rust("len"), (&big,))
        .await
        .unwrap();
    assert_eq!(n.get().await.unwrap(), 1_000_000);
    // A 30 MB put travels by value too; the node copies it into shared
    // memory, where the worker reads it.
    let huge = client
        .put(&ByteBuf::from(vec![5u8; 30 << 20]))
        .await
        .expect("a remote 30 MB put");
    let n = client
        .call::<usize>(&Function::rust("len"), (&huge,))
        .await
        .unwrap();
    assert_eq!(n.get().await.unwrap(), 30 << 20);
    // Over the limit of a remote put: a clear error, the stream unharmed.
    let too_big = ByteBuf::from(vec![0u8; ember::MAX_REMOTE_PUT_BYTES + 1]);
    match client.put(&too_big).await {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("remote connection"), "{msg}"),
        other => panic!("a remote put over the limit = {other:?}"),
    }

    // A large return lies in the node's shared memory: a remote client
    // reads it over Arrow Flight.
    let filled = client
        .call::<Vec<u8>>(&Function::rust("fill"), (2_500_000usize, 9u8))
        .await
        .unwrap();
    let filled = filled.get().await.unwrap();
    assert!(filled.len() == 2_500_000 && filled.iter().all(|b| *b == 9));
    assert_eq!(client.stats().flight_reads, 1);
    assert_eq!(client.stats().shm_reads, 0);

    // The address of a local session picks the Unix socket.
    let local = Client::connect(Options {
        address: Some(node.info.address.clone()),
        ..node.options()
    })
    .await
    .unwrap();
    assert!(!local.is_remote());
}

/// FNV-1a (64 bits): a checksum both sides compute.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `n` bytes of a pattern that is not all one value.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Functions over large bytes, named `<prefix>.digest` and
/// `<prefix>.pattern`.
fn bytes_worker(prefix: &str) -> Worker {
    let mut w = Worker::new();
    w.register(
        format!("{prefix}.digest"),
        |b: ByteBuf| -> Result<(usize, u64), String> { Ok((b.len(), fnv1a(&b))) },
    );
    w.register(
        format!("{prefix}.pattern"),
        |n: usize| -> Result<ByteBuf, String> { Ok(ByteBuf::from(pattern(n))) },
    );
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_arguments_and_returns_over_the_grpc_transport() {
    const MIB: usize = 1 << 20;
    let node = TestNode::start();
    // Connected over gRPC: the address and token, no local session.
    let empty = tempfile::tempdir().unwrap();
    let remote = || Options {
        address: Some(node.info.address.clone()),
        token: Some(node.info.token.clone()),
        session_root: Some(empty.path().to_path_buf()),
        ..Default::default()
    };
    // `local.held_digest` waits for `release` before it answers.
    let release = Arc::new(AtomicBool::new(false));
    let mut local = bytes_worker("local");
    let released = release.clone();
    local.register(
        "local.held_digest",
        move |b: ByteBuf| -> Result<(usize, u64), String> {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !released.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok((b.len(), fnv1a(&b)))
        },
    );
    let _local_worker = serve(&node, local).await;
    let remote_worker = bytes_worker("remote")
        .start(ServeOptions::new(remote()).concurrency(4))
        .await
        .expect("a worker over gRPC");
    assert!(remote_worker.client().is_remote());
    let client = Client::connect(remote()).await.expect("connect over gRPC");
    assert!(client.is_remote());

    // A 20 MiB argument (over the 16 MiB inline limit): put by value
    // first (the node copies it into its store, where it stays while the
    // call runs) and passed by reference...
    let big = pattern(20 * MIB);
    let want = (big.len(), fnv1a(&big));
    let held = client
        .call::<(usize, u64)>(
            &Function::rust("local.held_digest"),
            (ByteBuf::from(big.clone()),),
        )
        .await
        .expect("a 20 MiB argument over gRPC");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.cluster_status().await.unwrap();
        let used = status
            .nodes
            .iter()
            .map(|n| n.object_store_used)
            .sum::<u64>();
        if used >= (20 * MIB) as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node's store holds {used} bytes while the call runs: the argument was not put"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.store(true, Ordering::SeqCst);
    assert_eq!(
        held.get_timeout(Duration::from_secs(60)).await.unwrap(),
        want
    );
    // ...to a worker on the Unix socket and to one over gRPC (the node
    // sends it there by value).
    for function in ["local.digest", "remote.digest"] {
        let got = client
            .call::<(usize, u64)>(&Function::rust(function), (ByteBuf::from(big.clone()),))
            .await
            .expect("a 20 MiB argument over gRPC")
            .get_timeout(Duration::from_secs(60))
            .await;
        assert_eq!(got.unwrap(), want, "{function}");
    }
    // A `Vec<u8>` is msgpack bin too.
    let got = client
        .call::<(usize, u64)>(&Function::rust("local.digest"), (&big,))
        .await
        .unwrap()
        .get_timeout(Duration::from_secs(60))
        .await;
    assert_eq!(got.unwrap(), want);

    // A 20 MiB return: from a worker with shared memory it is stored
    // there (and read over Flight); a worker over gRPC returns values
    // inline only, up to 16 MiB, and fails a larger one clearly.
    let r = client
        .call::<ByteBuf>(&Function::rust("local.pattern"), (20 * MIB,))
        .await
        .unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(60)).await.unwrap(), big);
    let r = client
        .call::<ByteBuf>(&Function::rust("remote.pattern"), (10 * MIB,))
        .await
        .unwrap();
    assert_eq!(
        r.get_timeout(Duration::from_secs(60)).await.unwrap(),
        pattern(10 * MIB)
    );
    let r = client
        .call::<ByteBuf>(&Function::rust("remote.pattern"), (20 * MIB,))
        .await
        .unwrap();
    match r.get_timeout(Duration::from_secs(60)).await {
        Err(Error::InvalidArgument(m)) => assert!(
            m.contains(&(20 * MIB + 5).to_string()) && m.contains(&(16 * MIB).to_string()),
            "names the size (with its 5-byte msgpack header) and the limit: {m}"
        ),
        other => panic!("a 20 MiB return over gRPC = {other:?}"),
    }

    // An argument over what a remote client may put: a clear error before
    // anything is sent; the connection goes on.
    let too_big = ByteBuf::from(vec![0u8; ember::MAX_REMOTE_PUT_BYTES + 1]);
    match client
        .call::<(usize, u64)>(&Function::rust("local.digest"), (&too_big,))
        .await
    {
        Err(Error::InvalidArgument(m)) => assert!(
            m.starts_with("argument 0:")
                && m.contains(&(ember::MAX_REMOTE_PUT_BYTES + 6).to_string())
                && m.contains(&ember::MAX_REMOTE_PUT_BYTES.to_string()),
            "names the argument, its size and the limit: {m}"
        ),
        other => panic!("an argument over MAX_REMOTE_PUT_BYTES = {other:?}"),
    }
    drop(too_big);
    let got = client
        .call::<(usize, u64)>(
            &Function::rust("remote.digest"),
            (ByteBuf::from(vec![7u8; 3]),),
        )
        .await
        .unwrap()
        .get_timeout(Duration::from_secs(60))
        .await;
    assert_eq!(got.unwrap(), (3, fnv1a(&[7, 7, 7])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_fail_when_the_node_goes_away() {
    let mut node = TestNode::start();
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let slow = client
        .call::<u64>(&Function::rust("sleep_ms"), (4_000u64,))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { slow.get().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.stop();
    let result = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the get returned once the node was gone")
        .unwrap();
    match result {
        Err(Error::Connection(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("closed");
    assert!(matches!(closed, Error::Connection(_)), "{closed:?}");
    assert!(client.is_closed());
    match client.put(&1i64).await {
        Err(Error::Connection(_)) => {}
        other => panic!("a put on a closed client: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_functions_run_side_by_side() {
    let node = TestNode::start();
    // Concurrency 16 (see `serve`): 16 calls that each block 600 ms end
    // together, not one CPU's worth at a time.
    let _serving = serve(&node, test_worker()).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let f = Function::rust("sleep_ms");
    let start = Instant::now();
    let refs: Vec<ObjectRef<u64>> =
        futures::future::try_join_all((0..16).map(|_| client.call::<u64>(&f, (600u64,))))
            .await
            .unwrap();
    assert_eq!(client.get_all(&refs).await.unwrap(), vec![600; 16]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "16 blocking calls took {took:?}"
    );
}

/// A node with a 64 MiB store spills older objects to disk to take new
/// ones; when a spill file is gone (a disk failure), `get` of that object is
/// `Error::ObjectLost` naming it, and the others still read back equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_whose_spill_file_is_gone_is_object_lost() {
    let spill = tempfile::tempdir().expect("spill dir");
    let store = (64u64 << 20).to_string();
    let node = TestNode::start_with(&[
        "--object-store-memory",
        &store,
        "--spill-dir",
        spill.path().to_str().expect("utf-8 path"),
    ]);
    let client = Client::connect(node.options()).await.expect("connect");
    const SIZE: usize = 24 << 20;
    let mut refs = Vec::new();
    for i in 0..5u8 {
        let value = ByteBuf::from(vec![b'a' + i; SIZE]);
        refs.push(client.put(&value).await.expect("put"));
    }
    fn remove_files(dir: &std::path::Path) -> usize {
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                removed += remove_files(&path);
            } else if std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
    let removed = remove_files(spill.path());
    assert!(
        removed > 0,
        "5 x 24 MB in a 64 MiB store must spill\n{}",
        node.log_tail()
    );
    let mut lost = 0;
    for (i, r) in refs.iter().enumerate() {
        match client.get(r).await {
            Ok(back) => {
                assert_eq!(back.len(), SIZE);
                assert!(
                    back.iter().all(|&b| b == b'a' + i as u8),
                    "object {i} read back changed"
                );
            }
            Err(Error::ObjectLost(msg)) => {
                lost += 1;
                assert!(
                    msg.contains(&r.id().to_string()),
                    "the error does not name object {}: {msg}",
                    r.id()
                );
            }
            Err(other) => panic!("get of object {i}: {other:?}, want its value or ObjectLost"),
        }
    }
    assert_eq!(lost, removed, "one object lost per spill file removed");
}
