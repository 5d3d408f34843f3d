"""The node's shared-memory arena: writing new objects and mapping sealed ones.

The node owns one arena file (``HelloReply.shm_path``). A large value is
written by asking the node for a block (``CreateObject`` → ``CreateObjectReply``
with a page-aligned offset), copying the value in through this process's
read-write mapping of the arena and sealing it (``PutObject``, or the
``TaskFinished`` return of a worker).
Sealed objects are read by mapping their block read-only; the runtime keeps a
reference to the object while the mapping (and any buffer pointing into it)
is alive.
"""

from __future__ import annotations

import mmap
import os

from ember._private.serialization import SerializedValue

_GRANULARITY = mmap.ALLOCATIONGRANULARITY


# madvise(MADV_POPULATE_WRITE) (Linux 5.14): fault a range in, writable, in
# one call. Python's mmap module does not name it.
_MADV_POPULATE_WRITE = 23
# Granularity of the record of which parts of the arena this process has
# faulted in already.
_CHUNK_SHIFT = 21  # 2 MiB


class Arena:
    """An open handle on the node's arena file.

    Writes go through one read-write mapping of the whole arena, made on the
    first write and kept: mapping a block per write and unmapping it after
    costs as much as the copy itself (page tables built and torn down each
    time), while a kept mapping lets a block that is reused, as the node's
    allocator prefers, be written at memory speed. A range this process has
    not written before is faulted in with one ``madvise`` first.
    """

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size
        self._fd = os.open(path, os.O_RDWR)
        self._mm: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._populated = bytearray((size >> _CHUNK_SHIFT) + 1)
        self._can_populate = True

    def write(self, offset: int, size: int, value: SerializedValue) -> None:
        """Copy ``value`` into the block at ``offset`` (``size`` bytes)."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ValueError(f"block [{offset}, {offset + size}) is outside the {self.size}-byte arena")
        view = self._writable()
        self._populate(offset, size)
        with view[offset: offset + size] as block:
            value.write_into(block)

    def _writable(self) -> memoryview:
        if self._view is None:
            self._mm = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
            self._view = memoryview(self._mm)
        return self._view

    def _populate(self, offset: int, size: int) -> None:
        if not self._can_populate or size == 0:
            return
        first, last = offset >> _CHUNK_SHIFT, (offset + size - 1) >> _CHUNK_SHIFT
        populated = self._populated
        if all(populated[first: last + 1]):
            return
        start = first << _CHUNK_SHIFT
        end = min((last + 1) << _CHUNK_SHIFT, self.size)
        try:
            self._mm.madvise(_MADV_POPULATE_WRITE, start, end - start)
        except OSError:
            self._can_populate = False  # an older kernel: pages fault in as written
            return
        populated[first: last + 1] = b"\x01" * (last + 1 - first)

    def map_read(self, offset: int, size: int) -> tuple[mmap.mmap, int]:
        """Map a sealed object read-only: the mapping and where the object starts in it."""
        aligned, delta = _align(offset)
        mm = mmap.mmap(self._fd, size + delta, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=aligned)
        return mm, delta

    def close(self) -> None:
        """Close the file and the write mapping (read mappings stay valid)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _align(offset: int) -> tuple[int, int]:
    aligned = offset - offset % _GRANULARITY
    return aligned, offset - aligned
