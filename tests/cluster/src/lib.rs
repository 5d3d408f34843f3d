//! A real ember cluster for integration tests: a head and nodes, each an
//! `ember start --block` process of its own on its own loopback address
//! (127.0.0.1 for the head, 127.0.0.2, 127.0.0.3, ... for the nodes), with
//! its own session root in a temporary directory, as if each ran on a
//! machine of its own. Nothing is mocked: the cluster state is read over
//! the nodes' gRPC API (`NodeService.GetClusterStatus`), as `ember status`
//! reads it.
//!
//! ```no_run
//! use std::time::Duration;
//! use ember_cluster_tests::{describe, node_at, ClusterOptions, TestCluster};
//!
//! let cluster = TestCluster::start(ClusterOptions::new(2));
//! cluster.kill(1);
//! let gone = cluster.node(1).address();
//! cluster.wait_for(Duration::from_secs(15), "node 1 declared dead", || {
//!     let status = cluster.status(cluster.head())?;
//!     match node_at(&status, gone) {
//!         Some(node) if !node.alive => Ok(()),
//!         _ => Err(describe(&status)),
//!     }
//! });
//! ```
//!
//! - The `ember` binary is `$EMBER_BIN`, else `<target>/release/ember` of
//!   this workspace (`$CARGO_TARGET_DIR` or `target/`): build it first with
//!   `make build` (`make test` does).
//! - Heartbeats are short (200 ms, death after 5 missed beats by default),
//!   and each node offers 1 CPU, no GPU, a 32 MiB object store and starts no
//!   worker ahead of demand unless its arguments say otherwise (an argument
//!   given replaces the default of the same flag). Workers use
//!   `$EMBER_PYTHON`, else the `python` beside the binary, else the
//!   workspace's `.venv/bin/python` (made by `make build`).
//! - Every process is started with `--token` (one token for the cluster)
//!   and `--exit-with-stdin`: it stops when the test process goes away, even
//!   when that one is killed. Dropping the cluster (also while a test
//!   panics) stops every process, SIGTERM then SIGKILL.
//! - Each node's output goes to `<name>.log` in the cluster's directory;
//!   [`TestCluster::wait_for`] puts the tail of every log in its panic
//!   message, and a cluster dropped while panicking prints them and keeps
//!   its directory (so does `EMBER_TEST_KEEP=1`).
//! - The API blocks (it runs its own small tokio runtime for gRPC): call it
//!   from a plain `#[test]`, not from inside an async runtime.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant, SystemTime};

use ember_proto::v1::node_service_client::NodeServiceClient;
use ember_proto::v1::GetClusterStatusRequest;
pub use ember_proto::v1::{ClusterStatus, NodeInfo};

/// Bytes of a node's log shown in messages.
const LOG_TAIL_BYTES: u64 = 4000;

/// Flags every node gets unless its own arguments give them.
const NODE_DEFAULTS: &[(&str, &str)] = &[
    ("--num-cpus", "1"),
    ("--num-gpus", "0"),
    ("--prestart-workers", "0"),
    ("--object-store-memory", "33554432"),
];

