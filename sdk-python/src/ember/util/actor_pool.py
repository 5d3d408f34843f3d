"""``ActorPool``: spread calls over a fixed set of actors (Ray's ``ray.util.ActorPool``).

Each submitted ``fn(actor, value)`` runs on an idle actor; when every actor is
busy the submission waits in the pool until one is returned (a result is
taken with ``get_next``/``get_next_unordered``). Results come back in
submission order (``get_next``, ``map``) or as they finish
(``get_next_unordered``, ``map_unordered``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ember


def _key(future):
    """A hashable key for what ``fn`` returned (an ObjectRef, or a list of them)."""
    return tuple(future) if isinstance(future, list) else future


def _refs(future) -> list:
    return list(future) if isinstance(future, (list, tuple)) else [future]


class ActorPool:
    """A pool of actors that run submitted calls, one call per idle actor.

    ``fn`` passed to ``map``/``submit`` is called as ``fn(actor, value)`` and
    must return what ``actor.method.remote(...)`` returns.
    """

    def __init__(self, actors: list):
        self._idle_actors = list(actors)
        # key of an outstanding future -> (submission index, actor running it)
        self._future_to_actor: dict = {}
        # submission index -> future, for results not yet taken
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        # (fn, value) submitted while no actor was idle
        self._pending_submits: list[tuple[Callable, Any]] = []

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """Submit ``fn`` over ``values``; an iterator of the results in ``values``' order.

        Results of earlier submissions not yet taken are discarded first.
        """
        self._discard_outstanding()
        for value in values:
            self.submit(fn, value)

        def results():
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """Like ``map``, but results come back as they finish."""
        self._discard_outstanding()
        for value in values:
            self.submit(fn, value)

        def results():
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run ``fn(actor, value)`` on an idle actor, or once one is free."""
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        index = self._next_task_index
        self._next_task_index += 1
        self._future_to_actor[_key(future)] = (index, actor)
        self._index_to_future[index] = future

    def has_next(self) -> bool:
        """Whether any submitted call's result has not been taken yet."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False):
        """The next result in submission order, waiting up to ``timeout`` seconds.

        On timeout raises ``TimeoutError``; with ``ignore_if_timedout`` the
        result is also given up (its actor goes back to the pool). Raises
        ``StopIteration`` when nothing is outstanding.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        index = self._next_return_index
        if index not in self._index_to_future:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[index]
        timed_out = False
        if timeout is not None:
            refs = _refs(future)
            ready, _ = ember.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError("Timed out waiting for result")
                timed_out = True
        self._take(index, future)
        if timed_out:
            raise TimeoutError(f"Timed out waiting for result. The task {future} has been ignored.")
        return ember.get(future)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False):
        """Any finished result (the first to finish), waiting up to ``timeout`` seconds.

        Timeouts behave as in ``get_next``; an ignored result is the oldest
        outstanding one.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref = {}
        for key, (index, _) in self._future_to_actor.items():
            by_ref[_refs(key)[0]] = index
        ready, _ = ember.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            index = by_ref[ready[0]]
            future = self._index_to_future[index]
            self._take(index, future)
            return ember.get(future)
        if not ignore_if_timedout:
            raise TimeoutError("Timed out waiting for result")
        index = min(by_ref.values())
        future = self._index_to_future[index]
        self._take(index, future)
        raise TimeoutError(f"Timed out waiting for result. The task {future} has been ignored.")

    def has_free(self) -> bool:
        """Whether an actor is idle (and no submission waits for one)."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self):
        """Remove an idle actor from the pool and return it (None if none is free)."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor) -> None:
        """Add an actor to the pool (it runs a waiting submission at once, if any)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    # -- internals -------------------------------------------------------

    def _take(self, index: int, future) -> None:
        """Forget a taken (or ignored) result and give its actor back."""
        del self._index_to_future[index]
        self._next_return_index = max(self._next_return_index, index + 1)
        _, actor = self._future_to_actor.pop(_key(future))
        self._return_actor(actor)

    def _return_actor(self, actor) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            fn, value = self._pending_submits.pop(0)
            self.submit(fn, value)

    def _discard_outstanding(self) -> None:
        """Give up the results not taken yet (their calls still run, in order, on their actors)."""
        while self._future_to_actor:
            index = min(self._index_to_future)
            self._take(index, self._index_to_future[index])
