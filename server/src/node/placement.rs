//! Placement: which node runs a task, as a pure function of the task's
//! request and strategy, this node's resources and the cluster view.
//!
//! - Default: here when it fits now; else a node with room now (spillback);
//!   else wait here if this node could ever run it; else any node that
//!   could; else it is infeasible.
//! - SPREAD: round robin over the live nodes that could ever run it.
//! - Node affinity: that node; when it is dead or unknown (or could never
//!   run it), soft falls back to the default, hard fails.

use ember_proto::v1;
use ember_proto::NodeId;

use crate::resources::ResourceSet;

/// Another node as this one sees it.
#[derive(Clone, Debug)]
pub(super) struct RemoteNode {
    pub id: NodeId,
    pub address: String,
    pub total: ResourceSet,
    /// What it reported free, less what this node sent it since.
    pub available: ResourceSet,
}

/// This node, for placement.
pub(super) struct LocalNode<'a> {
    pub id: NodeId,
    pub total: &'a ResourceSet,
    /// The task's resources (and a worker) are free here now.
    pub fits_now: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Placement {
    Local,
    Remote {
        node: NodeId,
        address: String,
    },
    /// Stay queued here until something changes.
    Wait,
    /// No live node can ever run it.
    Infeasible,
    /// Hard node affinity to a node that is dead, unknown or too small.
    Fail(String),
}

/// Where to run a task requesting `request` under `strategy`.
/// `spread_cursor` advances the SPREAD round robin.
pub(super) fn place(
    request: &ResourceSet,
    strategy: Option<&v1::SchedulingStrategy>,
    local: &LocalNode<'_>,
    remotes: &[RemoteNode],
    spread_cursor: &mut usize,
) -> Placement {
    let kind = strategy
        .and_then(|s| v1::SchedulingKind::try_from(s.kind).ok())
        .unwrap_or(v1::SchedulingKind::SchedulingDefault);
    match kind {
        v1::SchedulingKind::Spread => spread(request, local, remotes, spread_cursor),
        v1::SchedulingKind::NodeAffinity => {
            let strategy = strategy.cloned().unwrap_or_default();
            affinity(request, &strategy, local, remotes)
        }
        v1::SchedulingKind::SchedulingDefault => default(request, local, remotes),
    }
}

fn default(request: &ResourceSet, local: &LocalNode<'_>, remotes: &[RemoteNode]) -> Placement {
    if local.fits_now {
        return Placement::Local;
    }
    if let Some(r) = remotes.iter().find(|r| r.available.contains(request)) {
        return remote(r);
    }
    if local.total.contains(request) {
        return Placement::Wait;
    }
    match remotes.iter().find(|r| r.total.contains(request)) {
        Some(r) => remote(r),
        None => Placement::Infeasible,
    }
}

fn spread(
    request: &ResourceSet,
    local: &LocalNode<'_>,
    remotes: &[RemoteNode],
    cursor: &mut usize,
) -> Placement {
    // Every node that could run it, in a stable order.
    let mut candidates: Vec<(NodeId, Option<&RemoteNode>)> = remotes
        .iter()
        .filter(|r| r.total.contains(request))
        .map(|r| (r.id, Some(r)))
        .collect();
    if local.total.contains(request) {
        candidates.push((local.id, None));
    }
    if candidates.is_empty() {
        return Placement::Infeasible;
    }
    candidates.sort_by_key(|(id, _)| *id);
    let pick = *cursor % candidates.len();
    *cursor = cursor.wrapping_add(1);
    match candidates[pick].1 {
        Some(r) => remote(r),
        None if local.fits_now => Placement::Local,
        None => Placement::Wait,
    }
}

fn affinity(
    request: &ResourceSet,
    strategy: &v1::SchedulingStrategy,
    local: &LocalNode<'_>,
    remotes: &[RemoteNode],
) -> Placement {
    let target = NodeId::from_bytes(&strategy.node_id).ok();
    if target == Some(local.id) && local.total.contains(request) {
        return if local.fits_now {
            Placement::Local
        } else {
            Placement::Wait
        };
    }
    if let Some(r) = remotes
        .iter()
        .find(|r| Some(r.id) == target && r.total.contains(request))
    {
        return remote(r);
    }
    if strategy.soft {
        return default(request, local, remotes);
    }
    Placement::Fail(format!(
        "the task must run on node {} (NodeAffinitySchedulingStrategy, soft=False), \
         which is dead, unknown or lacks the resources {request}",
        hex::encode(&strategy.node_id)
    ))
}