/// How long [`TestCluster`] waits for a process it started to stop after
/// SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What [`TestCluster::start`] starts.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Nodes to start besides the head.
    pub nodes: usize,
    /// Extra `ember start` arguments of the head (kept for
    /// [`TestCluster::restart_head`]).
    pub head_args: Vec<String>,
    /// Extra arguments of node `i` (0-based, the head not counted); nodes
    /// past the end of the list get none.
    pub node_args: Vec<Vec<String>>,
    /// The cluster token (default: a fresh random one).
    pub token: Option<String>,
    /// Extra environment of every process.
    pub env: Vec<(String, String)>,
    /// `EMBER_HEARTBEAT_MS` (default 200).
    pub heartbeat_ms: u64,
    /// `EMBER_NODE_DEATH_BEATS` (default 5).
    pub death_beats: u32,
    /// How long a process may take to write its ready file (default 60 s).
    pub ready_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 2,
            head_args: Vec::new(),
            node_args: Vec::new(),
            token: None,
            env: Vec::new(),
            heartbeat_ms: 200,
            death_beats: 5,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl ClusterOptions {
    /// A head and `nodes` nodes, with the defaults.
    pub fn new(nodes: usize) -> Self {
        ClusterOptions {
            nodes,
            ..Default::default()
        }
    }

    /// Add arguments to the head's command line.
    pub fn head_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.head_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Add arguments to node `i`'s command line (0-based, the head not counted).
    pub fn node_args<I, S>(mut self, i: usize, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if self.node_args.len() <= i {
            self.node_args.resize(i + 1, Vec::new());
        }
        self.node_args[i].extend(args.into_iter().map(Into::into));
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Heartbeat period and the beats a node may miss before it is dead.
    pub fn heartbeat(mut self, interval_ms: u64, death_beats: u32) -> Self {
        self.heartbeat_ms = interval_ms;
        self.death_beats = death_beats;
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long a silent node takes to be declared dead: the heartbeat
    /// period times the beats it may miss.
    pub fn death_window(&self) -> Duration {
        Duration::from_millis(
            self.heartbeat_ms
                .saturating_mul(self.death_beats.max(1) as u64),
        )
    }
}

/// What a node wrote to its ready file.
#[derive(Clone, Debug)]
struct Ready {
    address: String,
    node_id: String,
    shm_path: Option<PathBuf>,
}

#[derive(Default)]
struct Process {
    child: Option<Child>,
    exit: Option<ExitStatus>,
    /// The arena of the running process, removed once it is dead (a node
    /// killed with SIGKILL cannot remove it itself).
    shm_path: Option<PathBuf>,
}

impl Process {
    /// Reap the child if it has exited.
    fn poll(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit = Some(status);
                self.child = None;
                self.remove_arena();
            }
        }
    }

    fn remove_arena(&mut self) {
        if let Some(path) = self.shm_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One `ember start --block` process of a [`TestCluster`] (and, for the
/// head, its later restarts).
pub struct Node {
    name: String,
    ip: String,
    args: Vec<String>,
    session_root: PathBuf,
    log_path: PathBuf,
    ready_path: PathBuf,
    ready: Option<Ready>,
    process: Mutex<Process>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("address", &self.ready.as_ref().map(|r| &r.address))
            .field("running", &self.is_running())
            .finish()
    }
}

impl Node {
    fn new(name: String, ip: String, args: Vec<String>, root: &Path) -> std::io::Result<Node> {
        let session_root = root.join(&name);
        std::fs::create_dir_all(&session_root)?;
        Ok(Node {
            log_path: root.join(format!("{name}.log")),
            ready_path: root.join(format!("{name}.ready.json")),
            name,
            ip,
            args,
            session_root,
            ready: None,
            process: Mutex::new(Process::default()),
        })
    }

    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// "head", "node-1", "node-2", ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The loopback address it listens on (127.0.0.x).
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Its `ember start` arguments (after `start --block --ready-file F`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Its `EMBER_TMPDIR`: its session directories are made in it.
    pub fn session_root(&self) -> &Path {
        &self.session_root
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether it has written its ready file (this run, for the head).
    pub fn is_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// Its gRPC address, host:port. Panics before it is ready.
    pub fn address(&self) -> &str {
        &self.ready_info().address
    }

    pub fn port(&self) -> u16 {
        let address = self.address();
        address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("{}: no port in address {address:?}", self.name))
    }

    /// Its node id in hex, as the ready file gives it.
    pub fn node_id(&self) -> &str {
        &self.ready_info().node_id
    }

    /// Its node id as bytes, as `NodeInfo.node_id` carries it.
    pub fn node_id_bytes(&self) -> Vec<u8> {
        let hex = self.node_id();
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|_| panic!("{}: node id {hex:?} is not hex", self.name))
    }

    fn ready_info(&self) -> &Ready {
        self.ready.as_ref().unwrap_or_else(|| {
            panic!(
                "{} is not ready (it has no address yet)\n{}",
                self.name,
                self.describe_log()
            )
        })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        let mut process = self.process();
        process.poll();
        process.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// How the last process exited (None while it runs or before it started).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut process = self.process();
        process.poll();
        process.exit
    }

    /// Wait up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut process = self.process();
                process.poll();
                if process.child.is_none() {
                    return process.exit;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The whole log (every run, for the head).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last few KB of the log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }

    /// A header (name, address, state, log path) and the log's tail.
    pub fn describe_log(&self) -> String {
        let address = self
            .ready
            .as_ref()
            .map_or("not ready", |r| r.address.as_str());
        let state = match self.exit_status() {
            Some(status) => format!("exited: {status}"),
            None if self.is_running() => "running".to_string(),
            None => "not started".to_string(),
        };
        format!(
            "----- {} ({address}, {state}), log {} -----\n{}",
            self.name,
            self.log_path.display(),
            self.log_tail()
        )
    }

    fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) of a child process of ours that we have not
            // reaped (so its pid cannot have been reused).
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// SIGKILL and reap.
    fn kill(&self) -> Option<ExitStatus> {
        let mut process = self.process();
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            process.exit = child.wait().ok();
        }
        process.remove_arena();
        process.exit
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        match self.wait_exit(grace) {
            Some(status) => {
                self.process().remove_arena();
                Some(status)
            }
            None => self.kill(),
        }
    }
}

