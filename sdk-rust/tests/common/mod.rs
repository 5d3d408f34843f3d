//! A real ember node for the integration tests: `ember start --head
//! --block` in a fresh session root, stopped (SIGTERM, then SIGKILL) when
//! the handle is dropped. The binary is `$EMBER_BIN`, else the workspace's
//! `.venv/bin/ember` (made by `make build`), else `target/release/ember`.
//! The node also stops by itself when this process ends (`--exit-with-stdin`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember::{Options, SessionInfo};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sdk-rust is in the workspace")
        .to_path_buf()
}

pub fn ember_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EMBER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let venv = workspace().join(".venv/bin/ember");
    if venv.exists() {
        return venv;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("release/ember")
}

/// The Python of the workspace's venv (with the SDK), else `$EMBER_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EMBER_PYTHON").filter(|b| !b.is_empty()) {
        return PathBuf::from(p);
    }
    workspace().join(".venv/bin/python")
}

pub struct TestNode {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub info: SessionInfo,
    log: PathBuf,
}

impl TestNode {
    /// A head node with 2 CPUs and a 256 MiB object store.
    pub fn start() -> TestNode {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> TestNode {
        let dir = tempfile::Builder::new()
            .prefix("ember-rust-sdk-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("sessions");
        let ready = dir.path().join("ready.json");
        let log = dir.path().join("node.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let bin = ember_bin();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "start",
            "--head",
            "--block",
            "--port",
            "0",
            "--num-cpus",
            "2",
        ])
        .args(if extra.contains(&"--object-store-memory") {
            Vec::new()
        } else {
            vec![
                "--object-store-memory".to_string(),
                (256u64 << 20).to_string(),
            ]
        })
        .args([
            "--prestart-workers",
            "0",
            "--exit-with-stdin",
            "--ready-file",
        ])
        .arg(&ready)
        .args(extra)
        .env("EMBER_TMPDIR", &root)
        .env_remove("EMBER_ADDRESS")
        .env_remove("EMBER_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file);
        let python = python();
        if python.exists() {
            cmd.env("EMBER_PYTHON", &python);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (run `make build` or set EMBER_BIN)",
                bin.display()
            )
        });
        let mut node = TestNode {
            child: Some(child),
            dir,
            root,
            info: SessionInfo {
                address: String::new(),
                socket: PathBuf::new(),
                token: String::new(),
                session_dir: PathBuf::new(),
                pid: 0,
                node_id: String::new(),
                shm_path: PathBuf::new(),
            },
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(info) = SessionInfo::read(&ready) {
                node.info = info;
                break;
            }
            if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "the node exited ({status}) before it was ready:\n{}",
                    node.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!("the node was not ready within 60 s:\n{}", node.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// Options that find this node through its session root.
    pub fn options(&self) -> Options {
        Options {
            session_root: Some(self.root.clone()),
            ..Default::default()
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- node log ---\n{}", self.log_tail());
        }
        self.stop();
    }
}

/// A serving process started for a test (the example worker, a Go worker,
/// a Python program): it printed `ready`; killed (SIGKILL) when dropped.
pub struct ServingProcess {
    child: Child,
    what: String,
}

impl ServingProcess {
    /// Run `cmd` against the node of the session root `root` (a
    /// [`TestNode`]'s, in `EMBER_TMPDIR`) and wait up to `timeout` for the
    /// line `ready` on its stdout. Blocks: async tests use [`Self::spawn`].
    pub fn start(mut cmd: Command, root: &Path, what: &str, timeout: Duration) -> Self {
        cmd.env("EMBER_TMPDIR", root)
            .env_remove("EMBER_ADDRESS")
            .env_remove("EMBER_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so that the process never blocks on stdout.
            for _ in lines {}
        });
        let mut process = ServingProcess {
            child,
            what: what.to_string(),
        };
        match rx.recv_timeout(timeout) {
            Ok(Some(Ok(line))) if line.trim() == "ready" => process,
            other => {
                let status = process.child.try_wait();
                panic!(
                    "{what} did not print `ready` within {timeout:?}: {other:?} (exit: {status:?})"
                )
            }
        }
    }

    /// [`Self::start`] on tokio's blocking pool.
    pub async fn spawn(cmd: Command, node: &TestNode, what: &str, timeout: Duration) -> Self {
        let root = node.root.clone();
        let what = what.to_string();
        tokio::task::spawn_blocking(move || Self::start(cmd, &root, &what, timeout))
            .await
            .unwrap_or_else(|e| panic!("starting a serving process: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM it and wait for its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for ServingProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The example worker (`examples/worker.rs`): `$EMBER_RUST_WORKER`, else
/// the one `cargo test` built beside this test (`target/<profile>/examples`).
pub fn example_worker() -> PathBuf {
    if let Some(p) = std::env::var_os("EMBER_RUST_WORKER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lies in target/<profile>/deps");
    let path = profile_dir.join("examples/worker");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p ember --example worker` \
         (cargo test builds it when run for the whole crate), or set EMBER_RUST_WORKER",
        path.display()
    );
    path
}

/// Wait (up to a minute) until `done()` holds, looking every 20 ms.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