fn remote(r: &RemoteNode) -> Placement {
    Placement::Remote {
        node: r.id,
        address: r.address.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn set(cpus: f64, special: f64) -> ResourceSet {
        let mut map: HashMap<String, f64> = [("CPU".to_string(), cpus)].into_iter().collect();
        if special > 0.0 {
            map.insert("special".into(), special);
        }
        ResourceSet::from_map(&map).unwrap()
    }

    fn node(byte: u8, total: ResourceSet, available: ResourceSet) -> RemoteNode {
        RemoteNode {
            id: NodeId([byte; 16]),
            address: format!("127.0.0.{byte}:1"),
            total,
            available,
        }
    }

    fn strategy(kind: v1::SchedulingKind, node: u8, soft: bool) -> v1::SchedulingStrategy {
        v1::SchedulingStrategy {
            kind: kind as i32,
            node_id: vec![node; 16].into(),
            soft,
        }
    }

    #[test]
    fn default_runs_here_then_spills_back_then_waits() {
        let total = set(2.0, 0.0);
        let busy = LocalNode {
            id: NodeId([1; 16]),
            total: &total,
            fits_now: false,
        };
        let idle = LocalNode {
            fits_now: true,
            ..busy
        };
        let full_remote = node(2, set(4.0, 0.0), set(0.0, 0.0));
        let free_remote = node(3, set(4.0, 0.0), set(1.0, 0.0));
        let one_cpu = set(1.0, 0.0);
        let mut c = 0;
        assert_eq!(
            place(
                &one_cpu,
                None,
                &idle,
                std::slice::from_ref(&free_remote),
                &mut c
            ),
            Placement::Local
        );
        assert_eq!(
            place(
                &one_cpu,
                None,
                &busy,
                &[full_remote.clone(), free_remote.clone()],
                &mut c
            ),
            remote(&free_remote)
        );
        assert_eq!(
            place(
                &one_cpu,
                None,
                &busy,
                std::slice::from_ref(&full_remote),
                &mut c
            ),
            Placement::Wait
        );
        // Only another node has the custom resource: go there, even busy.
        let special = node(4, set(1.0, 1.0), set(0.0, 0.0));
        // (It never fits here: this node has no "special".)
        assert_eq!(
            place(
                &set(1.0, 1.0),
                None,
                &busy,
                &[full_remote.clone(), special.clone()],
                &mut c
            ),
            remote(&special)
        );
        assert_eq!(
            place(&set(1.0, 1.0), None, &busy, &[full_remote], &mut c),
            Placement::Infeasible
        );
    }

    #[test]
    fn spread_goes_round_robin_over_nodes_that_could_run_it() {
        let total = set(1.0, 0.0);
        let local = LocalNode {
            id: NodeId([1; 16]),
            total: &total,
            fits_now: true,
        };
        let remotes = [
            node(2, set(1.0, 0.0), set(0.0, 0.0)),
            node(3, set(1.0, 0.0), set(1.0, 0.0)),
            node(4, set(0.5, 0.0), set(0.5, 0.0)), // too small
        ];
        let spread = strategy(v1::SchedulingKind::Spread, 0, false);
        let mut c = 0;
        let picks: Vec<Placement> = (0..6)
            .map(|_| place(&set(1.0, 0.0), Some(&spread), &local, &remotes, &mut c))
            .collect();
        assert_eq!(picks[0], Placement::Local);
        assert_eq!(picks[1], remote(&remotes[0]));
        assert_eq!(picks[2], remote(&remotes[1]));
        assert_eq!(picks[3..], picks[..3]);
    }

    #[test]
    fn node_affinity_hard_and_soft() {
        let total = set(2.0, 0.0);
        let local = LocalNode {
            id: NodeId([1; 16]),
            total: &total,
            fits_now: true,
        };
        let remotes = [node(2, set(2.0, 0.0), set(0.0, 0.0))];
        let cpu = set(1.0, 0.0);
        let mut c = 0;
        let to = |n, soft| strategy(v1::SchedulingKind::NodeAffinity, n, soft);
        assert_eq!(
            place(&cpu, Some(&to(2, false)), &local, &remotes, &mut c),
            remote(&remotes[0]),
            "a busy target is still the target"
        );
        assert_eq!(
            place(&cpu, Some(&to(1, false)), &local, &remotes, &mut c),
            Placement::Local
        );
        assert!(matches!(
            place(&cpu, Some(&to(9, false)), &local, &remotes, &mut c),
            Placement::Fail(message) if message.contains("0909")
        ));
        assert_eq!(
            place(&cpu, Some(&to(9, true)), &local, &remotes, &mut c),
            Placement::Local,
            "soft falls back"
        );
    }
}