/// What a condition given to [`TestCluster::wait_for`] may return: `bool`,
/// `Option<T>`, or `Result<T, E>` (the error says why it does not hold yet,
/// and the last one goes into the panic message).
pub trait Condition {
    type Output;
    fn check(self) -> Result<Self::Output, String>;
}

impl Condition for bool {
    type Output = ();
    fn check(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".into())
        }
    }
}

impl<T> Condition for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

impl<T, E: fmt::Display> Condition for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A head and nodes, real processes; see the crate documentation.
pub struct TestCluster {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    bin: PathBuf,
    opts: ClusterOptions,
    token: String,
    /// `--python` for every process, unless its arguments say otherwise.
    python: Option<PathBuf>,
    head: Node,
    nodes: Vec<Node>,
    /// For gRPC calls. Multi-threaded (one worker) so that a connection
    /// closes as soon as its client is dropped, rather than at the next
    /// call: an open connection would hold up a node's graceful shutdown.
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestCluster {
    /// Start the head, then the nodes (all at once), and wait until the
    /// head lists every one of them alive. Panics, with the logs, when one
    /// does not start.
    pub fn start(opts: ClusterOptions) -> TestCluster {
        let bin = ember_bin();
        let dir = tempfile::Builder::new()
            .prefix("ember-cluster-")
            .tempdir()
            .expect("cannot make a temporary directory for the cluster");
        let root = dir.path().to_path_buf();
        let token = opts.token.clone().unwrap_or_else(random_token);
        let python = default_python(&bin);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("cannot start a tokio runtime");
        let head_args = merge_args(
            &defaults("127.0.0.1", &token, python.as_deref(), &["--head".into()]),
            &opts.head_args,
        );
        let head = Node::new("head".into(), "127.0.0.1".into(), head_args, &root)
            .expect("cannot make the head's session root");
        let mut cluster = TestCluster {
            dir: Some(dir),
            root,
            bin,
            opts,
            token,
            python,
            head,
            nodes: Vec::new(),
            runtime: Some(runtime),
        };
        // From here on a panic drops `cluster`, which stops what it started.
        cluster.spawn_head_or_panic();
        let started: Vec<usize> = (0..cluster.opts.nodes)
            .map(|i| {
                let args = cluster.opts.node_args.get(i).cloned().unwrap_or_default();
                cluster.spawn_node(args)
            })
            .collect();
        for i in started {
            cluster.wait_ready_or_panic(i);
        }
        let expected = cluster.nodes.len() + 1;
        cluster.wait_for(
            Duration::from_secs(30),
            &format!("the head to list {expected} live nodes"),
            || {
                let status = cluster.status(cluster.head())?;
                let alive = status.nodes.iter().filter(|n| n.alive).count();
                if alive == expected {
                    Ok(())
                } else {
                    Err(describe(&status))
                }
            },
        );
        cluster
    }

    /// The cluster token every process was started with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The directory holding the logs, ready files and session roots.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The `ember` binary in use.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn head(&self) -> &Node {
        &self.head
    }

