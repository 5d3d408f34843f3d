"""The arena's kept write mapping and the parallel copy of large buffers, on
a real file in /dev/shm."""

import os
import signal
import tempfile
import time

import numpy as np
import pytest

from ember._private import memcopy, serialization
from ember._private.shm import Arena


@pytest.fixture
def arena():
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        f.truncate(64 << 20)
        a = Arena(f.name, 64 << 20)
        yield a
        a.close()


def read(arena, offset, size):
    mm, delta = arena.map_read(offset, size)
    try:
        return bytes(memoryview(mm)[delta: delta + size])
    finally:
        mm.close()


def test_writes_land_where_asked_and_read_back(arena):
    rng = np.random.default_rng(3)
    # Offsets across 2 MiB chunks, a block reused, one at the very end.
    for offset, size in [(0, 5000), (4096, 3 << 20), (8 << 20, 20 << 20), (4096, 1 << 20),
                         ((64 << 20) - 12288, 12288)]:
        array = rng.integers(0, 255, size, dtype=np.uint8)
        arena.write(offset, size, serialization.serialize(memoryview(array.tobytes())))
        assert read(arena, offset, size) == array.tobytes()


def test_a_block_outside_the_arena_is_refused(arena):
    with pytest.raises(ValueError, match="outside"):
        arena.write((64 << 20) - 10, 20, serialization.serialize(b"x" * 20))


def test_close_releases_the_write_mapping(arena):
    arena.write(0, 3, serialization.serialize(b"abc"))
    arena.close()
    arena.close()  # twice is fine


@pytest.mark.parametrize("size", [1, memcopy.PARALLEL_BYTES - 1, memcopy.PARALLEL_BYTES,
                                  memcopy.PARALLEL_BYTES * 3 + 12345])
def test_copy_into_copies_every_byte(size):
    src = np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8)
    dst = bytearray(size)
    memcopy.copy_into(memoryview(dst), memoryview(src))
    assert bytes(dst) == src.tobytes()


def test_copy_into_works_in_a_forked_child():
    size = memcopy.PARALLEL_BYTES * 2 + 7
    src = np.arange(size, dtype=np.uint8)
    memcopy.copy_into(memoryview(bytearray(size)), memoryview(src))  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:
        try:
            dst = bytearray(size)
            memcopy.copy_into(memoryview(dst), memoryview(src))
            os._exit(0 if bytes(dst) == src.tobytes() else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the copy hung in the forked child")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
