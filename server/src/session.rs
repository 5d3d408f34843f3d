//! Session files: the directory a running cluster keeps under the session
//! root, the token, and how `ember stop/status` and the SDKs find it.
//!
//! Layout: `<root>/session_<time>_<pid>/` (mode 0700) holds `session.json`
//! (mode 0600: address, socket, token, pid), `node.sock`, and `logs/`.
//! `<root>/session_latest` links to the newest session.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a client needs to reach a cluster (the contents of session.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    /// gRPC + Flight address, host:port.
    pub address: String,
    /// Unix socket for local clients.
    pub socket: PathBuf,
    pub token: String,
    pub session_dir: PathBuf,
    pub pid: u32,
    pub node_id: String,
    pub shm_path: PathBuf,
}

/// A fresh random token (32 hex chars).
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Create `<root>/session_<time>_<pid>` with mode 0700.
pub fn create_session_dir(root: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = root.join(format!("session_{}_{}", secs, std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Write `info` to `path` readable by this user alone, atomically.
pub fn write_session_file(path: &Path, info: &SessionInfo) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(info)?.as_bytes())?;
        f.sync_all().ok();
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

/// Point `<root>/session_latest` at `dir`.
pub fn link_latest(root: &Path, dir: &Path) -> std::io::Result<()> {
    let link = root.join("session_latest");
    let tmp = root.join(format!(".session_latest.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir, &tmp)?;
    std::fs::rename(&tmp, link)
}

pub fn read_session_file(path: &Path) -> anyhow::Result<SessionInfo> {
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str(&text)?)
}

/// Sessions under `root` whose daemon process is still alive, newest first.
pub fn live_sessions(root: &Path) -> Vec<SessionInfo> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("session_") || name == "session_latest" {
            continue;
        }
        let file = entry.path().join("session.json");
        if let Ok(info) = read_session_file(&file) {
            if process_alive(info.pid) {
                found.push(info);
            }
        }
    }
    found.sort_by(|a, b| b.session_dir.cmp(&a.session_dir));
    found
}

pub fn process_alive(pid: u32) -> bool {
    // 0 and negative values name process groups, 1 is init: never ours.
    if pid <= 1 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as i32, 0) } != 0 {
        return false;
    }
    // A killed node nobody has reaped yet is a zombie: not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

/// Remove shared-memory arenas left by sessions whose daemon died without
/// cleaning up (killed with SIGKILL).
pub fn remove_stale_arenas(shm_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(shm_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        // ember-<pid>-<rand>-arena
        let Some(rest) = name.strip_prefix("ember-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_file_is_private_and_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let dir = create_session_dir(root.path()).unwrap();
        let info = SessionInfo {
            address: "127.0.0.1:1234".into(),
            socket: dir.join("node.sock"),
            token: new_token(),
            session_dir: dir.clone(),
            pid: std::process::id(),
            node_id: "ab".into(),
            shm_path: "/dev/shm/x".into(),
        };
        let path = dir.join("session.json");
        write_session_file(&path, &info).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        link_latest(root.path(), &dir).unwrap();
        let back = read_session_file(&root.path().join("session_latest/session.json")).unwrap();
        assert_eq!(back.token, info.token);
        assert_eq!(live_sessions(root.path()).len(), 1);
    }
}
