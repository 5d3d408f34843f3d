//! `NodeConfig`: everything a node daemon needs to start, with defaults.
//! The CLI (`main.rs`) fills it from flags and `EMBER_*` environment variables.

use std::collections::HashMap;
use std::path::PathBuf;

/// Values up to this size travel inline in messages instead of shared memory.
pub const DEFAULT_MAX_INLINE_BYTES: u64 = 100 * 1024;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Run the head (control plane) in this process.
    pub head: bool,
    /// Address to bind the gRPC + Flight port to (127.0.0.1 unless told otherwise).
    pub bind_host: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// CPUs to offer (default: the machine's count).
    pub num_cpus: f64,
    /// GPUs to offer (default: detected with cudarc, 0 without CUDA).
    pub num_gpus: f64,
    /// Custom resources.
    pub resources: HashMap<String, f64>,
    /// Bytes of shared memory for the object store.
    pub object_store_memory: u64,
    /// Where session directories live (`$EMBER_TMPDIR` or /tmp/ember-<uid>).
    pub session_root: PathBuf,
    /// Python interpreter for workers.
    pub python: PathBuf,
    /// Written (atomically) with the session JSON once the node listens.
    pub ready_file: Option<PathBuf>,
    /// Exit when stdin closes (the embedded cluster of a driver).
    pub exit_with_stdin: bool,
    /// Workers started at boot (default: one per CPU).
    pub prestart_workers: usize,
    /// The cluster token; made fresh when None.
    pub token: Option<String>,
    pub max_inline_bytes: u64,
    /// Tasks a busy worker may have queued behind the one it runs
    /// (`EMBER_PIPELINE_DEPTH`, default 32; 0 turns pipelining off). Deep
    /// enough that a worker of quick tasks reads, runs and answers them in
    /// batches (8 woke each process 3-5 times as often per task and cost
    /// tasks_async about a fifth of its rate); a task that turns out slow
    /// gets nothing more queued behind it after `pipeline_window_us`.
    pub pipeline_depth: usize,
    /// Tasks are queued behind a running task only while it has run for
    /// less than this many microseconds (`EMBER_PIPELINE_WINDOW_US`, default 20000).
    pub pipeline_window_us: u64,
    /// Where to spill objects when the store is full (`--spill-dir`,
    /// `EMBER_SPILL_DIR`); the node spills into a subdirectory of its own.
    /// `None`: `<session dir>/spill`.
    pub spill_dir: Option<PathBuf>,
    /// Spilling stops with an error rather than fill the spill directory's
    /// filesystem past this fraction (`EMBER_SPILL_DISK_MAX_FRACTION`,
    /// default 0.95, as Ray's `local_fs_capacity_threshold`; above 1: no check,
    /// only a write that runs out of space fails).
    pub spill_disk_max_fraction: f64,
    /// How long a restore of a spilled object or a Flight `do_put` waits for
    /// room before failing (`EMBER_OBJECT_STORE_WAIT_MS`, default 30000).
    pub object_store_wait_ms: u64,
    /// The head to join (`ember start --address HOST:PORT`); `None` with
    /// `head` set.
    pub head_address: Option<String>,
    /// How often nodes report to the head (`EMBER_HEARTBEAT_MS`, default 1000).
    pub heartbeat_interval_ms: u64,
    /// Heartbeats a node may miss before the head declares it dead
    /// (`EMBER_NODE_DEATH_BEATS`, default 5).
    pub node_death_beats: u32,
    /// Where the head keeps its tables (`ember start --head --storage`): a
    /// directory, or `redis://HOST:PORT`; `None`: in memory.
    pub head_storage: Option<String>,
}

impl NodeConfig {
    /// Defaults for this machine.
    pub fn defaults() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            head: true,
            bind_host: "127.0.0.1".into(),
            port: 0,
            num_cpus: cpus as f64,
            num_gpus: crate::gpu::detect_gpus() as f64,
            resources: HashMap::new(),
            object_store_memory: default_object_store_memory(),
            session_root: default_session_root(),
            python: PathBuf::from("python3"),
            ready_file: None,
            exit_with_stdin: false,
            prestart_workers: cpus,
            token: None,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            pipeline_depth: env_or("EMBER_PIPELINE_DEPTH", 32),
            pipeline_window_us: env_or("EMBER_PIPELINE_WINDOW_US", 20_000),
            spill_dir: None,
            spill_disk_max_fraction: env_or("EMBER_SPILL_DISK_MAX_FRACTION", 0.95),
            object_store_wait_ms: env_or("EMBER_OBJECT_STORE_WAIT_MS", 30_000),
            head_address: None,
            head_storage: None,
            heartbeat_interval_ms: env_or("EMBER_HEARTBEAT_MS", 1000),
            node_death_beats: env_or("EMBER_NODE_DEATH_BEATS", 5),
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes of physical memory on this machine.
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages <= 0 || page <= 0 {
        return 8 << 30;
    }
    pages as u64 * page as u64
}

/// 30% of physical memory, as Ray does.
pub fn default_object_store_memory() -> u64 {
    physical_memory() * 3 / 10
}

/// `$EMBER_TMPDIR`, else `/tmp/ember-<uid>`.
pub fn default_session_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMBER_TMPDIR") {
        return PathBuf::from(dir);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/ember-{uid}"))
}