    /// Node `i` (0-based, the head not counted), in the order started.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes.get(i).unwrap_or_else(|| {
            panic!(
                "no node {i}: the cluster has {} besides the head",
                self.nodes.len()
            )
        })
    }

    /// The nodes besides the head.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The head, then the nodes.
    pub fn all(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.head).chain(self.nodes.iter())
    }

    /// Start one more node joining the head (on the next 127.0.0.x) and
    /// wait until it is ready; its index for [`TestCluster::node`].
    /// `args` replace the defaults of the same flags (e.g. `--token`).
    pub fn add_node<I, S>(&mut self, args: I) -> usize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let i = self.spawn_node(args);
        self.wait_ready_or_panic(i);
        i
    }

    /// Start one more node without waiting for it (for one that is meant
    /// to fail: see [`Node::wait_exit`]); its index.
    pub fn spawn_node<I, S>(&mut self, args: I) -> usize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let i = self.nodes.len();
        assert!(i + 2 <= 254, "no loopback address left for node {i}");
        let ip = format!("127.0.0.{}", i + 2);
        let base = defaults(
            &ip,
            &self.token,
            self.python.as_deref(),
            &["--address".into(), self.head.address().to_string()],
        );
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let node = Node::new(
            format!("node-{}", i + 1),
            ip,
            merge_args(&base, &args),
            &self.root,
        )
        .expect("cannot make the node's session root");
        self.nodes.push(node);
        if let Err(why) = self.spawn(&self.nodes[i]) {
            panic!("{why}\n{}", self.nodes[i].describe_log());
        }
        i
    }

    /// SIGKILL node `i`, as a machine failure would (and reap it).
    pub fn kill(&self, i: usize) {
        self.node(i).kill();
    }

    /// Stop node `i` the way an operator would: SIGTERM, SIGKILL if it is
    /// still there after 10 s. How it exited.
    pub fn stop(&self, i: usize) -> Option<ExitStatus> {
        self.node(i).stop(STOP_GRACE)
    }

    /// SIGKILL the head (and reap it).
    pub fn kill_head(&self) {
        self.head.kill();
    }

    /// Start the head again (killing it first if it still runs) on the same
    /// address and port with the same token and arguments; `extra_args`
    /// add to them or replace those of the same flag, for this and later
    /// restarts (a `--token` given here changes the head's token, not the
    /// one [`TestCluster::status`] calls with). Waits until it is ready,
    /// not for the nodes to join it again (use `wait_for`).
    pub fn restart_head<I, S>(&mut self, extra_args: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.head.kill();
        let address = self.head.address().to_string();
        let mut over: Vec<String> = extra_args.into_iter().map(Into::into).collect();
        over.extend(["--port".to_string(), self.head.port().to_string()]);
        self.head.args = merge_args(&self.head.args, &over);
        // The port may be briefly taken (by an outgoing connection's local
        // port): try again for a while when listening fails.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log_start = std::fs::metadata(&self.head.log_path).map_or(0, |m| m.len());
            let result = self
                .spawn(&self.head)
                .and_then(|()| wait_ready(&mut self.head, self.opts.ready_timeout));
            match result {
                Ok(()) => break,
                Err(why) => {
                    let this_run = read_from(&self.head.log_path, log_start);
                    if this_run.contains("cannot listen") && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(250));
                        continue;
                    }
                    panic!("restarting the head: {why}\n{}", self.head.describe_log());
                }
            }
        }
        assert_eq!(
            self.head.address(),
            address,
            "the restarted head listens elsewhere"
        );
    }

    /// The cluster as `node` sees it (its own `GetClusterStatus`).
    pub fn status(&self, node: &Node) -> Result<ClusterStatus, String> {
        self.status_at(node.address())
    }

    /// `GetClusterStatus` of the node at `address`, with the cluster token.
    pub fn status_at(&self, address: &str) -> Result<ClusterStatus, String> {
        let runtime = self.runtime.as_ref().expect("the cluster is being dropped");
        runtime.block_on(fetch_status(address, &self.token, Duration::from_secs(5)))
    }

    /// Poll `condition` (every 50 ms) until it holds and return what it
    /// gave; after `timeout`, panic with `what`, the condition's last
    /// error and every node's log tail.
    pub fn wait_for<C: Condition>(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut() -> C,
    ) -> C::Output {
        let start = Instant::now();
        loop {
            let last = match condition().check() {
                Ok(value) => return value,
                Err(why) => why,
            };
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last check: {last}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every process's state and log tail, for messages.
    pub fn logs(&self) -> String {
        let mut out = format!("cluster directory: {}\n", self.root.display());
        for node in self.all() {
            out.push_str(&node.describe_log());
            out.push('\n');
        }
        out
    }

    fn spawn_head_or_panic(&mut self) {
        let result = self
            .spawn(&self.head)
            .and_then(|()| wait_ready(&mut self.head, self.opts.ready_timeout));
        if let Err(why) = result {
            panic!("starting the head: {why}\n{}", self.head.describe_log());
        }
    }

    fn wait_ready_or_panic(&mut self, i: usize) {
        if let Err(why) = wait_ready(&mut self.nodes[i], self.opts.ready_timeout) {
            panic!("{why}\n{}", self.logs());
        }
    }

    /// Start `node`'s process (a new run: its ready file is removed first).
    fn spawn(&self, node: &Node) -> Result<(), String> {
        let mut process = node.process();
        process.poll();
        if process.child.is_some() {
            return Err(format!("{} is already running", node.name));
        }
        let _ = std::fs::remove_file(&node.ready_path);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| format!("cannot open {}: {e}", node.log_path.display()))?;
        let mut args: Vec<String> = vec![
            "start".into(),
            "--block".into(),
            "--exit-with-stdin".into(),
            "--ready-file".into(),
            node.ready_path.to_string_lossy().into_owned(),
        ];
        args.extend(node.args.iter().cloned());
        let _ = writeln!(log, "=== {} {} ===", self.bin.display(), args.join(" "));
        let mut command = Command::new(&self.bin);
        command
            .args(&args)
            .env("EMBER_TMPDIR", &node.session_root)
            .env("EMBER_HEARTBEAT_MS", self.opts.heartbeat_ms.to_string())
            .env("EMBER_NODE_DEATH_BEATS", self.opts.death_beats.to_string())
            // Plain text logs (the node writes to a file, not a terminal),
            // and an error that stops a node without a backtrace that would
            // push it out of the log's tail (`env` may say otherwise).
            .env("NO_COLOR", "1")
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            // Held open by the Child: closing it (the test process ending,
            // however it ends) stops the node.
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        *process = Process {
            child: Some(child),
            exit: None,
            shm_path: None,
        };
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let logs = panicking.then(|| self.logs());
        // Close our connections first: a node stops gracefully once its
        // clients are gone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        for node in self.all() {
            node.signal(libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in self.all() {
            if node.is_running()
                && node
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .is_none()
            {
                eprintln!("{} did not stop on SIGTERM: killing it", node.name);
            }
            node.kill();
        }
        let keep = std::env::var_os("EMBER_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if let Some(logs) = logs {
            eprintln!("the test failed with this cluster:\n{logs}");
        }
        if panicking || keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept the cluster directory {}", dir.keep().display());
            }
        }
    }
}

