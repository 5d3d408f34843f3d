"""Scheduling strategies, as Ray's ``ray.util.scheduling_strategies``.

``scheduling_strategy="DEFAULT"`` (local first, another node when this one
cannot run a task or is busy and another has room), ``"SPREAD"`` (round
robin over the nodes that can run it) or a
:class:`NodeAffinitySchedulingStrategy`.
"""

from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (hex, as ``ember.nodes()`` gives it).

    ``soft=False``: only there; the task fails if that node is dead or
    unknown. ``soft=True``: there when it can, elsewhere otherwise.
    """

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string, got {type(node_id).__name__}")
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Placement groups are not supported yet; kept so that imports work."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks=None):
        raise NotImplementedError("ember does not support placement groups yet")


def to_proto(strategy):
    """The ``SchedulingStrategy`` message for a task option (None for the default)."""
    from ember.v1 import common_pb2

    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return common_pb2.SchedulingStrategy(kind=common_pb2.SPREAD)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        try:
            node_id = bytes.fromhex(strategy.node_id)
        except ValueError:
            raise ValueError(f"NodeAffinitySchedulingStrategy: node_id {strategy.node_id!r} is not hex") from None
        return common_pb2.SchedulingStrategy(kind=common_pb2.NODE_AFFINITY, node_id=node_id, soft=strategy.soft)
    raise ValueError(f"unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD' or "
                     "NodeAffinitySchedulingStrategy")


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
