//! Finding a node: options, environment, session files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Result};

/// How to reach a node. Everything is optional: by default the newest live
/// session under the session root is used.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The node's address (`host:port`), else `$EMBER_ADDRESS`. A node of
    /// this machine with that address is reached over its Unix socket; any
    /// other over gRPC (`NodeService.OpenStream`).
    pub address: Option<String>,
    /// The cluster token, else `$EMBER_TOKEN`, else the session file's.
    pub token: Option<String>,
    /// Where session directories live, else `$EMBER_TMPDIR`, else
    /// `/tmp/ember-<uid>`.
    pub session_root: Option<PathBuf>,
    /// Connect to this Unix socket (a node's `node.sock`) directly.
    pub socket: Option<PathBuf>,
    /// Use gRPC even when the node runs on this machine.
    pub force_remote: bool,
    /// The namespace of named actors (the node's default when `None`).
    pub namespace: Option<String>,
    /// How long connecting may take (default 30 s).
    pub connect_timeout: Option<Duration>,
}

impl Options {
    /// Options for the node at `address` (`host:port`).
    pub fn address(address: impl Into<String>) -> Self {
        Options {
            address: Some(address.into()),
            ..Default::default()
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_session_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.session_root = Some(root.into());
        self
    }
}

/// What `session.json` holds (the fields the SDK uses).
#[derive(Clone, Debug, Deserialize)]
pub struct SessionInfo {
    pub address: String,
    pub socket: PathBuf,
    pub token: String,
    #[serde(default)]
    pub session_dir: PathBuf,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub shm_path: PathBuf,
}

impl SessionInfo {
    /// Read a session file (or a node's ready file: the same JSON).
    pub fn read(path: &Path) -> Result<SessionInfo> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Connection(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Connection(format!("malformed session file {}: {e}", path.display()))
        })
    }
}

/// Where the SDK will connect.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Local { socket: PathBuf, token: String },
    Remote { address: String, token: String },
}

/// `$EMBER_TMPDIR`, else `/tmp/ember-<uid>` (as the node uses).
pub fn default_session_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMBER_TMPDIR") {
        if !dir.is_empty() {
            return PathBuf::from(dir);
        }
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/ember-{uid}"))
}

/// Sessions under `root` whose node process is alive, newest first.
pub fn live_sessions(root: &Path) -> Vec<SessionInfo> {
    let mut found: Vec<(String, SessionInfo)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("session_") || name == "session_latest" {
            continue;
        }
        if let Ok(info) = SessionInfo::read(&entry.path().join("session.json")) {
            if process_alive(info.pid) {
                found.push((name.to_string(), info));
            }
        }
    }
    // session_<millis>_<pid>: newest first by time, then name.
    found.sort_by(|(a, _), (b, _)| session_time(b).cmp(&session_time(a)).then(b.cmp(a)));
    found.into_iter().map(|(_, info)| info).collect()
}

fn session_time(name: &str) -> u128 {
    name.strip_prefix("session_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Whether `pid` is a live process (not a zombie).
pub fn process_alive(pid: u32) -> bool {
    if pid <= 1 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as i32, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolve options, environment and session files into a target.
pub(crate) fn resolve(opts: &Options) -> Result<Target> {
    let token = opts.token.clone().or_else(|| env("EMBER_TOKEN"));
    if let Some(socket) = &opts.socket {
        let token = token.ok_or_else(|| {
            Error::Connection(
                "a socket was given without a token (Options.token or EMBER_TOKEN)".into(),
            )
        })?;
        return Ok(Target::Local {
            socket: socket.clone(),
            token,
        });
    }
    let address = opts
        .address
        .clone()
        .or_else(|| env("EMBER_ADDRESS"))
        .map(|a| {
            a.trim_start_matches("ember://")
                .trim_start_matches("grpc://")
                .to_string()
        })
        .filter(|a| a != "auto");
    let root = opts
        .session_root
        .clone()
        .unwrap_or_else(default_session_root);
    let sessions = live_sessions(&root);
    let local = match &address {
        Some(addr) => sessions.into_iter().find(|s| &s.address == addr),
        None => sessions.into_iter().next(),
    };
    match (local, address) {
        (Some(s), _) if !opts.force_remote => Ok(Target::Local {
            token: token.unwrap_or(s.token),
            socket: s.socket,
        }),
        (Some(s), _) => Ok(Target::Remote {
            token: token.unwrap_or(s.token),
            address: s.address,
        }),
        (None, Some(address)) => {
            let token = token.ok_or_else(|| {
                Error::Connection(format!(
                    "no session of a node at {address} under {} and no token: set EMBER_TOKEN \
                     (or Options.token) to reach a remote node",
                    root.display()
                ))
            })?;
            Ok(Target::Remote { address, token })
        }
        (None, None) => Err(Error::Connection(format!(
            "no running ember node found: no live session under {} (start one with \
             `ember start --head`, or set EMBER_ADDRESS and EMBER_TOKEN, or EMBER_TMPDIR \
             to the session root the node uses)",
            root.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_session(root: &Path, name: &str, address: &str, pid: u32) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let json = serde_json::json!({
            "address": address,
            "socket": dir.join("node.sock"),
            "token": format!("token-{name}"),
            "session_dir": dir,
            "pid": pid,
            "node_id": "00",
            "shm_path": "/dev/shm/none",
        });
        std::fs::write(dir.join("session.json"), json.to_string()).unwrap();
    }

    #[test]
    fn the_newest_live_session_is_used_and_an_address_picks_its_own() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        write_session(root.path(), "session_1000_1", "127.0.0.1:1", me);
        write_session(root.path(), "session_3000_3", "127.0.0.1:3", me);
        write_session(root.path(), "session_2000_2", "127.0.0.1:2", me);
        // Newer, but its process is gone.
        write_session(root.path(), "session_9000_9", "127.0.0.1:9", u32::MAX - 1);
        let opts = Options {
            session_root: Some(root.path().to_path_buf()),
            token: Some("given".into()),
            ..Default::default()
        };
        let Target::Local { socket, token } = resolve(&opts).unwrap() else {
            panic!("expected a local target");
        };
        assert!(socket.starts_with(root.path().join("session_3000_3")));
        assert_eq!(token, "given");

        let opts = Options {
            session_root: Some(root.path().to_path_buf()),
            address: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let Target::Local { socket, token } = resolve(&opts).unwrap() else {
            panic!("expected a local target");
        };
        assert!(socket.starts_with(root.path().join("session_2000_2")));
        assert_eq!(token, "token-session_2000_2");

        // The dead node's address: remote, which needs a token.
        let opts = Options {
            session_root: Some(root.path().to_path_buf()),
            address: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        if std::env::var_os("EMBER_TOKEN").is_none() {
            assert!(matches!(resolve(&opts), Err(Error::Connection(_))));
        }
        let opts = Options {
            token: Some("t".into()),
            ..opts
        };
        let Target::Remote { address, token } = resolve(&opts).unwrap() else {
            panic!("expected a remote target");
        };
        assert_eq!((address.as_str(), token.as_str()), ("127.0.0.1:9", "t"));
    }
}
