//! The worker pool task: runs the Python fork server (a process that has
//! already imported numpy, cloudpickle and ember) and turns `PoolCommand`s
//! into forks. Forking a warm process takes milliseconds where a fresh
//! interpreter takes most of a second.
//!
//! Fork server protocol (line-delimited JSON): it prints `{"ready": true}`
//! once imported; the pool writes `{"op": "fork", "worker_id": hex, "env": {}}`;
//! it answers `{"worker_id": hex, "pid": n}` and reports each child's exit
//! as `{"exited": pid, "status": code}`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_proto::WorkerId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::node::{NodeCore, PoolCommand};

#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub python: PathBuf,
    pub socket: PathBuf,
    pub token: String,
    pub session_dir: PathBuf,
}

/// Run the pool until shutdown. Restarts the fork server if it dies.
pub async fn run_pool(
    core: Arc<Mutex<NodeCore>>,
    cfg: PoolConfig,
    mut commands: mpsc::UnboundedReceiver<PoolCommand>,
    shutdown: CancellationToken,
) {
    let log_path = cfg.session_dir.join("logs").join("workers.log");
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let outcome = run_fork_server(&core, &cfg, &log_path, &mut commands, &shutdown).await;
        match outcome {
            Ok(()) => return,
            Err(why) => {
                tracing::error!(%why, "worker fork server failed");
                let tail = log_tail(&log_path);
                core.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fork_server_died(format!("{why}; last worker log lines:\n{tail}"));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One life of the fork server. Ok on shutdown, Err when it died.
async fn run_fork_server(
    core: &Arc<Mutex<NodeCore>>,
    cfg: &PoolConfig,
    log_path: &std::path::Path,
    commands: &mut mpsc::UnboundedReceiver<PoolCommand>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let mut command = tokio::process::Command::new(&cfg.python);
    // SAFETY: prctl is async-signal-safe; it makes the fork server (and,
    // through the same setting in it, every worker) die with this node even
    // when the node is killed with SIGKILL.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .args(["-m", "ember._private.forkserver"])
        .env("EMBER_NODE_SOCKET", &cfg.socket)
        .env("EMBER_TOKEN", &cfg.token)
        .env("EMBER_SESSION_DIR", &cfg.session_dir)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the worker fork server {}: {e}",
                cfg.python.display()
            )
        })?;
    let mut stdin = child.stdin.take().ok_or("fork server has no stdin")?;
    let stdout = child.stdout.take().ok_or("fork server has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut ready = false;
    let mut backlog: Vec<WorkerId> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = child.start_kill();
                return Ok(());
            }
            cmd = commands.recv() => {
                let Some(PoolCommand::Spawn(id)) = cmd else { return Ok(()) };
                if !ready {
                    backlog.push(id);
                    continue;
                }
                write_fork(&mut stdin, id).await?;
            }
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) | Err(_) => {
                        let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                        // Spawns still in `backlog` are forgotten by the core
                        // (fork_server_died), which asks again.
                        return Err(format!("the worker fork server exited ({status})"));
                    }
                };
                let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                    tracing::debug!(%line, "fork server said something that is not JSON");
                    continue;
                };
                if msg.get("ready").is_some() {
                    ready = true;
                    for id in std::mem::take(&mut backlog) {
                        write_fork(&mut stdin, id).await?;
                    }
                } else if let Some(pid) = msg.get("exited").and_then(|p| p.as_u64()) {
                    let status = msg.get("status").and_then(|s| s.as_i64()).unwrap_or(-1);
                    core.lock().unwrap_or_else(|e| e.into_inner()).worker_process_exited(pid as u32, status as i32);
                } else if let (Some(id), Some(pid)) = (
                    msg.get("worker_id").and_then(|w| w.as_str()).and_then(|w| WorkerId::from_hex(w).ok()),
                    msg.get("pid").and_then(|p| p.as_u64()),
                ) {
                    core.lock().unwrap_or_else(|e| e.into_inner()).worker_forked(id, pid as u32);
                }
            }
        }
    }
}

async fn write_fork(stdin: &mut tokio::process::ChildStdin, id: WorkerId) -> Result<(), String> {
    let line = format!(
        "{{\"op\": \"fork\", \"worker_id\": \"{}\", \"env\": {{}}}}\n",
        id.hex()
    );
    stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("cannot talk to the worker fork server: {e}"))?;
    stdin
        .flush()
        .await
        .map_err(|e| format!("cannot talk to the worker fork server: {e}"))
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    String::from_utf8_lossy(&text[start..]).into_owned()
}
