//! ember's node daemon and head.
//!
//! - [`config`]: `NodeConfig`, the daemon's settings and their defaults.
//! - [`session`]: the session directory, token and `session.json` that
//!   clients and `ember stop/status` use to find a cluster.
//! - [`node`]: `NodeCore`, the owner-side task manager, object directory,
//!   local scheduler and worker bookkeeping (the task lifecycle is described
//!   there).
//! - [`resources`]: fixed-point resource accounting and GPU instances.
//! - [`worker_pool`]: runs the Python fork server and forks workers.
//! - [`local`]: the Unix-socket transport for local drivers and workers.
//! - [`grpc`]: the TCP port: `NodeService`, `HeadService`, Arrow Flight,
//!   behind the token check.
//! - [`head`]: the control plane (membership, function table, KV).
//! - [`membership`]: heartbeats to the head, joining and rejoining a cluster.
//! - [`gpu`]: GPU detection through cudarc, loaded at run time.
//! - [`status`]: `ember status` output.
//! - [`error`]: `NodeError` and its conversion to `tonic::Status`.

pub mod config;
pub mod error;
pub mod gpu;
pub mod grpc;
pub mod head;
pub mod head_link;
pub mod head_store;
pub mod keep_awake;
pub mod local;
pub mod membership;
pub mod node;
pub mod outbox;
pub mod peers;
pub mod resources;
pub mod session;
pub mod status;
pub mod worker_pool;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ember_flight_store::{SpillConfig, Store, StoreConfig};
use ember_proto::NodeId;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::NodeConfig;
pub use session::SessionInfo;

/// Bytes of the arena pre-allocated at start so the first puts write into
/// memory that is already there.
const PREFAULT_BYTES: u64 = 256 << 20;