/// Wait until `node` has written its ready file.
fn wait_ready(node: &mut Node, timeout: Duration) -> Result<(), String> {
    node.ready = None;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&node.ready_path) {
            if let Ok(ready) = parse_ready(&text) {
                node.process().shm_path = ready.shm_path.clone();
                node.ready = Some(ready);
                return Ok(());
            }
        }
        if let Some(status) = node.exit_status() {
            return Err(format!(
                "{} exited ({status}) before it was ready",
                node.name
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} was not ready after {timeout:?}", node.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parse_ready(text: &str) -> Result<Ready, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Ready {
        address: field("address").ok_or("no address in the ready file")?,
        node_id: field("node_id").unwrap_or_default(),
        shm_path: field("shm_path").map(PathBuf::from),
    })
}

async fn fetch_status(
    address: &str,
    token: &str,
    timeout: Duration,
) -> Result<ClusterStatus, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("bad address {address:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach {address}: {}", error_chain(&e)))?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token cannot go in a header".to_string())?;
    let mut client =
        NodeServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", auth.clone());
            Ok(req)
        });
    let reply = client
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .map_err(|s| format!("GetClusterStatus at {address}: {s}"))?;
    reply
        .into_inner()
        .status
        .ok_or_else(|| format!("GetClusterStatus at {address}: no status in the reply"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Address -> alive, for every node `status` lists.
pub fn alive_by_address(status: &ClusterStatus) -> BTreeMap<String, bool> {
    status
        .nodes
        .iter()
        .map(|n| (n.address.clone(), n.alive))
        .collect()
}

/// The node `status` lists at `address`.
pub fn node_at<'a>(status: &'a ClusterStatus, address: &str) -> Option<&'a NodeInfo> {
    status.nodes.iter().find(|n| n.address == address)
}

