//! Formatting of `ember status`.

use std::fmt::Write;

use ember_proto::v1;

fn amount(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// The cluster status as `ember status` prints it.
pub fn render(status: &v1::ClusterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "======== ember cluster status ========");
    let _ = writeln!(out, "Nodes ({}):", status.nodes.len());
    for n in &status.nodes {
        let _ = writeln!(
            out,
            "  {} {}{} {} ({} workers)",
            hex::encode(&n.node_id),
            n.address,
            if n.is_head { " head" } else { "" },
            if n.alive { "alive" } else { "dead" },
            n.num_workers
        );
    }
    let _ = writeln!(out, "Resources of the live nodes (used / total):");
    let mut totals: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for n in status.nodes.iter().filter(|n| n.alive) {
        for (k, v) in &n.resources_total {
            let e = totals.entry(k.as_str()).or_default();
            e.1 += v;
            e.0 += v - n.resources_available.get(k).copied().unwrap_or(0.0);
        }
    }
    for (k, (used, total)) in totals {
        if k == "object_store_memory" || k == "memory" {
            let _ = writeln!(
                out,
                "  {k}: {} / {}",
                bytes(used as u64),
                bytes(total as u64)
            );
        } else {
            let _ = writeln!(out, "  {k}: {} / {}", amount(used), amount(total));
        }
    }
    let t = status.tasks.unwrap_or_default();
    let _ = writeln!(
        out,
        "Tasks: {} pending, {} running, {} finished, {} failed, {} infeasible",
        t.pending, t.running, t.finished, t.failed, t.infeasible
    );
    if !status.infeasible.is_empty() {
        let _ = writeln!(out, "Infeasible tasks (no node can run them):");
        for task in &status.infeasible {
            let mut res: Vec<_> = task.resources.iter().collect();
            res.sort_by(|a, b| a.0.cmp(b.0));
            let res: Vec<String> = res
                .iter()
                .map(|(k, v)| format!("{k}: {}", amount(**v)))
                .collect();
            let _ = writeln!(
                out,
                "  {} {} requires {{{}}}",
                hex::encode(&task.task_id),
                task.name,
                res.join(", ")
            );
        }
    }
    if !status.actors.is_empty() {
        let _ = writeln!(out, "Actors ({}):", status.actors.len());
        let mut actors: Vec<&v1::ActorInfo> = status.actors.iter().collect();
        actors.sort_by_key(|a| (a.state, a.actor_id.clone()));
        for a in actors {
            let creation = a.creation.clone().unwrap_or_default();
            let state = state_name(a.state);
            let name = if creation.name.is_empty() {
                String::new()
            } else {
                format!(
                    " name={:?} namespace={:?}",
                    creation.name, creation.namespace
                )
            };
            let cause = if a.death_cause.is_empty() {
                String::new()
            } else {
                format!(": {}", a.death_cause)
            };
            let _ = writeln!(
                out,
                "  {} {}{} {state}{} (restarts {})",
                hex::encode(&a.actor_id),
                creation.class_name,
                name,
                cause,
                a.num_restarts
            );
        }
    }
    if !status.jobs.is_empty() {
        let running = status.jobs.iter().filter(|j| !j.finished).count();
        let _ = writeln!(
            out,
            "Jobs: {running} running, {} finished",
            status.jobs.len() - running
        );
    }
    let live = status.nodes.iter().filter(|n| n.alive);
    let (cap, used, spilled, num_spilled) = live.fold((0, 0, 0, 0), |(c, u, s, k), n| {
        (
            c + n.object_store_capacity,
            u + n.object_store_used,
            s + n.object_store_spilled,
            k + n.object_store_num_spilled,
        )
    });
    let _ = writeln!(
        out,
        "Object store: {} used of {}, {} objects; {} spilled to disk ({} objects)",
        bytes(used),
        bytes(cap),
        status.num_objects,
        bytes(spilled),
        num_spilled
    );
    out
}

