"""Ray's ``ray.actor`` module: actor classes, handles and ``exit_actor``."""

from ember._private.actor import ActorClass, ActorHandle, ActorID, ActorMethod, exit_actor, method

__all__ = ["ActorClass", "ActorHandle", "ActorID", "ActorMethod", "exit_actor", "method"]