/// The resources of the live nodes, added up (what `cluster_resources()`
/// reports).
pub fn live_totals(status: &ClusterStatus) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for node in status.nodes.iter().filter(|n| n.alive) {
        for (name, amount) in &node.resources_total {
            *totals.entry(name.clone()).or_insert(0.0) += amount;
        }
    }
    totals
}

/// One line per node: address, id, alive, head, CPU/GPU and custom
/// resources (for messages).
pub fn describe(status: &ClusterStatus) -> String {
    let mut out = format!("{} node(s):", status.nodes.len());
    for n in &status.nodes {
        let resources: BTreeMap<_, _> = n
            .resources_total
            .iter()
            .filter(|(name, _)| !name.ends_with("memory"))
            .collect();
        out.push_str(&format!(
            "\n  {} id={} alive={} head={} {:?}",
            n.address,
            hex_prefix(&n.node_id),
            n.alive,
            n.is_head,
            resources
        ));
    }
    out
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The `ember` binary: `$EMBER_BIN`, else `<target>/release/ember` of this
/// workspace. Panics, saying how to build it, when it is missing.
pub fn ember_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EMBER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "EMBER_BIN is {}, which is not a file",
            bin.display()
        );
        return bin;
    }
    let workspace = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let bin = target.join("release").join("ember");
    assert!(
        bin.is_file(),
        "the ember binary is not at {}: build it with `make build` (or `cargo build --release -p \
         ember-server`), or point EMBER_BIN at one",
        bin.display()
    );
    warn_if_stale(&bin, &workspace);
    bin
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Say so (once) when the daemon's sources are newer than the binary: the
/// tests would run an old `ember`.
fn warn_if_stale(bin: &Path, workspace: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Some(built) = modified(bin) else { return };
        let newer: Vec<PathBuf> = ["server", "flight-store", "proto"]
            .iter()
            .flat_map(|dir| rust_sources(&workspace.join(dir)))
            .filter(|f| modified(f).is_some_and(|m| m > built))
            .collect();
        if let Some(first) = newer.first() {
            eprintln!(
                "warning: {} is older than {} source file(s) (e.g. {}): rebuild it with `make \
                 build` to test the current code",
                bin.display(),
                newer.len(),
                first.display()
            );
        }
    });
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "proto" || e == "toml")
            {
                found.push(path);
            }
        }
    }
    found
}

