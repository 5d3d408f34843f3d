//! Actors against a real node: Rust actor classes hosted by a `Worker` in
//! this process and by the example worker (`examples/worker.rs`) as
//! separate processes (threaded actors: `actor_concurrency.rs`); calls in order, named actors, kills, errors, a
//! failed constructor, restarts after the hosting process is SIGKILLed;
//! and actors of other languages from Rust (an exported Python class, the
//! Go SDK's `cmd/worker`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, ServingProcess, TestNode};
use ember::{
    ActorHandle, ActorOptions, ByteBuf, Class, Client, Error, Function, Language, ObjectRef,
    ServeOptions, Value, Worker,
};

const LONG: Duration = Duration::from_secs(60);

/// The test class: a counter that counts its drops.
struct Counter {
    value: i64,
    drops: Arc<AtomicUsize>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A worker hosting `Counter` and `Broken` (whose constructor fails);
/// `drops` counts the Counter instances dropped.
fn actor_worker(drops: &Arc<AtomicUsize>) -> Worker {
    let mut w = Worker::new();
    w.register("plain", || -> Result<i64, String> { Ok(1) });
    let d = drops.clone();
    w.register_actor("Counter", move |start: i64| {
        Ok::<_, String>(Counter {
            value: start,
            drops: d.clone(),
        })
    })
    .method("incr", |c: &mut Counter, by: i64| -> Result<i64, String> {
        c.value += by;
        Ok(c.value)
    })
    .method("get", |c: &mut Counter| -> Result<i64, String> {
        Ok(c.value)
    })
    .method(
        "fail",
        |_c: &mut Counter, msg: String| -> Result<(), String> { Err(msg) },
    )
    .method("panic", |_c: &mut Counter| -> Result<(), String> {
        panic!("the method panicked on purpose")
    })
    .method(
        "sleep_ms",
        |c: &mut Counter, ms: u64| -> Result<i64, String> {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(c.value)
        },
    )
    .method(
        "len",
        |_c: &mut Counter, b: ByteBuf| -> Result<usize, String> { Ok(b.len()) },
    )
    .method(
        "fill",
        |c: &mut Counter, n: usize| -> Result<ByteBuf, String> {
            Ok(ByteBuf::from(vec![c.value as u8; n]))
        },
    );
    let d = drops.clone();
    w.register_actor("Broken", move |why: String| -> Result<Counter, String> {
        let _ = &d;
        Err(format!("cannot build: {why}"))
    })
    .method("get", |c: &mut Counter| -> Result<i64, String> {
        Ok(c.value)
    });
    w
}

async fn serve(node: &TestNode, worker: Worker) -> ember::Serving {
    worker
        .start(ServeOptions::new(node.options()).concurrency(8))
        .await
        .expect("the worker connects and serves")
}

async fn get_i64(actor: &ActorHandle, method: &str) -> ember::Result<i64> {
    actor.call::<i64>(method, ()).await?.get_timeout(LONG).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_actor_keeps_state_and_runs_calls_in_order() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let serving = serve(&node, actor_worker(&drops)).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let counter = client
        .create_actor(&Class::rust("Counter"), (0,))
        .await
        .expect("create");
    assert_eq!(counter.class(), &Class::rust("Counter"));
    // 200 calls submitted, then all gotten: each saw the one before.
    let mut refs: Vec<ObjectRef<i64>> = Vec::new();
    for _ in 0..200 {
        refs.push(counter.call("incr", (1,)).await.unwrap());
    }
    let values = client.get_all(&refs).await.unwrap();
    assert_eq!(values, (1..=200).collect::<Vec<i64>>());
    assert_eq!(get_i64(&counter, "get").await.unwrap(), 200);

    // Another actor of the class has its own state.
    let other = client
        .create_actor(&Class::rust("Counter"), (100,))
        .await
        .unwrap();
    assert_ne!(other.id(), counter.id());
    let r = other.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 101);
    assert_eq!(get_i64(&counter, "get").await.unwrap(), 200);

