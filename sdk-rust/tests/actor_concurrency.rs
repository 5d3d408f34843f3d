//! Threaded Rust actors against a real node: `max_concurrency` and shared
//! (`&T`) methods beside exclusive (`&mut T`) ones, hosted by a `Worker`
//! in this process.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, TestNode};
use ember::{ActorHandle, ActorOptions, Class, Client, Error, ObjectRef, ServeOptions, Worker};

const LONG: Duration = Duration::from_secs(60);

async fn serve(node: &TestNode, worker: Worker) -> ember::Serving {
    worker
        .start(ServeOptions::new(node.options()).concurrency(8))
        .await
        .expect("the worker connects and serves")
}

/// The concurrency test class: shared methods (`&Room`) that wait for
/// each other or record how many run at once, exclusive ones (`&mut Room`)
/// that check they run alone; every call records when it started.
struct Room {
    /// `meet` calls inside now, and whether enough met once; `met_cv`
    /// wakes the ones waiting.
    meeting: Mutex<Meeting>,
    met_cv: Condvar,
    /// Shared calls inside now, and the most seen at once.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// An exclusive call is inside.
    writer_inside: AtomicBool,
    /// A call found another it should not run beside.
    overlaps: AtomicUsize,
    /// Call numbers, in the order the calls started.
    started: Mutex<Vec<u32>>,
    /// `hold` calls started (seen by the test), and instances dropped.
    holding: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Meeting {
    inside: usize,
    met: bool,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl Room {
    fn enter_shared(&self, call: u32) {
        self.started.lock().unwrap().push(call);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if self.writer_inside.load(Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enter_exclusive(&mut self, call: u32) {
        self.started.lock().unwrap().push(call);
        if self.running.load(Ordering::SeqCst) != 0 || self.writer_inside.load(Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A worker hosting `Room` (shared and exclusive methods) and `Local`
/// (exclusive methods only, not `Sync`).
fn room_worker(holding: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>) -> Worker {
    let mut w = Worker::new();
    let (h, d) = (holding.clone(), drops.clone());
    w.register_actor("Room", move || {
        Ok::<_, String>(Room {
            meeting: Mutex::new(Meeting::default()),
            met_cv: Condvar::new(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            writer_inside: AtomicBool::new(false),
            overlaps: AtomicUsize::new(0),
            started: Mutex::new(Vec::new()),
            holding: h.clone(),
            drops: d.clone(),
        })
    })
    // Wait up to `timeout_ms` for `peers` calls inside at once (a call
    // that times out leaves: a later one does not meet it).
    .method_shared(
        "meet",
        |r: &Room, peers: usize, timeout_ms: u64| -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            let mut m = r.meeting.lock().unwrap();
            m.inside += 1;
            if m.inside >= peers {
                m.met = true;
                r.met_cv.notify_all();
            }
            while !m.met {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let inside = m.inside;
                    m.inside -= 1;
                    return Err(format!("timed out: {inside} of {peers} calls met"));
                }
                m = r.met_cv.wait_timeout(m, left).unwrap().0;
            }
            Ok(())
        },
    )
    .method_shared(
        "read",
        |r: &Room, call: u32, ms: u64| -> Result<u32, String> {
            r.enter_shared(call);
            std::thread::sleep(Duration::from_millis(ms));
            r.running.fetch_sub(1, Ordering::SeqCst);
            Ok(call)
        },
    )
    .method(
        "write",
        |r: &mut Room, call: u32, ms: u64| -> Result<u32, String> {
            r.enter_exclusive(call);
            r.writer_inside.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            r.writer_inside.store(false, Ordering::SeqCst);
            Ok(call)
        },
    )
    .method("boom", |r: &mut Room, call: u32| -> Result<u32, String> {
        r.enter_exclusive(call);
        panic!("an exclusive method panicked on purpose")
    })
    .method_shared("hold", |r: &Room, ms: u64| -> Result<(), String> {
        r.holding.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        Ok(())
    })
    .method_shared(
        "report",
        |r: &Room| -> Result<(usize, usize, Vec<u32>), String> {
            Ok((
                r.max_running.load(Ordering::SeqCst),
                r.overlaps.load(Ordering::SeqCst),
                r.started.lock().unwrap().clone(),
            ))
        },
    );
    // Exclusive methods only: the instance need not be `Sync`.
    w.register_actor("Local", |start: i64| {
        Ok::<_, String>(std::cell::Cell::new(start))
    })
    .method(
        "incr",
        |c: &mut std::cell::Cell<i64>, by: i64| -> Result<i64, String> {
            c.set(c.get() + by);
            Ok(c.get())
        },
    );
    w
}

async fn room(client: &Client, max_concurrency: Option<u32>) -> ActorHandle {
    let mut options = ActorOptions::default();
    if let Some(n) = max_concurrency {
        options = options.max_concurrency(n);
    }
    client
        .create_actor_with(&Class::rust("Room"), (), &options)
        .await
        .expect("create a Room")
}

/// `n` calls of `meet(n, timeout_ms)`, submitted together; their results.
async fn meet(actor: &ActorHandle, n: usize, timeout_ms: u64) -> Vec<ember::Result<()>> {
    let mut refs = Vec::new();
    for _ in 0..n {
        refs.push(actor.call::<()>("meet", (n, timeout_ms)).await.unwrap());
    }
    let mut out = Vec::new();
    for r in refs {
        out.push(r.get_timeout(LONG).await);
    }
    out
}

/// A node, a `Worker` in this process serving `Room`, a client, and the
/// room's counters (calls holding in `meet`, instances dropped).
struct Setup {
    node: TestNode,
    _serving: ember::Serving,
    client: Client,
    holding: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

async fn setup() -> Setup {
    let node = TestNode::start();
    let (holding, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let _serving = serve(&node, room_worker(&holding, &drops)).await;
    let client = Client::connect(node.options()).await.expect("connect");
    Setup {
        node,
        _serving,
        client,
        holding,
        drops,
    }
}

/// The room's record: the most calls seen running at once, how many
/// times an exclusive call ran beside another, the calls in start order.
async fn report(room: &ActorHandle) -> (usize, usize, Vec<u32>) {
    room.call::<(usize, usize, Vec<u32>)>("report", ())
        .await
        .unwrap()
        .get_timeout(LONG)
        .await
        .unwrap()
}

fn timed_out(r: &ember::Result<()>) -> bool {
    matches!(r, Err(Error::TaskFailed { message, .. }) if message.contains("timed out"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_runs_shared_methods_side_by_side() {
    let Setup {
        node: _node,
        _serving,
        client,
        holding,
        drops,
    } = setup().await;

    // max_concurrency 3: three calls that wait for each other all meet
    // (serialized, each would time out after 10 s).
    let three = room(&client, Some(3)).await;
    let met = meet(&three, 3, 10_000).await;
    assert!(
        met.iter().all(|r| r.is_ok()),
        "with max_concurrency 3, three shared calls did not meet: {met:?}"
    );

    // Never more than N at once: with 2, the first two wait for a third
    // that cannot start, and time out; the third then waits alone.
    let two = room(&client, Some(2)).await;
    let met = meet(&two, 3, 500).await;
    assert!(
        met.iter().all(timed_out),
        "with max_concurrency 2, a third call ran beside two: {met:?}"
    );

    // A kill while shared calls run: the instance goes once they end, and
    // the calls not started are not run.
    holding.store(0, Ordering::SeqCst);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(three.call::<()>("hold", (1500u64,)).await.unwrap());
    }
    wait_until("three hold calls run", || {
        holding.load(Ordering::SeqCst) == 3
    })
    .await;
    let dropped_before = drops.load(Ordering::SeqCst);
    three.kill(true).await.unwrap();
    for r in held {
        assert!(
            matches!(r.get_timeout(LONG).await, Err(Error::ActorDied(_))),
            "a killed actor's call"
        );
    }
    wait_until("the killed Room is dropped", || {
        drops.load(Ordering::SeqCst) == dropped_before + 1
    })
    .await;
    assert_eq!(holding.load(Ordering::SeqCst), 3, "a queued call ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_one_runs_calls_one_at_a_time() {
    // Borrowed: the node and the serving worker live to the end of the test.
    let Setup { client, .. } = &setup().await;

    // Explicitly 1, and the default (0): the calls cannot meet, each
    // waits alone and times out.
    for n in [Some(1), None] {
        let one = room(&client, n).await;
        let met = meet(&one, 3, 300).await;
        assert!(
            met.iter().all(timed_out),
            "with max_concurrency {n:?}, calls ran side by side: {met:?}"
        );
    }
    // With max_concurrency 1, shared calls start in arrival order, one at
    // a time.
    let one = room(&client, Some(1)).await;
    let mut refs = Vec::new();
    for call in 0..40u32 {
        refs.push(one.call::<u32>("read", (call, 0u64)).await.unwrap());
    }
    assert_eq!(
        client.get_all(&refs).await.unwrap(),
        (0..40).collect::<Vec<u32>>()
    );
    let (max_running, overlaps, started) = report(&one).await;
    assert_eq!((max_running, overlaps), (1, 0));
    assert_eq!(started, (0..40).collect::<Vec<u32>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exclusive_methods_never_overlap_shared_ones() {
    // Borrowed: the node and the serving worker live to the end of the test.
    let Setup { client, .. } = &setup().await;
    let four = room(&client, Some(4)).await;

    // A burst of 50: reads (shared) of 5-24 ms, every 7th a write
    // (exclusive), one write that panics.
    const CALLS: u32 = 50;
    const BOOM: u32 = 21;
    let mut refs = Vec::new();
    for call in 0..CALLS {
        let r = if call == BOOM {
            four.call::<u32>("boom", (call,)).await
        } else if call % 7 == 0 {
            four.call::<u32>("write", (call, 5u64)).await
        } else {
            four.call::<u32>("read", (call, 5 + u64::from(call * 7 % 20)))
                .await
        };
        refs.push(r.unwrap());
    }
    for (call, r) in (0..CALLS).zip(refs) {
        let got = r.get_timeout(LONG).await;
        if call == BOOM {
            match got {
                Err(Error::TaskFailed { type_name, .. }) => assert_eq!(type_name, "panic"),
                other => panic!("expected the panic of call {call}, got {other:?}"),
            }
        } else {
            assert_eq!(got.unwrap(), call);
        }
    }
    let (max_running, overlaps, started) = report(&four).await;
    assert_eq!(overlaps, 0, "an exclusive call ran beside another");
    assert!(
        (2..=4).contains(&max_running),
        "shared calls at once: {max_running} (want 2 to 4 with max_concurrency 4)"
    );
    // Every call started; an exclusive one only after all before it (and
    // before any after it): it is at its own place in the start order.
    let mut sorted = started.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..CALLS).collect::<Vec<u32>>());
    for call in (0..CALLS).filter(|c| *c == BOOM || c % 7 == 0) {
        assert_eq!(
            started[call as usize], call,
            "exclusive call {call} started out of order: {started:?}"
        );
    }
    // The write lock the panic poisoned is taken again: the actor goes on.
    let r = four.call::<u32>("write", (99u32, 0u64)).await.unwrap();
    assert_eq!(r.get_timeout(LONG).await.unwrap(), 99);

    // A class of exclusive methods only keeps its calls in order whatever
    // max_concurrency says.
    let local = client
        .create_actor_with(
            &Class::rust("Local"),
            (0,),
            &ActorOptions::default().max_concurrency(4),
        )
        .await
        .unwrap();
    let mut refs: Vec<ObjectRef<i64>> = Vec::new();
    for _ in 0..100 {
        refs.push(local.call("incr", (1,)).await.unwrap());
    }
    assert_eq!(
        client.get_all(&refs).await.unwrap(),
        (1..=100).collect::<Vec<i64>>()
    );
}
