//! Cluster membership with real `ember` processes on 127.0.0.x: nodes join
//! a head and every node sees the whole cluster, a node killed with SIGKILL
//! is declared dead while the others stay alive, a wrong token is refused,
//! and nodes rejoin a head restarted on the same port.
//!
//! Needs the release binary (`make build`); see `ember_cluster_tests`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ember_cluster_tests::{
    alive_by_address, describe, live_totals, node_at, ClusterOptions, TestCluster,
};

/// Generous: these tests share two cores with each other and with builds.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The view `node` reports: every address it lists and whether it is alive.
fn view(cluster: &TestCluster, node: &ember_cluster_tests::Node) -> BTreeMap<String, bool> {
    alive_by_address(&cluster.status(node).expect("GetClusterStatus"))
}

#[test]
fn nodes_join_and_every_node_sees_the_whole_cluster() {
    let cluster = TestCluster::start(
        ClusterOptions::new(2)
            .node_args(1, ["--num-cpus", "2", "--resources", r#"{"special": 2}"#]),
    );
    let (head, first, second) = (cluster.head(), cluster.node(0), cluster.node(1));
    assert!(head.address().starts_with("127.0.0.1:"), "{head:?}");
    assert!(first.address().starts_with("127.0.0.2:"), "{first:?}");
    assert!(second.address().starts_with("127.0.0.3:"), "{second:?}");

    let expected: BTreeMap<String, bool> = cluster
        .all()
        .map(|n| (n.address().to_string(), true))
        .collect();
    // Each node learns the cluster from its heartbeats, so a node's view
    // may lag the head's by a beat or two.
    for node in cluster.all() {
        let status = cluster.wait_for(
            JOIN_TIMEOUT,
            &format!("{} to see three live nodes", node.name()),
            || {
                let status = cluster.status(node)?;
                if alive_by_address(&status) == expected {
                    Ok(status)
                } else {
                    Err(describe(&status))
                }
            },
        );
        let totals = live_totals(&status);
        assert_eq!(totals.get("CPU"), Some(&4.0), "{}", describe(&status));
        assert_eq!(totals.get("special"), Some(&2.0), "{}", describe(&status));
        // `--num-gpus 0` (the default here): none, whatever the machine has.
        assert_eq!(
            totals.get("GPU").copied().unwrap_or(0.0),
            0.0,
            "{}",
            describe(&status)
        );
        // Each listed node is the process at that address, with its own
        // resources; exactly one is the head.
        for member in cluster.all() {
            let info = node_at(&status, member.address()).expect("listed");
            assert_eq!(
                info.node_id,
                member.node_id_bytes(),
                "{}",
                describe(&status)
            );
            assert_eq!(
                info.is_head,
                member.name() == "head",
                "{}",
                describe(&status)
            );
        }
        let special = node_at(&status, second.address()).expect("listed");
        assert_eq!(special.resources_total.get("special"), Some(&2.0));
        assert_eq!(special.resources_total.get("CPU"), Some(&2.0));
        let plain = node_at(&status, first.address()).expect("listed");
        assert_eq!(plain.resources_total.get("special"), None);
        assert_eq!(plain.resources_total.get("CPU"), Some(&1.0));
    }
}

#[test]
fn a_killed_node_is_declared_dead_and_the_others_stay_alive() {
    let cluster = TestCluster::start(ClusterOptions::new(2));
    let window = cluster.options().death_window();
    let (head, survivor, victim) = (cluster.head(), cluster.node(0), cluster.node(1));
    let victim_address = victim.address().to_string();

    let killed = Instant::now();
    cluster.kill(1);
    assert!(!victim.is_running());
    let status = cluster.wait_for(
        window + Duration::from_secs(10),
        "the head to declare the killed node dead",
        || {
            let status = cluster.status(head)?;
            match node_at(&status, &victim_address) {
                Some(n) if !n.alive => Ok(status),
                _ => Err(describe(&status)),
            }
        },
    );
    let took = killed.elapsed();
    eprintln!("declared dead {took:?} after SIGKILL (window {window:?})");
    assert_eq!(
        alive_by_address(&status),
        BTreeMap::from([
            (head.address().to_string(), true),
            (survivor.address().to_string(), true),
            (victim_address.clone(), false),
        ]),
        "{}",
        describe(&status)
    );
    assert_eq!(
        live_totals(&status).get("CPU"),
        Some(&2.0),
        "{}",
        describe(&status)
    );

    // The news reaches the other node with its next heartbeat answer.
    cluster.wait_for(
        window + Duration::from_secs(10),
        "the surviving node to see the death",
        || {
            let status = cluster.status(survivor)?;
            match node_at(&status, &victim_address) {
                Some(n) if !n.alive => Ok(()),
                _ => Err(describe(&status)),
            }
        },
    );

    // The survivors keep beating: for two more windows the head never
    // declares them dead.
    let until = Instant::now() + 2 * window;
    while Instant::now() < until {
        let now = view(&cluster, head);
        assert_eq!(now.get(head.address()), Some(&true), "{now:?}");
        assert_eq!(
            now.get(survivor.address()),
            Some(&true),
            "{now:?}\n{}",
            cluster.logs()
        );
        assert_eq!(now.get(&victim_address), Some(&false), "{now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(survivor.is_running() && head.is_running());
}

#[test]
fn a_node_with_a_wrong_token_is_refused() {
    let mut cluster = TestCluster::start(ClusterOptions::new(1));
    let i = cluster.spawn_node(["--token", "not-the-cluster-token"]);
    let intruder = cluster.node(i);
    let Some(status) = intruder.wait_exit(Duration::from_secs(60)) else {
        panic!(
            "a node with a wrong token is still running after 60 s\n{}",
            cluster.logs()
        );
    };
    assert!(
        !status.success(),
        "the refused node exited with {status}\n{}",
        intruder.describe_log()
    );
    assert!(!intruder.is_ready(), "{}", intruder.describe_log());
    let log = intruder.log().to_lowercase();
    assert!(
        log.contains("refused") && log.contains("token"),
        "the log does not say why:\n{}",
        intruder.describe_log()
    );

    // The cluster is as it was: the head and its one node, alive.
    let now = view(&cluster, cluster.head());
    assert_eq!(
        now,
        BTreeMap::from([
            (cluster.head().address().to_string(), true),
            (cluster.node(0).address().to_string(), true),
        ]),
    );
    assert!(
        !now.keys()
            .any(|a| a.starts_with(&format!("{}:", intruder.ip()))),
        "{now:?}"
    );
}

#[test]
fn nodes_rejoin_a_head_restarted_on_the_same_port() {
    let mut cluster = TestCluster::start(ClusterOptions::new(2));
    let window = cluster.options().death_window();
    let address = cluster.head().address().to_string();
    let old_head = cluster.head().node_id().to_string();

    cluster.kill_head();
    // Without a head the nodes keep running (and keep trying to reach it).
    std::thread::sleep(window);
    for node in cluster.nodes() {
        assert!(node.is_running(), "{}", node.describe_log());
    }

    cluster.restart_head(Vec::<String>::new());
    let head = cluster.head();
    assert_eq!(head.address(), address);
    assert_ne!(head.node_id(), old_head, "a restarted head is a new node");

    // The head knows only what registers with it: itself and both nodes,
    // with the ids they had before.
    let expected: BTreeMap<String, bool> = cluster
        .all()
        .map(|n| (n.address().to_string(), true))
        .collect();
    let status = cluster.wait_for(
        JOIN_TIMEOUT,
        "both nodes to register with the restarted head",
        || {
            let status = cluster.status(head)?;
            if alive_by_address(&status) == expected {
                Ok(status)
            } else {
                Err(describe(&status))
            }
        },
    );
    for node in cluster.nodes() {
        let info = node_at(&status, node.address()).expect("listed");
        assert_eq!(info.node_id, node.node_id_bytes(), "{}", describe(&status));
    }
    // And the nodes hear of the new head in their heartbeat answers.
    for node in cluster.nodes() {
        cluster.wait_for(
            JOIN_TIMEOUT,
            &format!("{} to see the restarted head", node.name()),
            || {
                let status = cluster.status(node)?;
                let new_head = node_at(&status, head.address())
                    .is_some_and(|n| n.alive && n.is_head && n.node_id == head.node_id_bytes());
                if new_head && alive_by_address(&status) == expected {
                    Ok(())
                } else {
                    Err(describe(&status))
                }
            },
        );
    }
}
