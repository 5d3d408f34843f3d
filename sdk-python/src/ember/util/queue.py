"""``Queue``: a FIFO queue shared between tasks and actors (Ray's ``ray.util.queue``).

The items live in an async actor holding an ``asyncio.Queue``; a ``Queue``
object is a thin client of it and pickles to its actor handle, so a producer
task and a consumer actor given the same ``Queue`` share its items.
"""

from __future__ import annotations

import asyncio
import queue as _queue
from collections.abc import Iterable
from typing import Any

import ember

__all__ = ["Empty", "Full", "Queue"]


class Empty(_queue.Empty):
    """Raised by ``get`` when the queue has no item (in time)."""


class Full(_queue.Full):
    """Raised by ``put`` when the queue has no room (in time)."""


class _QueueActor:
    """The actor holding the items."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size {self.queue.qsize()} "
                       f"and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.queue.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.queue.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]


_actor_class = None


def _queue_actor_class():
    global _actor_class
    if _actor_class is None:
        _actor_class = ember.remote(_QueueActor)
    return _actor_class


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in, first-out queue backed by an actor.

    ``maxsize`` <= 0 means no limit. ``actor_options`` are the options of the
    queue's actor (e.g. ``{"num_cpus": 0}`` or a ``name``).
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        self.maxsize = maxsize
        self.actor = _queue_actor_class().options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return ember.get(self.actor.qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        return ember.get(self.actor.empty.remote())

    def full(self) -> bool:
        return ember.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; with ``block``, wait up to ``timeout`` seconds for room, else raise Full."""
        if not block:
            return self._put_nowait(item)
        _check_timeout(timeout)
        try:
            ember.get(self.actor.put.remote(item, timeout))
        except Full:
            raise Full from None

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for asyncio code."""
        try:
            if not block:
                await self.actor.put_nowait.remote(item)
            else:
                _check_timeout(timeout)
                await self.actor.put.remote(item, timeout)
        except Full:
            raise Full from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item; with ``block``, wait up to ``timeout`` seconds, else raise
        Empty."""
        if not block:
            return self._get_nowait()
        _check_timeout(timeout)
        try:
            return ember.get(self.actor.get.remote(timeout))
        except Empty:
            raise Empty from None

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for asyncio code."""
        try:
            if not block:
                return await self.actor.get_nowait.remote()
            _check_timeout(timeout)
            return await self.actor.get.remote(timeout)
        except Empty:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all ``items`` at once, or none (Full) when they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        try:
            ember.get(self.actor.put_nowait_batch.remote(list(items)))
        except Full as exc:
            raise Full(*exc.args) from None

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items at once, or none (Empty) when there are fewer."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        try:
            return ember.get(self.actor.get_nowait_batch.remote(num_items))
        except Empty as exc:
            raise Empty(*exc.args) from None

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor: gracefully (after the calls before this one), or at once with
        ``force`` (also after ``grace_period_s`` seconds without a graceful end)."""
        if self.actor is not None:
            if force:
                ember.kill(self.actor, no_restart=True)
            else:
                done = self.actor.__ray_terminate__.remote()
                _, not_done = ember.wait([done], timeout=grace_period_s)
                if not_done:
                    ember.kill(self.actor, no_restart=True)
        self.actor = None

    def _put_nowait(self, item) -> None:
        try:
            ember.get(self.actor.put_nowait.remote(item))
        except Full:
            raise Full from None

    def _get_nowait(self):
        try:
            return ember.get(self.actor.get_nowait.remote())
        except Empty:
            raise Empty from None