/// The arguments every process starts with, before its own.
fn defaults(ip: &str, token: &str, python: Option<&Path>, role: &[String]) -> Vec<String> {
    let mut args: Vec<String> = role.to_vec();
    for (flag, value) in [("--node-ip", ip), ("--port", "0"), ("--token", token)]
        .into_iter()
        .chain(NODE_DEFAULTS.iter().copied())
    {
        args.push(flag.to_string());
        args.push(value.to_string());
    }
    if let Some(python) = python {
        args.push("--python".into());
        args.push(python.to_string_lossy().into_owned());
    }
    args
}

/// The Python for the nodes' workers when `EMBER_PYTHON` does not say:
/// the one beside the binary (as `ember start` itself would pick), else
/// the workspace's `.venv` (which `make build` makes, with the SDK in it).
/// Without either, the node's default (`python3`), which may lack the SDK:
/// the nodes still run, and log that their worker fork server fails.
fn default_python(bin: &Path) -> Option<PathBuf> {
    if std::env::var_os("EMBER_PYTHON").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    [
        bin.parent().map(|dir| dir.join("python")),
        Some(workspace_root().join(".venv/bin/python")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists())
}

/// `base` with the flags `over` gives replaced by `over`'s: a flag is a
/// word starting with `--` (`--flag=value` included) with the word after
/// it as its value unless that one starts with `--` too.
pub fn merge_args(base: &[String], over: &[String]) -> Vec<String> {
    let over_groups = flag_groups(over);
    let replaced: Vec<String> = over_groups.iter().map(|(flag, _)| flag.clone()).collect();
    flag_groups(base)
        .into_iter()
        .filter(|(flag, _)| !replaced.contains(flag))
        .chain(over_groups)
        .flat_map(|(_, words)| words)
        .collect()
}

fn flag_groups(args: &[String]) -> Vec<(String, Vec<String>)> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if !word.starts_with("--") {
            groups.push((word.clone(), vec![word.clone()]));
            continue;
        }
        if let Some((flag, _)) = word.split_once('=') {
            groups.push((flag.to_string(), vec![word.clone()]));
            continue;
        }
        let mut words = vec![word.clone()];
        if i < args.len() && !args[i].starts_with("--") {
            words.push(args[i].clone());
            i += 1;
        }
        groups.push((word.clone(), words));
    }
    groups
}

fn random_token() -> String {
    let mut token = String::from("test-");
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        token.push_str(&format!("{:016x}", hasher.finish()));
    }
    token
}

fn read_tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let _ = file.seek(SeekFrom::Start(offset));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn merged_flags_replace_those_of_the_same_name() {
        let base = words("--head --port 0 --num-cpus 1 --token t");
        let over = words("--num-cpus=2 --resources {\"x\":1} --port 4000 --verbose");
        assert_eq!(
            merge_args(&base, &over),
            words("--head --token t --num-cpus=2 --resources {\"x\":1} --port 4000 --verbose")
        );
        assert_eq!(merge_args(&base, &[]), base);
    }

    #[test]
    fn defaults_give_every_flag_a_value() {
        let args = defaults(
            "127.0.0.9",
            "tok",
            Some(Path::new("/py")),
            &words("--address 127.0.0.1:1"),
        );
        let groups = flag_groups(&args);
        assert!(groups.iter().all(|(_, w)| w.len() == 2), "{groups:?}");
        assert!(args.windows(2).any(|w| w == ["--node-ip", "127.0.0.9"]));
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn the_ready_file_gives_the_address() {
        let ready =
            parse_ready(r#"{"address": "127.0.0.2:5", "node_id": "ab", "pid": 1}"#).unwrap();
        assert_eq!(ready.address, "127.0.0.2:5");
        assert!(parse_ready(r#"{"pid": 1}"#).is_err());
    }
}
