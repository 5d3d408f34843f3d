//! The `ember` command: `start`, `stop`, `status`. Thin: parses flags, sets
//! up logging and calls the library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ember_server::{config, session, status, NodeConfig};

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "ember: distributed tasks and objects for Python, Go and Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node: the head of a new cluster (--head), or one joining a
    /// cluster (--address).
    Start(Box<StartArgs>),
    /// Stop the ember nodes of this user on this machine.
    Stop,
    /// Print nodes, resources and tasks of the running cluster.
    Status {
        /// host:port of the node (default: the latest local session).
        #[arg(long, env = "EMBER_ADDRESS")]
        address: Option<String>,
    },
    /// List the cluster's actors or nodes, one per line (tab-separated).
    List {
        #[arg(value_enum)]
        what: ListWhat,
        /// host:port of the node (default: the latest local session).
        #[arg(long, env = "EMBER_ADDRESS")]
        address: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ListWhat {
    Actors,
    Jobs,
    Nodes,
}

#[derive(clap::Args)]
struct StartArgs {
    /// Run the head (control plane) in this node.
    #[arg(long)]
    head: bool,
    /// Join the cluster whose head listens at HOST:PORT (instead of --head).
    #[arg(long)]
    address: Option<String>,
    /// The cluster token. To join with --address (default: from the head's
    /// session file when the head runs on this machine); with --head, the
    /// token to use instead of a fresh one (a restarted head keeps its nodes).
    #[arg(long, env = "EMBER_TOKEN")]
    token: Option<String>,
    /// With --head: keep the head's tables (nodes, actors, functions, KV)
    /// in this directory, or in Redis (redis://HOST:PORT), so that a head
    /// restarted on the same storage finds them again. Default: in memory.
    #[arg(long, value_name = "PATH|redis://HOST:PORT")]
    storage: Option<String>,
    /// The address this node listens on, e.g. 127.0.0.2 to run several
    /// nodes on one machine (same as --host).
    #[arg(long)]
    node_ip: Option<String>,
    /// TCP port for gRPC and Arrow Flight (0 = any free port).
    #[arg(long, default_value_t = 0, env = "EMBER_PORT")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "EMBER_BIND_HOST")]
    host: String,
    /// CPUs to offer (default: all).
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs to offer (default: detected).
    #[arg(long)]
    num_gpus: Option<f64>,
    /// Custom resources as JSON, e.g. '{"accelerator": 2}'.
    #[arg(long)]
    resources: Option<String>,
    /// Bytes of shared memory for objects (default: 30% of RAM).
    #[arg(long, env = "EMBER_OBJECT_STORE_MEMORY")]
    object_store_memory: Option<u64>,
    /// Directory to spill objects to when the object store is full
    /// (default: <session dir>/spill). A subdirectory of this node's own is
    /// made in it and removed when the node stops.
    #[arg(long, env = "EMBER_SPILL_DIR")]
    spill_dir: Option<PathBuf>,
    /// Stay in the foreground.
    #[arg(long)]
    block: bool,
    /// Write the session JSON here once ready.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Python interpreter for workers (default: the `python` beside this binary, else python3).
    #[arg(long, env = "EMBER_PYTHON")]
    python: Option<PathBuf>,
    /// Stop when standard input closes (used by `ember.init()`).
    #[arg(long)]
    exit_with_stdin: bool,
    /// Directory for sessions (default: $EMBER_TMPDIR or /tmp/ember-<uid>).
    #[arg(long)]
    session_root: Option<PathBuf>,
    /// Workers to start ahead of demand (default: one per CPU).
    #[arg(long)]
    prestart_workers: Option<usize>,
    /// Microseconds after the last local message during which idle CPUs are
    /// kept from halting (a 0 µs CPU latency request where
    /// /dev/cpu_dma_latency opens, else low-priority spinning threads;
    /// `EMBER_KEEP_AWAKE_MODE=spin|poll` chooses), so the next hop of a sync
    /// call wakes at once; 0 turns this off (it is off anyway under a cgroup
    /// CPU quota). See server/src/keep_awake.rs.
    #[arg(long, env = "EMBER_KEEP_AWAKE_US", default_value_t = 2000)]
    keep_awake_us: u64,
    /// Threads of the node's async runtime (blocking work, such as copies
    /// into the store and spill files, runs on tokio's blocking pool
    /// besides). One by default: every local message is handled under the
    /// node core's one lock anyway, and with a second runtime thread each
    /// message also woke the idle one to look for work to steal, which cost
    /// a sync call 10–15 µs more node CPU and about a quarter of the sync
    /// task rate (benches/README.md, 2026-11-29 afternoon).
    #[arg(long, env = "EMBER_RUNTIME_THREADS", default_value_t = 1)]
    runtime_threads: usize,
}

/// The node allocates and frees small messages at a high rate; mimalloc's
/// free lists take less CPU than glibc's malloc for that (see
/// benches/README.md). Built without transparent huge pages (feature
/// `no_thp`): advised for them, its arena made the idle node's few live
/// blocks hold whole 2 MiB pages (+16 MB resident) for no CPU saved.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The causes, one per line; no backtrace (RUST_BACKTRACE is for panics).
            eprintln!("Error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Large transfer buffers (Flight messages of a few MiB) come from the
    // heap and are reused while their pages are warm, instead of a fresh
    // mmap (and page faults) for each; an idle node still trims its heap.
    // SAFETY: mallopt only tunes the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Start(args) => start(*args),
        Command::Stop => stop(),
        Command::Status { address } => {
            let status = fetch_status(address)?;
            print!("{}", status::render(&status));
            Ok(())
        }
        Command::List { what, address } => {
            let status = fetch_status(address)?;
            let text = match what {
                ListWhat::Actors => status::list_actors(&status),
                ListWhat::Jobs => status::list_jobs(&status),
                ListWhat::Nodes => status::list_nodes(&status),
            };
            print!("{text}");
            Ok(())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn node_config(args: &StartArgs) -> anyhow::Result<NodeConfig> {
    let mut cfg = NodeConfig::defaults();
    match (&args.address, args.head) {
        (Some(_), true) => {
            bail!("give either --head (start a cluster) or --address (join one), not both")
        }
        (None, false) => {
            bail!("give --head to start a cluster, or --address HEAD_HOST:PORT to join one")
        }
        (Some(_), false) if args.storage.is_some() => {
            bail!(
                "--storage is for the head (--head): a node joining with --address keeps no tables"
            )
        }
        (Some(address), false) => {
            cfg.head = false;
            cfg.head_address = Some(address.clone());
            cfg.token = Some(match &args.token {
                Some(token) => token.clone(),
                None => session::live_sessions(&config::default_session_root())
                    .into_iter()
                    .find(|s| &s.address == address)
                    .map(|s| s.token)
                    .with_context(|| {
                        format!(
                            "no cluster token: pass --token or EMBER_TOKEN (the head's session \
                             file for {address} is not on this machine)"
                        )
                    })?,
            });
        }
        (None, true) => {
            cfg.head = true;
            cfg.token = args.token.clone();
            cfg.head_storage = args.storage.clone();
        }
    }
    cfg.port = args.port;
    cfg.bind_host = args.node_ip.clone().unwrap_or_else(|| args.host.clone());
    if let Some(n) = args.num_cpus {
        if !(n >= 0.0 && n.is_finite()) {
            bail!("--num-cpus must be a number >= 0");
        }
        cfg.num_cpus = n;
        cfg.prestart_workers = n.ceil() as usize;
    }
    if let Some(n) = args.num_gpus {
        if !(n >= 0.0 && n.is_finite()) {
            bail!("--num-gpus must be a number >= 0");
        }
        cfg.num_gpus = n;
    }
    if let Some(json) = &args.resources {
        let map: HashMap<String, f64> = serde_json::from_str(json).with_context(|| {
            format!("--resources must be a JSON object of numbers, got {json:?}")
        })?;
        for name in map.keys() {
            if name == "CPU" || name == "GPU" {
                bail!("use --num-cpus/--num-gpus instead of {name} in --resources");
            }
        }
        cfg.resources = map;
    }
    if let Some(bytes) = args.object_store_memory {
        if bytes < 1 << 20 {
            bail!("--object-store-memory must be at least 1 MiB");
        }
        cfg.object_store_memory = bytes;
    }
    if let Some(dir) = &args.spill_dir {
        cfg.spill_dir = Some(dir.clone());
    }
    if let Some(root) = &args.session_root {
        cfg.session_root = root.clone();
    }
    if let Some(n) = args.prestart_workers {
        cfg.prestart_workers = n;
    }
    cfg.python = match &args.python {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("python")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3")),
    };
    cfg.ready_file = args.ready_file.clone();
    cfg.exit_with_stdin = args.exit_with_stdin;
    if cfg.bind_host != "127.0.0.1" && cfg.bind_host != "localhost" {
        tracing::info!(host = %cfg.bind_host, "listening beyond loopback; every call still needs the cluster token");
    }
    Ok(cfg)
}

fn start(args: StartArgs) -> anyhow::Result<()> {
    let cfg = node_config(&args)?;
    if !args.block {
        return start_in_background(&cfg);
    }
    init_logging();
    ember_server::keep_awake::start(Duration::from_micros(args.keep_awake_us));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.runtime_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((cfg.bind_host.as_str(), cfg.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", cfg.bind_host, cfg.port))?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            signals.cancel();
            // A second signal exits at once.
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            std::process::exit(130);
        });
        ember_server::run_node(cfg, listener, shutdown).await
    })
}

/// Re-run this command with --block in a new session, wait until it is
/// ready, print how to connect.
fn start_in_background(cfg: &NodeConfig) -> anyhow::Result<()> {
    let ready = std::env::temp_dir().join(format!(
        "ember-ready-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&cfg.session_root)?;
    let log_path = cfg.session_root.join("ember-start.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--block".into());
    args.push("--ready-file".into());
    args.push(ready.to_string_lossy().into_owned());
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid in the child before exec detaches it from our terminal.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the node process")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = session::read_session_file(&ready) {
            let _ = std::fs::remove_file(&ready);
            println!("ember node started (pid {}).", info.pid);
            println!("  address:  {}", info.address);
            println!("  session:  {}", info.session_dir.display());
            if cfg.head {
                match &cfg.head_storage {
                    Some(storage) => println!("  head tables: kept in {storage}"),
                    None => println!(
                        "  head tables: in memory (lost if the head restarts; --storage PATH or \
                         redis://HOST:PORT keeps them)"
                    ),
                }
            }
            println!(
                "Connect from Python with ember.init(address=\"auto\"); stop with `ember stop`."
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the node exited during startup ({status}); see {}",
                log_path.display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the node did not become ready within 30 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rand_suffix() -> String {
    use std::time::SystemTime;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}

fn stop() -> anyhow::Result<()> {
    let root = config::default_session_root();
    let sessions = session::live_sessions(&root);
    if sessions.is_empty() {
        println!("no running ember nodes found under {}", root.display());
        return Ok(());
    }
    for s in &sessions {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(s.pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &sessions {
        while session::process_alive(s.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if session::process_alive(s.pid) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(s.pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(s.session_dir.join("session.json"));
        println!("stopped ember node pid {} ({})", s.pid, s.address);
    }
    Ok(())
}

/// The cluster status from the node at `address` (or the latest local session).
fn fetch_status(address: Option<String>) -> anyhow::Result<ember_proto::v1::ClusterStatus> {
    let root = config::default_session_root();
    let sessions = session::live_sessions(&root);
    let session = match &address {
        Some(addr) if addr != "auto" => sessions.iter().find(|s| &s.address == addr),
        _ => sessions.first(),
    };
    let Some(session) = session else {
        bail!(
            "no running ember cluster found (looked in {}); start one with `ember start --head`",
            root.display()
        );
    };
    let token = std::env::var("EMBER_TOKEN").unwrap_or_else(|_| session.token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", session.address))?
                .connect()
                .await
                .with_context(|| format!("cannot reach the node at {}", session.address))?;
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
        let mut client = ember_proto::v1::node_service_client::NodeServiceClient::with_interceptor(
            channel,
            move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", auth.clone());
                Ok(req)
            },
        );
        let reply = client
            .get_cluster_status(ember_proto::v1::GetClusterStatusRequest {})
            .await?;
        anyhow::Ok(reply.into_inner().status.unwrap_or_default())
    })
}
