"""The node's shared-memory arena: writing new objects and mapping sealed ones.

The node owns one arena file (``HelloReply.shm_path``). A large value is
written by asking the node for a block (``CreateObject`` → ``CreateObjectReply``
with a page-aligned offset), mapping that block read-write, copying the value
in and sealing it (``PutObject``, or the ``TaskFinished`` return of a worker).
Sealed objects are read by mapping their block read-only; the runtime keeps a
reference to the object while the mapping (and any buffer pointing into it)
is alive.
"""

from __future__ import annotations

import mmap
import os

from ember._private.serialization import SerializedValue

_GRANULARITY = mmap.ALLOCATIONGRANULARITY
_WRITE_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class Arena:
    """An open handle on the node's arena file."""

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size
        self._fd = os.open(path, os.O_RDWR)

    def write(self, offset: int, size: int, value: SerializedValue) -> None:
        """Copy ``value`` into the block at ``offset`` (``size`` bytes), then unmap it."""
        aligned, delta = _align(offset)
        mm = mmap.mmap(self._fd, size + delta, flags=_WRITE_FLAGS,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=aligned)
        try:
            with memoryview(mm) as view:
                value.write_into(view[delta: delta + size] if delta else view)
        finally:
            mm.close()

    def map_read(self, offset: int, size: int) -> tuple[mmap.mmap, int]:
        """Map a sealed object read-only: the mapping and where the object starts in it."""
        aligned, delta = _align(offset)
        mm = mmap.mmap(self._fd, size + delta, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=aligned)
        return mm, delta

    def close(self) -> None:
        """Close the file (live mappings stay valid)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _align(offset: int) -> tuple[int, int]:
    aligned = offset - offset % _GRANULARITY
    return aligned, offset - aligned
