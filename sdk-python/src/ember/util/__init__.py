"""Ray's ``ray.util``: ``ActorPool`` and the actor-backed ``queue.Queue``."""

from ember.util import queue
from ember.util.actor_pool import ActorPool

__all__ = ["ActorPool", "queue"]
