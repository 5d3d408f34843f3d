"""Ray's ``ray.util``: ``ActorPool``, the actor-backed ``queue.Queue`` and
``scheduling_strategies``."""

from ember.util import queue, scheduling_strategies
from ember.util.actor_pool import ActorPool

__all__ = ["ActorPool", "queue", "scheduling_strategies"]
