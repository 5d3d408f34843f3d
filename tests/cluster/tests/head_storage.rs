//! The head's tables on file storage (`--storage DIR`), with real
//! processes: a second head on the storage a live head holds is refused
//! with an error naming the holder; a head killed with SIGKILL and
//! restarted on it finds its tables again (the nodes it knew, the dead
//! head's node among them) and its nodes stay members.

use std::time::Duration;

use ember_cluster_tests::{describe, ClusterOptions, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn a_head_restarted_on_its_storage_finds_its_tables_and_a_second_head_is_refused() {
    let storage = tempfile::tempdir().expect("tempdir");
    let dir = storage.path().join("head-tables");
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut cluster =
        TestCluster::start(ClusterOptions::new(2).head_args(["--storage", dir_arg.as_str()]));
    let old_head = cluster.head().node_id_bytes();

    // A second head on the same storage: refused at once, saying who holds it.
    let other = std::process::Command::new(cluster.bin())
        .args([
            "start",
            "--head",
            "--block",
            "--port",
            "0",
            "--storage",
            dir_arg.as_str(),
        ])
        .env("EMBER_TMPDIR", cluster.root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second head");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success(), "a second head started: {stderr}");
    assert!(
        stderr.contains("in use by another head") && stderr.contains(cluster.head().address()),
        "{stderr}"
    );

    cluster.kill_head();
    cluster.restart_head(Vec::<String>::new());
    let head = cluster.head();
    assert_ne!(head.node_id_bytes(), old_head);
    // The restarted head knew the old head's node from its storage: it is
    // declared dead once its beats are missed, while both nodes, which go
    // on heartbeating, stay alive.
    let status = cluster.wait_for(TIMEOUT, "the old head's node declared dead", || {
        let status = cluster.status(head)?;
        let old = status
            .nodes
            .iter()
            .find(|n| n.node_id.as_ref() == old_head.as_slice());
        match old {
            Some(n) if !n.alive => Ok(status),
            _ => Err(describe(&status)),
        }
    });
    for node in cluster.nodes() {
        let info = status
            .nodes
            .iter()
            .find(|n| n.node_id.as_ref() == node.node_id_bytes().as_slice())
            .unwrap_or_else(|| panic!("{} missing: {}", node.name(), describe(&status)));
        assert!(info.alive, "{}", describe(&status));
    }
    assert_eq!(
        status.nodes.iter().filter(|n| n.alive).count(),
        3,
        "{}",
        describe(&status)
    );
}