fn state_name(state: i32) -> String {
    v1::ActorState::try_from(state)
        .map(|s| s.as_str_name().to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

/// `ember list actors`: id, class, state, name, namespace, restarts, pid, death cause.
pub fn list_actors(status: &v1::ClusterStatus) -> String {
    let mut out =
        String::from("ACTOR_ID\tCLASS\tSTATE\tNAME\tNAMESPACE\tRESTARTS\tPID\tDEATH_CAUSE\n");
    let mut actors: Vec<&v1::ActorInfo> = status.actors.iter().collect();
    actors.sort_by_key(|a| (a.state, a.actor_id.clone()));
    for a in actors {
        let c = a.creation.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            hex::encode(&a.actor_id),
            c.class_name,
            state_name(a.state),
            c.name,
            c.namespace,
            a.num_restarts,
            a.pid,
            a.death_cause
        );
    }
    out
}

/// `ember list jobs`: the head's job table, oldest first.
pub fn list_jobs(status: &v1::ClusterStatus) -> String {
    let mut out = String::from(
        "JOB_ID	STATUS	NODE_ADDRESS	NAMESPACE	DRIVER_PID	START_MS	END_MS
",
    );
    for j in &status.jobs {
        let _ = writeln!(
            out,
            "{}	{}	{}	{}	{}	{}	{}",
            hex::encode(&j.job_id),
            if j.finished { "FINISHED" } else { "RUNNING" },
            j.node_address,
            j.namespace,
            j.driver_pid,
            j.start_time_ms,
            j.end_time_ms
        );
    }
    out
}

/// `ember list nodes`: id, address, role, state, CPU and GPU totals.
pub fn list_nodes(status: &v1::ClusterStatus) -> String {
    let mut out = String::from("NODE_ID\tADDRESS\tHEAD\tALIVE\tCPU\tGPU\tWORKERS\n");
    for n in &status.nodes {
        let get = |k: &str| n.resources_total.get(k).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            hex::encode(&n.node_id),
            n.address,
            n.is_head,
            n.alive,
            get("CPU"),
            get("GPU"),
            n.num_workers
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_infeasible_tasks() {
        let status = v1::ClusterStatus {
            nodes: vec![v1::NodeInfo {
                node_id: vec![1; 16].into(),
                address: "127.0.0.1:1".into(),
                alive: true,
                is_head: true,
                resources_total: [("CPU".to_string(), 2.0)].into_iter().collect(),
                resources_available: [("CPU".to_string(), 1.0)].into_iter().collect(),
                object_store_capacity: 1 << 30,
                object_store_spilled: 3 << 20,
                object_store_num_spilled: 3,
                ..Default::default()
            }],
            tasks: Some(v1::TaskCounts {
                pending: 1,
                infeasible: 1,
                ..Default::default()
            }),
            infeasible: vec![v1::InfeasibleTask {
                task_id: vec![2; 16].into(),
                name: "f".into(),
                resources: [("tpu".to_string(), 1.0)].into_iter().collect(),
            }],
            num_objects: 0,
            actors: vec![],
            jobs: vec![
                v1::JobInfo {
                    job_id: vec![1, 0, 0, 0].into(),
                    node_address: "127.0.0.1:1".into(),
                    ..Default::default()
                },
                v1::JobInfo {
                    job_id: vec![2, 0, 0, 0].into(),
                    finished: true,
                    ..Default::default()
                },
            ],
        };
        let text = render(&status);
        assert!(text.contains("Jobs: 1 running, 1 finished"), "{text}");
        let jobs = list_jobs(&status);
        assert!(jobs.contains("01000000\tRUNNING\t127.0.0.1:1"), "{jobs}");
        assert!(text.contains("CPU: 1.0 / 2.0"), "{text}");
        assert!(text.contains("Infeasible tasks"));
        assert!(text.contains("tpu: 1.0"));
        assert!(text.contains("spilled to disk (3 objects)"), "{text}");
    }
}
