//! Rust → Rust call throughput against a real node.
//!
//! ```text
//! cargo run --release -p ember --example bench [-- --calls N --round-trips M --existing]
//! ```
//!
//! Starts a node (`$EMBER_BIN`, else the workspace's `.venv/bin/ember`, else
//! `target/release/ember`) in a temporary session root, unless `--existing`
//! (then the node is found as `Client::connect(Options::default())` finds
//! it). A Worker in this process serves `noop` (sync) and `noop_async`; the
//! client, on its own connection, measures:
//!
//! - async calls/s: N calls submitted, then every result got;
//! - sync round trips/s: call, then get, one at a time;
//! - small put + get round trips/s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember::{Client, Function, ObjectRef, Options, ServeOptions, SessionInfo, Worker};

struct Node {
    child: Child,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ember_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EMBER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let venv = workspace.join(".venv/bin/ember");
    if venv.exists() {
        return venv;
    }
    workspace.join("target/release/ember")
}

fn start_node() -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("sessions");
    let ready = dir.path().join("ready.json");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let child = Command::new(ember_bin())
        .args([
            "start",
            "--head",
            "--block",
            "--port",
            "0",
            "--num-cpus",
            "2",
        ])
        .args([
            "--prestart-workers",
            "0",
            "--exit-with-stdin",
            "--ready-file",
        ])
        .arg(&ready)
        .env("EMBER_TMPDIR", &root)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run ember (make build, or set EMBER_BIN)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while SessionInfo::read(&ready).is_err() {
        assert!(Instant::now() < deadline, "the node was not ready in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Node {
        child,
        _dir: dir,
        root,
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn async_calls(client: &Client, f: &Function, n: usize) -> f64 {
    let start = Instant::now();
    let mut refs: Vec<ObjectRef<i64>> = Vec::with_capacity(n);
    for i in 0..n {
        refs.push(client.call::<i64>(f, (i as i64,)).await.expect("call"));
    }
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(r.get().await.expect("get"), i as i64);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn round_trips(client: &Client, f: &Function, n: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let r = client.call::<i64>(f, (i as i64,)).await.expect("call");
        assert_eq!(r.get().await.expect("get"), i as i64);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn put_gets(client: &Client, n: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let r = client.put(&(i as i64)).await.expect("put");
        assert_eq!(r.get().await.expect("get"), i as i64);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let calls = arg("--calls", 200_000);
    let trips = arg("--round-trips", 20_000);
    let existing = std::env::args().any(|a| a == "--existing");
    let node = (!existing).then(start_node);
    let options = match &node {
        Some(n) => Options::default().with_session_root(&n.root),
        None => Options::default(),
    };
    let runtime = if std::env::args().any(|a| a == "--current-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime.block_on(async move {
        let mut worker = Worker::new();
        worker.register("noop", |x: i64| Ok::<_, String>(x));
        worker.register_async("noop_async", |x: i64| async move { Ok::<_, String>(x) });
        let serving = worker
            .start(ServeOptions::new(options.clone()).concurrency(4096))
            .await
            .expect("serve");
        let client = Client::connect(options).await.expect("connect");
        let sync_fn = Function::rust("noop");
        let async_fn = Function::rust("noop_async");
        // Warm up.
        async_calls(&client, &sync_fn, 10_000).await;
        async_calls(&client, &async_fn, 10_000).await;
        round_trips(&client, &sync_fn, 1_000).await;

        for (label, f) in [("sync fn", &sync_fn), ("async fn", &async_fn)] {
            let best = [
                async_calls(&client, f, calls).await,
                async_calls(&client, f, calls).await,
                async_calls(&client, f, calls).await,
            ];
            println!(
                "Rust->Rust async calls ({label}), {calls} submitted then got: {:>9.0} calls/s  (runs: {:.0} {:.0} {:.0})",
                best.iter().cloned().fold(0.0, f64::max),
                best[0],
                best[1],
                best[2]
            );
        }
        // Let the node free the objects of the async runs first (their refs
        // were just dropped): that work would land on the first round trips.
        tokio::time::sleep(Duration::from_secs(1)).await;
        round_trips(&client, &sync_fn, 1_000).await;
        for (label, f) in [("sync fn", &sync_fn), ("async fn", &async_fn)] {
            let rt = round_trips(&client, f, trips).await;
            println!("Rust->Rust sync round trips ({label}), call + get:      {rt:>9.0} /s");
        }
        let pg = put_gets(&client, trips).await;
        println!("small put + get round trips:                          {pg:>9.0} /s");
        drop(client);
        serving.stop().await;
    });
    drop(node);
}
