"""The local stream: framing and the ``Connection`` to the node's Unix socket.

A frame is a 4-byte little-endian length and one protobuf message
(``ClientMessage`` from us, ``NodeMessage`` from the node); see proto/README.md.

Receiving is **leader–follower**: there is no background reader thread. A
thread that needs something from the node (a result, a reply, a task to run)
calls ``wait_until(predicate, timeout)``. If it can take the read lock it
becomes the leader: it reads what the socket has, decodes every complete frame
and hands each ``NodeMessage`` to ``on_message`` (which updates the runtime's
state), then releases the lock and wakes the followers. Threads that cannot
take the lock wait on a condition until the leader has read something. The
synchronous path (submit, then wait for the result) therefore has no thread
hand-off at all.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from ember._private.flush_timer import FlushTimer
from ember.exceptions import LocalRayletDiedError
from ember.v1 import local_pb2

_LEN = struct.Struct("<I")
_NodeMessage = local_pb2.NodeMessage
_monotonic = time.monotonic

#: ``ClientMessage.ops`` is field 1, length-delimited: tag byte 0x0a.
_OPS_TAG = b"\x0a"
_INITIAL_BUFFER = 1 << 20
_MAX_FRAME = 1 << 31
#: A ``send_coalesced`` within this long of the previous send is part of a burst.
_BURST_GAP_S = 50e-6
#: A burst's ops are sent once this many are held ...
_BURST_MAX_OPS = 64
#: ... or this long after the first was held (by the flusher thread). Longer
#: than a loop of ``.remote()`` takes to hold ``_BURST_MAX_OPS`` (64 x ~5 us),
#: so that in such a loop the count sends and the flusher thread sleeps: at
#: 200 us it woke every ~20 tasks, each time taking the GIL from the loop
#: (1.1-1.5 us of CPU a task). A burst's tail goes out with the next ``get``
#: or ``wait`` at once, and within this long when none comes.
_BURST_HOLD_S = 1e-3


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes([i]) for i in range(0x80)]


def encode_frame(ops: list[bytes]) -> bytes:
    """One frame holding a ``ClientMessage`` made of already-encoded ``ClientOp`` bytes."""
    if len(ops) == 1:
        op = ops[0]
        n = len(op)
        head = _OPS_TAG + encode_varint(n)
        return _LEN.pack(len(head) + n) + head + op
    parts = [b""]
    varint = encode_varint
    for op in ops:
        parts.append(_OPS_TAG)
        parts.append(varint(len(op)))
        parts.append(op)
    size = 0
    for p in parts:
        size += len(p)
    parts[0] = _LEN.pack(size)
    return b"".join(parts)


def split_frames(buf: bytes | bytearray | memoryview, start: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """The complete frames in ``buf[start:end]`` as (body_start, body_end), and where the rest begins."""
    frames = []
    unpack = _LEN.unpack_from
    while end - start >= 4:
        (length,) = unpack(buf, start)
        if end - start - 4 < length:
            break
        frames.append((start + 4, start + 4 + length))
        start += 4 + length
    return frames, start


class Connection:
    """A client connection to the node: thread-safe ``send`` and leader–follower receive.

    ``on_message(msg)`` is called for every received ``NodeMessage``, by the
    thread that read it, with the read lock held (so calls never overlap).
    ``wrap_ops(ops)``, when set, is called under the send lock with the ops of
    each ``send`` and returns the ops to send (the runtime adds pending
    results and reference updates there, keeping their order on the wire).
    """

    def __init__(self, path: str, on_message: Callable[[local_pb2.NodeMessage], None]):
        self.path = path
        self.on_message = on_message
        self.wrap_ops: Callable[[list[bytes]], list[bytes]] | None = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise ConnectionError(f"cannot connect to the ember node at {path}: {exc}") from exc
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self._sock = sock
        self._fd = sock.fileno()
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buf = bytearray(_INITIAL_BUFFER)
        self._start = 0
        self._end = 0
        # Why the connection is dead (None while it is alive).
        self._dead: BaseException | None = None
        # Ops held back by send_coalesced (a burst of submissions), sent
        # with the next send, before any wait, or by the flusher thread.
        self._held: list[bytes] = []
        self._last_send = 0.0
        self._held_timer = FlushTimer(self.flush_held, _BURST_HOLD_S, "ember-submit-flusher",
                                      stop_on=(LocalRayletDiedError,))

    # -- sending ---------------------------------------------------------

    def send_coalesced(self, ops: list[bytes], hold: bool = False) -> None:
        """Send ``ops`` now, or, in a burst of calls, hold them to go out in one
        frame with the next ops.

        The first call after a pause sends at once (no added latency) unless
        ``hold`` is set; calls that follow within ``_BURST_GAP_S`` are held
        until ``_BURST_MAX_OPS`` are held, another ``send`` or ``wait_until``
        happens, or the flusher thread sends them ``_BURST_HOLD_S`` later.
        """
        now = _monotonic()
        with self._send_lock:
            held = self._held
            burst = hold or now - self._last_send < _BURST_GAP_S
            self._last_send = now
            if burst or held:
                held.extend(ops)
                if len(held) < _BURST_MAX_OPS:
                    self._held_timer.arm()
                    return
                ops, self._held = held, []
                self._held_timer.disarm()
            self._send_locked(ops)

    def hold(self, ops: list[bytes]) -> None:
        """Send ``ops`` with the next send, or ``_BURST_HOLD_S`` from now at the latest."""
        with self._send_lock:
            self._held.extend(ops)
            self._held_timer.arm()

    def unhold(self, op: bytes) -> bool:
        """Take back a held ``op`` that has not gone out yet; whether it was held."""
        with self._send_lock:
            try:
                self._held.remove(op)
            except ValueError:
                return False
            if not self._held:
                self._held_timer.disarm()
            return True

    @property
    def holds_ops(self) -> bool:
        """Whether ``send_coalesced`` holds ops not yet sent."""
        return bool(self._held)

    def flush_held(self) -> None:
        """Send held ops now."""
        if self._held:
            with self._send_lock:
                if self._held:
                    ops, self._held = self._held, []
                    self._held_timer.disarm()
                    self._send_locked(ops)

    def send(self, ops: list[bytes], before_held: bool = False) -> None:
        """Send one ``ClientMessage`` holding ``ops`` (encoded ``ClientOp``s), after the held
        ops (before them, given ``before_held``)."""
        with self._send_lock:
            if self._held:
                ops, self._held = (ops + self._held if before_held else self._held + ops), []
                self._held_timer.disarm()
            self._send_locked(ops)

    def _send_locked(self, ops: list[bytes]) -> None:
        """Send ``ops`` (plus what ``wrap_ops`` adds); the send lock is held."""
        wrap = self.wrap_ops
        if wrap is not None:
            ops = wrap(ops)
            if not ops:
                return
        frame = encode_frame(ops)
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            self._mark_dead(self._closed_error())
            raise self._closed_error() from exc

    # -- receiving -------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._dead is None

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Read and dispatch node messages until ``predicate()`` is true or ``timeout`` passes.

        Returns ``True`` once the predicate holds, ``False`` on timeout. Raises
        ``LocalRayletDiedError`` once the connection is closed.
        """
        if self._held:
            self.flush_held()
        deadline = None if timeout is None else _monotonic() + timeout
        read_lock = self._read_lock
        cond = self._cond
        while True:
            if predicate():
                return True
            if self._dead is not None:
                raise self._dead
            if deadline is None:
                remaining = None
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
            if read_lock.acquire(False):
                try:
                    if predicate():
                        return True
                    self._read_once(remaining)
                finally:
                    read_lock.release()
                    with cond:
                        cond.notify_all()
            else:
                with cond:
                    # The leader wakes us after it releases the read lock; it
                    # needs `cond` for that, so checking under `cond` loses no wakeup.
                    if read_lock.locked() and self._dead is None and not predicate():
                        cond.wait(remaining)

    def poll_once(self) -> None:
        """Send held ops, then dispatch whatever has already arrived, without blocking (no read
        if another thread reads)."""
        if self._held and self._dead is None:
            self.flush_held()
        if self._dead is None and self._read_lock.acquire(False):
            try:
                self._read_once(0.0)
            finally:
                self._read_lock.release()
                with self._cond:
                    self._cond.notify_all()

    def _read_once(self, timeout: float | None) -> None:
        """Read once (waiting up to ``timeout``) and dispatch every complete frame. Read lock held."""
        # Wait in poll(POLLIN), never in a blocking recv: a thread asleep in
        # recv on a Unix socket is also woken each time the node reads what
        # this process sent (the kernel's write-space wake-up carries no
        # event mask for it), a spurious wake-up per message; poll's wait
        # filters by event and sleeps through those.
        if timeout is None:
            if not self._poll.poll():
                return
        else:
            ms = int(timeout * 1000)
            if not self._poll.poll(ms if ms > 0 or timeout <= 0 else 1):
                return
        buf = self._buf
        if self._end == len(buf):
            self._make_room(0)
            buf = self._buf
        try:
            with memoryview(buf) as view:
                n = self._sock.recv_into(view[self._end:])
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if isinstance(exc, (BlockingIOError, InterruptedError)):
                return
            self._mark_dead(self._closed_error())
            raise self._dead from exc
        if n == 0:
            self._mark_dead(self._closed_error())
            raise self._dead
        self._end += n
        frames, self._start = split_frames(buf, self._start, self._end)
        if frames:
            from_string = _NodeMessage.FromString
            on_message = self.on_message
            with memoryview(buf) as view:
                msgs = [from_string(view[a:b]) for a, b in frames]
            if self._start == self._end:
                self._start = self._end = 0
            for msg in msgs:
                on_message(msg)
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end - self._start >= 4:
            (length,) = _LEN.unpack_from(buf, self._start)
            if length > _MAX_FRAME:
                self._mark_dead(LocalRayletDiedError(f"the ember node at {self.path} sent a frame of {length} bytes"))
                raise self._dead
            if self._start + 4 + length > len(buf):
                self._make_room(4 + length)

    def _make_room(self, frame_size: int) -> None:
        """Move the partial frame to the front of the buffer; grow it to hold ``frame_size`` bytes."""
        pending = self._end - self._start
        buf = self._buf
        if self._start:
            buf[:pending] = buf[self._start:self._end]
            self._start, self._end = 0, pending
        need = max(frame_size, pending + 1)
        if need > len(buf):
            size = len(buf)
            while size < need:
                size *= 2
            buf.extend(bytes(size - len(buf)))

    # -- closing ---------------------------------------------------------

    def _closed_error(self) -> LocalRayletDiedError:
        return LocalRayletDiedError(f"the ember node at {self.path} closed the connection")

    def _mark_dead(self, exc: BaseException) -> None:
        if self._dead is None:
            self._dead = exc
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Close the connection; waiting threads get ``LocalRayletDiedError``."""
        self._mark_dead(LocalRayletDiedError("the connection to the ember node was closed by this process (shutdown)"))
        self._held_timer.close()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        if self._read_lock.acquire(timeout=1.0):
            try:
                self._sock.close()
            finally:
                self._read_lock.release()