/// Run a node (and the head, when configured) on an already-bound TCP
/// listener until `shutdown` is cancelled. Writes the session file and the
/// ready file once it serves.
pub async fn run_node(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?.to_string();
    // The head's storage first: a second head on it stops here, before
    // anything is made.
    let storage = match (config.head, &config.head_storage) {
        (true, Some(spec)) => Some(head_store::open(spec, &address)?),
        _ => None,
    };
    let session_dir = session::create_session_dir(&config.session_root).with_context(|| {
        format!(
            "cannot create a session under {}",
            config.session_root.display()
        )
    })?;
    // A head restarted on its storage keeps its token, so that its nodes
    // and drivers get back in.
    let stored_token = storage.as_ref().and_then(|(_, entries)| {
        entries
            .iter()
            .find(|(table, key, _)| table == "meta" && key == b"token")
            .map(|(_, _, value)| String::from_utf8_lossy(value).into_owned())
    });
    let token = config
        .token
        .clone()
        .or(stored_token)
        .unwrap_or_else(session::new_token);
    let node_id = NodeId::random();

    session::remove_stale_arenas(std::path::Path::new("/dev/shm"));
    let spill_dir = match &config.spill_dir {
        Some(dir) => dir.join(format!("ember-spill-{}", &node_id.hex()[..12])),
        None => session_dir.join("spill"),
    };
    let arena_path = PathBuf::from(format!(
        "/dev/shm/ember-{}-{}-arena",
        std::process::id(),
        &node_id.hex()[..8]
    ));
    let store = Arc::new(
        Store::new(StoreConfig {
            arena_path: arena_path.clone(),
            capacity: config.object_store_memory,
            prefault_bytes: PREFAULT_BYTES.min(config.object_store_memory),
            spill: Some(SpillConfig {
                dir: spill_dir.clone(),
                max_disk_fraction: config.spill_disk_max_fraction,
            }),
        })
        .with_context(|| format!("cannot create the object store at {}", arena_path.display()))?,
    );

    let socket = session_dir.join("node.sock");
    let unix =
        UnixListener::bind(&socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;

    let (pool_tx, pool_rx) = tokio::sync::mpsc::unbounded_channel();
    let (restore_tx, restore_rx) = tokio::sync::mpsc::unbounded_channel();
    let (peer_tx, peer_rx) = tokio::sync::mpsc::unbounded_channel();
    let core_cfg = node::CoreConfig {
        token: token.clone(),
        max_inline_bytes: config.max_inline_bytes,
        pipeline_depth: config.pipeline_depth,
        pipeline_window: Duration::from_micros(config.pipeline_window_us),
        prestart_workers: config.prestart_workers,
        max_workers: (config.num_cpus.ceil() as usize).max(1) * 4 + 16,
        session_dir: session_dir.clone(),
        node_address: address.clone(),
        object_store_wait: Duration::from_millis(config.object_store_wait_ms),
        is_head: config.head,
    };
    let core = Arc::new(Mutex::new(node::NodeCore::new(
        node_id,
        core_cfg,
        &config,
        store.clone(),
        pool_tx,
        restore_tx,
        peer_tx,
    )?));
    let head = match (config.head, storage) {
        (false, _) => None,
        (true, None) => {
            tracing::info!(
                "the head keeps its tables in memory (start it with --storage PATH or \
                 --storage redis://HOST:PORT to keep them across restarts)"
            );
            Some(Arc::new(head::Head::new(
                Duration::from_millis(config.heartbeat_interval_ms),
                config.node_death_beats,
            )))
        }
        (true, Some((backend, entries))) => {
            let head = head::Head::with_storage(
                Duration::from_millis(config.heartbeat_interval_ms),
                config.node_death_beats,
                backend,
                entries,
            );
            head.remember_token(&token);
            Some(Arc::new(head))
        }
    };
    if let Some(head) = &head {
        head.register_node(local::lock(&core).node_info());
    }
    // A node joining a cluster: a wrong token stops it here; an unreachable
    // head is retried in the background.
    let joined = match &config.head_address {
        Some(address) => match membership::register(&core, address, &token).await {
            Ok(joined) => Some(joined),
            Err(error @ membership::JoinError::Refused { .. }) => return Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, "starting without the head; joining in the background");
                None
            }
        },
        None => None,
    };

    let tracker = TaskTracker::new();
    tracker.spawn(peers::run_peers(
        core.clone(),
        store.clone(),
        token.clone(),
        config.max_inline_bytes as usize,
        peer_rx,
        shutdown.clone(),
    ));
    if let Some(head) = &head {
        tracker.spawn(membership::run_head_monitor(
            core.clone(),
            head.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(address) = &config.head_address {
        tracker.spawn(membership::join_cluster(
            core.clone(),
            address.clone(),
            token.clone(),
            joined,
            shutdown.clone(),
        ));
    }
    {
        // The actor directory: the head's address (this node's own when
        // it is the head).
        let head_address = config
            .head_address
            .clone()
            .unwrap_or_else(|| address.clone());
        let (head_tx, head_rx) = tokio::sync::mpsc::unbounded_channel();
        local::lock(&core).set_head_link(head_tx);
        tracker.spawn(head_link::run_head_link(
            core.clone(),
            head_address,
            token.clone(),
            head_rx,
            shutdown.clone(),
        ));
    }
    tracker.spawn(node::run_store_events(
        core.clone(),
        store.clone(),
        restore_rx,
        Duration::from_millis(config.object_store_wait_ms),
        shutdown.clone(),
    ));
    tracker.spawn(local::serve_local(
        unix,
        core.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    {
        let (core, head, token, shutdown) =
            (core.clone(), head.clone(), token.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = grpc::serve_grpc(listener, core, head, &token, shutdown.clone()).await {
                tracing::error!(error = %e, "gRPC server failed");
                shutdown.cancel();
            }
        });
    }
    let pool_cfg = worker_pool::PoolConfig {
        python: config.python.clone(),
        socket: socket.clone(),
        token: token.clone(),
        session_dir: session_dir.clone(),
    };
    tracker.spawn(worker_pool::run_pool(
        core.clone(),
        pool_cfg,
        pool_rx,
        shutdown.clone(),
    ));
    {
        let (core, shutdown) = (core.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => local::lock(&core).tick(std::time::Instant::now()),
                }
            }
        });
    }
    if config.exit_with_stdin {
        let shutdown = shutdown.clone();
        // A blocking read on a thread of its own: stdin closing means the
        // driver that started this node is gone.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
            tracing::info!("stdin closed: stopping");
            shutdown.cancel();
        });
    }

    let info = SessionInfo {
        address: address.clone(),
        socket: socket.clone(),
        token,
        session_dir: session_dir.clone(),
        pid: std::process::id(),
        node_id: node_id.hex(),
        shm_path: arena_path,
    };
    let session_file = session_dir.join("session.json");
    session::write_session_file(&session_file, &info)?;
    session::link_latest(&config.session_root, &session_dir)?;
    if let Some(ready) = &config.ready_file {
        session::write_session_file(ready, &info)?;
    }
    local::lock(&core).prestart();
    tracing::info!(%address, session = %session_dir.display(), "ember node ready");

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let pids = local::lock(&core).begin_shutdown();
    for pid in pids {
        node::signal_worker(pid, libc::SIGKILL);
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5 s");
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&session_file);
    drop(core);
    drop(store);
    Ok(())
}