    // Different actors run side by side: two 1.5 s calls end together.
    let start = Instant::now();
    let a = counter.call::<i64>("sleep_ms", (1500u64,)).await.unwrap();
    let b = other.call::<i64>("sleep_ms", (1500u64,)).await.unwrap();
    assert_eq!(a.get_timeout(LONG).await.unwrap(), 200);
    assert_eq!(b.get_timeout(LONG).await.unwrap(), 101);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2800),
        "two actors' 1.5 s calls took {took:?} (one after the other?)"
    );
    // One actor's calls do not overlap: a fast call waits for a slow one
    // submitted before it.
    let slow = counter.call::<i64>("sleep_ms", (800u64,)).await.unwrap();
    let after = counter.call::<i64>("incr", (1,)).await.unwrap();
    let start = Instant::now();
    assert_eq!(after.get_timeout(LONG).await.unwrap(), 201);
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "a call overtook the slow one before it"
    );
    assert_eq!(slow.get_timeout(LONG).await.unwrap(), 200);

    // Arguments by reference, and one too large to go inline (put into
    // shared memory; the node sends it to the worker by value).
    let put = client.put(&ByteBuf::from(vec![1u8; 1000])).await.unwrap();
    let n = counter.call::<usize>("len", (&put,)).await.unwrap();
    assert_eq!(n.get_timeout(LONG).await.unwrap(), 1000);
    let big = ByteBuf::from(vec![2u8; 3_000_000]);
    let n = counter.call::<usize>("len", (&big,)).await.unwrap();
    assert_eq!(n.get_timeout(LONG).await.unwrap(), 3_000_000);
    // A large return: written into shared memory by the worker.
    let filled = counter
        .call::<ByteBuf>("fill", (2_000_000usize,))
        .await
        .unwrap();
    let filled = filled.get_timeout(LONG).await.unwrap();
    assert!(filled.len() == 2_000_000 && filled.iter().all(|b| *b == 201));
    assert!(serving.client().stats().shm_writes >= 1);

    // The worker ran them all (and serves plain functions beside).
    let one = client
        .call::<i64>(&Function::rust("plain"), ())
        .await
        .unwrap();
    assert_eq!(one.get_timeout(LONG).await.unwrap(), 1);
    assert!(serving.client().stats().tasks_executed >= 200 + 2 + 11);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "no instance was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_actors_are_found_by_name_and_get_if_exists() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let _serving = serve(&node, actor_worker(&drops)).await;
    // Clients of one namespace share its names (a client without one has a
    // namespace of its own).
    let in_tests = || ember::Options {
        namespace: Some("tests".into()),
        ..node.options()
    };
    let client = Client::connect(in_tests()).await.expect("connect");
    let class = Class::rust("Counter");

    let named = client
        .create_actor_with(&class, (5,), &ActorOptions::default().name("shared"))
        .await
        .expect("create a named actor");
    let r = named.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 6);

    // Another client finds it by name; one of another namespace does not,
    // unless it names the namespace.
    let second = Client::connect(in_tests()).await.expect("connect");
    let found = second.get_actor("shared", None).await.expect("found");
    let outsider = Client::connect(node.options()).await.expect("connect");
    match outsider.get_actor("shared", None).await {
        Err(Error::NotFound(m)) => assert!(m.contains("shared"), "{m}"),
        other => panic!("expected NotFound from another namespace, got {other:?}"),
    }
    let via_ns = outsider.get_actor("shared", Some("tests")).await.unwrap();
    assert_eq!(via_ns.id(), named.id());
    assert_eq!(found.id(), named.id());
    assert_eq!(found.class(), &class);
    let r = found.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 7);

    // The name is taken...
    match client
        .create_actor_with(&class, (0,), &ActorOptions::default().name("shared"))
        .await
    {
        Err(Error::AlreadyExists(m)) => assert!(m.contains("shared"), "{m}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // ...unless the existing actor is what we want.
    let existing = client
        .create_actor_with(
            &class,
            (0,),
            &ActorOptions::default().name("shared").get_if_exists(true),
        )
        .await
        .expect("get_if_exists");
    assert_eq!(existing.id(), named.id());
    assert_eq!(get_i64(&existing, "get").await.unwrap(), 7);

    // Names live in namespaces.
    let in_ns = client
        .create_actor_with(
            &class,
            (40,),
            &ActorOptions::default().name("counter").namespace("team-a"),
        )
        .await
        .unwrap();
    match second.get_actor("counter", None).await {
        Err(Error::NotFound(m)) => assert!(m.contains("counter"), "{m}"),
        other => panic!("expected NotFound outside the namespace, got {other:?}"),
    }
    let found = second
        .get_actor("counter", Some("team-a"))
        .await
        .expect("found in its namespace");
    assert_eq!(found.id(), in_ns.id());
    assert_eq!(get_i64(&found, "get").await.unwrap(), 40);

    match second.get_actor("nobody-has-this-name", None).await {
        Err(Error::NotFound(m)) => assert!(m.contains("nobody-has-this-name"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_actor_is_dropped_and_its_calls_fail_as_actor_died() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let _serving = serve(&node, actor_worker(&drops)).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let class = Class::rust("Counter");

    let counter = client.create_actor(&class, (1,)).await.unwrap();
    let r = counter.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 2);
    client.kill_actor(&counter, true).await.unwrap();
    match counter
        .call::<i64>("get", ())
        .await
        .unwrap()
        .get_timeout(LONG)
        .await
    {
        Err(Error::ActorDied(_)) => {}
        other => panic!("expected ActorDied after a kill, got {other:?}"),
    }
    // The worker dropped the instance (NodeOp.drop_actor).
    wait_until("the killed actor's instance is dropped", || {
        drops.load(Ordering::SeqCst) == 1
    })
    .await;
    // Killing it again, or calling it, keeps failing the same way.
    counter.kill(true).await.unwrap();
    assert!(matches!(
        get_i64(&counter, "incr").await,
        Err(Error::ActorDied(_))
    ));

    // A kill that allows a restart: the constructor runs again (on this
    // worker, the only one serving the class) and the state starts over.
    let restarting = client
        .create_actor_with(&class, (10,), &ActorOptions::default().max_restarts(1))
        .await
        .unwrap();
    let r = restarting.call::<i64>("incr", (5,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 15);
    restarting.kill(false).await.unwrap();
    assert_eq!(get_i64(&restarting, "get").await.unwrap(), 10);
    wait_until("the first instance is dropped", || {
        drops.load(Ordering::SeqCst) == 2
    })
    .await;
    // No restarts left: the next kill is for good.
    restarting.kill(false).await.unwrap();
    assert!(matches!(
        get_i64(&restarting, "get").await,
        Err(Error::ActorDied(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_actor_killed_in_its_constructor_is_dropped_and_frees_the_slot() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut worker = actor_worker(&drops);
    let (d, s) = (drops.clone(), started.clone());
    worker
        .register_actor("Slow", move |ms: u64| -> Result<Counter, String> {
            s.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            Ok(Counter {
                value: 0,
                drops: d.clone(),
            })
        })
        .method("get", |c: &mut Counter| -> Result<i64, String> {
            Ok(c.value)
        });
    // One task at a time: the constructor holds the only slot.
    let _serving = worker
        .start(ServeOptions::new(node.options()).concurrency(1))
        .await
        .unwrap();
    let client = Client::connect(node.options()).await.expect("connect");
    let slow = client
        .create_actor(&Class::rust("Slow"), (1500u64,))
        .await
        .unwrap();
    wait_until("the constructor runs", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    slow.kill(true).await.unwrap();
    assert!(matches!(
        get_i64(&slow, "get").await,
        Err(Error::ActorDied(_))
    ));
    // The constructor finishes, its instance is dropped at once, and its
    // answer frees the slot for the next task.
    let one = client
        .call::<i64>(&Function::rust("plain"), ())
        .await
        .unwrap();
    assert_eq!(one.get_timeout(LONG).await.unwrap(), 1);
    wait_until("the late instance is dropped", || {
        drops.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_actor_goes_with_its_owner_unless_detached() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let _serving = serve(&node, actor_worker(&drops)).await;
    let in_tests = || ember::Options {
        namespace: Some("tests".into()),
        ..node.options()
    };
    let owner = Client::connect(in_tests()).await.expect("connect");
    let class = Class::rust("Counter");
    let owned = owner.create_actor(&class, (1,)).await.unwrap();
    let detached = owner
        .create_actor_with(
            &class,
            (2,),
            &ActorOptions::default().name("kept").detached(true),
        )
        .await
        .unwrap();
    assert_eq!(get_i64(&owned, "get").await.unwrap(), 1);
    assert_eq!(get_i64(&detached, "get").await.unwrap(), 2);
    owner.close();
    // The owner's actor is dropped by the worker; the detached one lives.
    wait_until("the owned actor is dropped", || {
        drops.load(Ordering::SeqCst) == 1
    })
    .await;
    let other = Client::connect(in_tests()).await.expect("connect");
    let kept = other
        .get_actor("kept", None)
        .await
        .expect("the detached actor");
    let r = kept.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 3);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actor_method_errors_are_task_errors_and_the_actor_goes_on() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let _serving = serve(&node, actor_worker(&drops)).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let counter = client
        .create_actor(&Class::rust("Counter"), (3,))
        .await
        .unwrap();

    let r = counter.call::<()>("fail", ("broken glass",)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            language,
            type_name,
            message,
            function,
            ..
        }) => {
            assert_eq!(language, Language::Rust);
            assert!(type_name.contains("String"), "{type_name}");
            assert_eq!(message, "broken glass");
            assert_eq!(function, "Counter.fail");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    let r = counter.call::<()>("panic", ()).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => {
            assert_eq!(type_name, "panic");
            assert!(message.contains("panicked on purpose"), "{message}");
        }
        other => panic!("expected TaskFailed from a panic, got {other:?}"),
    }
    // Arguments that do not decode: the method does not run.
    let r = counter.call::<i64>("incr", ("x",)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => {
            assert_eq!(type_name, "ArgumentError");
            assert!(message.contains("argument 0"), "{message}");
        }
        other => panic!("expected an argument error, got {other:?}"),
    }
    // A method the class does not have: the error names the class and it.
    let r = counter.call::<i64>("nope", (1,)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::UnknownFunction { function, message }) => {
            assert_eq!(function, "Counter.nope");
            assert!(
                message.contains("\"nope\"") && message.contains("\"Counter\""),
                "{message}"
            );
            assert!(message.contains("incr"), "lists the methods: {message}");
        }
        other => panic!("expected UnknownFunction for the method, got {other:?}"),
    }
    // The actor and its state survived all that.
    let r = counter.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 4);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_constructor_fails_every_call_with_its_error() {
    let node = TestNode::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let _serving = serve(&node, actor_worker(&drops)).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let broken = client
        .create_actor(&Class::rust("Broken"), ("no parts",))
        .await
        .expect("the creation is accepted; the constructor fails later");
    for _ in 0..3 {
        match get_i64(&broken, "get").await {
            Err(Error::TaskFailed {
                language, message, ..
            }) => {
                assert_eq!(language, Language::Rust);
                assert_eq!(message, "cannot build: no parts");
            }
            other => panic!("expected the constructor's error, got {other:?}"),
        }
    }
    // Constructor arguments of the wrong type: the same, as an argument error.
    let wrong = client
        .create_actor(&Class::rust("Counter"), ("not a number",))
        .await
        .unwrap();
    match get_i64(&wrong, "get").await {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => {
            assert_eq!(type_name, "ArgumentError");
            assert!(message.contains("argument 0"), "{message}");
        }
        other => panic!("expected the constructor's argument error, got {other:?}"),
    }

    // A class nobody serves: its calls fail, naming it.
    let ghost = client.create_actor(&Class::rust("Nobody.Serves"), ()).await;
    let err = match ghost {
        Ok(ghost) => get_i64(&ghost, "get").await.expect_err("no such class"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("Nobody.Serves"), "{err:?}");
}

/// Start the example worker against `node`.
async fn example_worker(node: &TestNode) -> ServingProcess {
    let cmd = Command::new(common::example_worker());
    ServingProcess::spawn(cmd, node, "the example worker", LONG).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_worker_serves_its_functions_and_actor_and_stops_on_sigterm() {
    let node = TestNode::start();
    let mut worker = example_worker(&node).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let sum = client
        .call::<i64>(&Function::rust("rust.add"), (40, 2))
        .await
        .unwrap();
    assert_eq!(sum.get_timeout(LONG).await.unwrap(), 42);
    let counts = client
        .call::<BTreeMap<String, i64>>(
            &Function::rust("rust.word_count"),
            ("The cat  the\tHAT\nhat",),
        )
        .await
        .unwrap();
    assert_eq!(
        counts.get_timeout(LONG).await.unwrap(),
        BTreeMap::from([
            ("the".to_string(), 2),
            ("cat".to_string(), 1),
            ("hat".to_string(), 2)
        ])
    );
    let fail = client
        .call::<()>(&Function::rust("rust.fail"), ("bad input",))
        .await
        .unwrap();
    match fail.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            language,
            message,
            function,
            ..
        }) => {
            assert_eq!(language, Language::Rust);
            assert_eq!(message, "bad input");
            assert_eq!(function, "rust.fail");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }

    let counter = client
        .create_actor(&Class::rust("rust.Counter"), (7,))
        .await
        .unwrap();
    let r = counter.call::<i64>("incr", (3,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 10);
    assert_eq!(get_i64(&counter, "get").await.unwrap(), 10);
    assert_eq!(get_i64(&counter, "pid").await.unwrap(), worker.pid() as i64);
    let r = counter.call::<()>("fail", ("nope",)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed { message, .. }) => assert_eq!(message, "nope"),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(get_i64(&counter, "get").await.unwrap(), 10);

    let status = tokio::task::spawn_blocking(move || {
        let status = worker.terminate(Duration::from_secs(20));
        (status, worker)
    })
    .await
    .unwrap()
    .0;
    let status = status.expect("the worker exits on SIGTERM");
    assert!(status.success(), "the worker exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_actor_restarts_on_another_process_after_a_sigkill() {
    let node = TestNode::start();
    let mut workers = vec![example_worker(&node).await, example_worker(&node).await];
    let client = Client::connect(node.options()).await.expect("connect");
    let counter = client
        .create_actor_with(
            &Class::rust("rust.Counter"),
            (10,),
            // A call the node sends to the killed process before it
            // noticed the death is sent again after the restart.
            &ActorOptions::default().max_restarts(1).max_task_retries(1),
        )
        .await
        .unwrap();
    let r = counter.call::<i64>("incr", (5,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 15);
    let first = get_i64(&counter, "pid").await.unwrap() as u32;
    let index = workers
        .iter()
        .position(|w| w.pid() == first)
        .unwrap_or_else(|| panic!("pid {first} is not one of the example workers"));
    let mut victim = workers.remove(index);
    victim.kill();

    // It answers again, from the other process, with its state rebuilt by
    // the constructor.
    let r = counter.call::<i64>("incr", (1,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 11);
    let second = get_i64(&counter, "pid").await.unwrap() as u32;
    assert_eq!(second, workers[0].pid());

    // Killed again with no restarts left: dead.
    workers[0].kill();
    match get_i64(&counter, "get").await {
        Err(Error::ActorDied(m)) => assert!(m.contains("restart"), "{m}"),
        other => panic!("expected ActorDied, got {other:?}"),
    }
}

const PYTHON_CLASS: &str = r#"
import sys
import ember
from ember import cross_language

ember.init(address="auto")

@ember.remote
class Shop:
    def __init__(self, stock):
        self.stock = stock

    def sell(self, n):
        if n > self.stock:
            raise ValueError(f"only {self.stock} left")
        self.stock -= n
        return {"left": self.stock, "sold": [n]}

    def stock_of(self):
        return self.stock

cross_language.export(Shop, "tests.Shop")
print("ready", flush=True)
sys.stdin.read()
"#;

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Sale {
    left: i64,
    sold: Vec<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_creates_and_calls_a_python_actor() {
    let python = common::python();
    assert!(
        python.exists(),
        "{} is missing (make build)",
        python.display()
    );
    let node = TestNode::start();
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(PYTHON_CLASS);
    let _exporter = ServingProcess::spawn(cmd, &node, "the Python exporter", LONG * 2).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let shop = client
        .create_actor_with(
            &Class::python("tests.Shop"),
            (10,),
            &ActorOptions::default().name("shop"),
        )
        .await
        .expect("create the Python actor");
    let a = shop.call::<Sale>("sell", (3,)).await.unwrap();
    let b = shop.call::<Sale>("sell", (2,)).await.unwrap();
    assert_eq!(
        a.get_timeout(LONG * 2).await.unwrap(),
        Sale {
            left: 7,
            sold: vec![3]
        }
    );
    assert_eq!(
        b.get_timeout(LONG).await.unwrap(),
        Sale {
            left: 5,
            sold: vec![2]
        }
    );
    let r = shop.call::<Sale>("sell", (100,)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            language,
            type_name,
            message,
            ..
        }) => {
            assert_eq!(language, Language::Python);
            assert_eq!(type_name, "ValueError");
            assert!(message.contains("only 5 left"), "{message}");
        }
        other => panic!("expected a ValueError, got {other:?}"),
    }
    let found = client.get_actor("shop", None).await.expect("by name");
    assert_eq!(found.id(), shop.id());
    assert_eq!(found.class().language, Language::Python);
    assert_eq!(get_i64(&found, "stock_of").await.unwrap(), 5);
    shop.kill(true).await.unwrap();
    assert!(matches!(
        get_i64(&shop, "stock_of").await,
        Err(Error::ActorDied(_))
    ));
}

/// Build the Go SDK's example worker (`sdk-go/cmd/worker`) into `dir`;
/// `None` (the test is skipped) when there is no Go toolchain or no such
/// program, except under CI=true, where that fails.
fn build_go_worker(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let missing = |why: String| {
        assert!(!ci, "{why}");
        eprintln!("skipped: {why}");
        None
    };
    let sdk_go = common::workspace().join("sdk-go");
    if !sdk_go.join("cmd/worker").is_dir() {
        return missing(format!(
            "{} does not exist",
            sdk_go.join("cmd/worker").display()
        ));
    }
    let go = std::env::var_os("GO")
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| "go".into());
    let out = dir.join("goworker");
    let status = Command::new(&go)
        .args(["build", "-o"])
        .arg(&out)
        .arg("./cmd/worker")
        .current_dir(&sdk_go)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("go build ./cmd/worker failed: {s}"),
        Err(e) => missing(format!("no Go toolchain ({go:?}): {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_calls_functions_and_an_actor_of_the_go_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let Some(bin) = tokio::task::spawn_blocking(move || build_go_worker(&path))
        .await
        .unwrap()
    else {
        return;
    };
    let node = TestNode::start();
    let go = ServingProcess::spawn(Command::new(bin), &node, "the Go worker", LONG).await;
    let client = Client::connect(node.options()).await.expect("connect");

    let sum = client
        .call::<i64>(&Function::go("go.add"), (40, 2))
        .await
        .unwrap();
    assert_eq!(sum.get_timeout(LONG).await.unwrap(), 42);

    // (Keys in sorted order: Go's maps come back sorted.)
    let nested = Value::Map(vec![
        (Value::from("bytes"), Value::Binary(vec![0, 1, 255])),
        (
            Value::from("inner"),
            Value::Map(vec![(Value::from("s"), Value::from("héllo"))]),
        ),
        (
            Value::from("list"),
            Value::Array(vec![
                Value::from(1),
                Value::from(-2),
                Value::F64(2.5),
                Value::Nil,
                Value::Boolean(true),
                Value::Array(vec![Value::from("deep")]),
            ]),
        ),
    ]);
    let echoed = client
        .call::<Value>(&Function::go("go.echo"), (&nested,))
        .await
        .unwrap();
    assert_eq!(echoed.get_timeout(LONG).await.unwrap(), nested);

    let fail = client
        .call::<()>(&Function::go("go.fail"), ("bad input",))
        .await
        .unwrap();
    match fail.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            language, message, ..
        }) => {
            assert_eq!(language, Language::Go);
            assert_eq!(message, "bad input");
        }
        other => panic!("expected TaskFailed from Go, got {other:?}"),
    }

    let counter = client
        .create_actor(&Class::go("go.Counter"), (10,))
        .await
        .unwrap();
    let mut refs: Vec<ObjectRef<i64>> = Vec::new();
    for _ in 0..50 {
        refs.push(counter.call("Incr", (1,)).await.unwrap());
    }
    assert_eq!(
        client.get_all(&refs).await.unwrap(),
        (11..=60).collect::<Vec<i64>>()
    );
    let r = counter.call::<i64>("incr", (5,)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 65);
    assert_eq!(get_i64(&counter, "Get").await.unwrap(), 65);
    assert_eq!(get_i64(&counter, "Pid").await.unwrap(), go.pid() as i64);
    let r = counter.call::<()>("Fail", ("go says no",)).await.unwrap();
    match r.get_timeout(LONG).await {
        Err(Error::TaskFailed {
            language, message, ..
        }) => {
            assert_eq!(language, Language::Go);
            assert_eq!(message, "go says no");
        }
        other => panic!("expected TaskFailed from the Go actor, got {other:?}"),
    }
    assert_eq!(get_i64(&counter, "Get").await.unwrap(), 65);
    client.kill_actor(&counter, true).await.unwrap();
    assert!(matches!(
        get_i64(&counter, "Get").await,
        Err(Error::ActorDied(_))
    ));
}
