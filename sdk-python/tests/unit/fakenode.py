"""A scriptable stand-in for the node daemon's Unix socket (unit tests only).

It answers Hello, CreateObject (bump allocator over a temp arena file),
GetObjects with map (the location of an object put here) and InfoRequest, records every ClientOp it receives, and lets a test push any
NodeOp. Integration tests use the real daemon.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from ember._private.protocol import split_frames
from ember.v1 import common_pb2, local_pb2

PAGE = 4096


class FakeNode:
    def __init__(self, tmpdir, *, max_inline_bytes=100 * 1024, arena_size=64 << 20, token="secret"):
        self.dir = str(tmpdir)
        self.path = os.path.join(self.dir, "node.sock")
        self.shm_path = os.path.join(self.dir, "arena")
        with open(self.shm_path, "wb") as f:
            f.truncate(arena_size)
        self.arena_size = arena_size
        self.max_inline_bytes = max_inline_bytes
        self.token = token
        self.next_offset = 0
        self.stored: dict[bytes, common_pb2.ObjectValue] = {}  # PutObject values, by id
        self.ops: list[local_pb2.ClientOp] = []
        # The kinds of the ops of each ClientMessage received, in order.
        self.messages: list[list[str]] = []
        self.cond = threading.Condition()
        self.conn = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.auto_results = None  # callable(spec) -> value for SubmitTask, when set
        self.actor_requests = None  # callable(op) -> NodeOp answering CreateActor/GetActor, when set
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        self.conn = conn
        buf = bytearray()
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                break
            if not data:
                break
            buf += data
            frames, start = split_frames(buf, 0, len(buf))
            msgs = [local_pb2.ClientMessage.FromString(bytes(buf[a:b])) for a, b in frames]
            del buf[:start]
            for msg in msgs:
                with self.cond:
                    self.messages.append([op.WhichOneof("op") for op in msg.ops])
                for op in msg.ops:
                    self._handle(op)

    def _handle(self, op):
        with self.cond:
            self.ops.append(op)
            self.cond.notify_all()
        which = op.WhichOneof("op")
        if which == "hello":
            if op.hello.token != self.token:
                err = local_pb2.ErrorReply(error=common_pb2.TaskError(kind=common_pb2.UNAUTHENTICATED,
                                                                      message="wrong token"))
                self.push(local_pb2.NodeOp(error=err))
                self.conn.shutdown(socket.SHUT_RDWR)
                return
            self.push(local_pb2.NodeOp(hello_reply=local_pb2.HelloReply(
                node_id=b"N" * 16, job_id=b"\x01\0\0\0", shm_path=self.shm_path, shm_size=self.arena_size,
                session_dir=self.dir, max_inline_bytes=self.max_inline_bytes, node_address="127.0.0.1:1")))
        elif which == "create_object":
            c = op.create_object
            offset = self.next_offset
            self.next_offset += (c.size + PAGE - 1) // PAGE * PAGE
            self.push(local_pb2.NodeOp(create_object_reply=local_pb2.CreateObjectReply(
                request_id=c.request_id, object_id=c.object_id,
                location=common_pb2.ShmLocation(offset=offset, size=c.size))))
        elif which == "put_object":
            self.stored[op.put_object.object_id] = op.put_object.value
        elif which == "get_objects" and op.get_objects.map:
            for oid in op.get_objects.object_ids:
                if oid in self.stored:
                    self.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(
                        object_id=oid, value=self.stored[oid])))
        elif which == "info_request":
            status = local_pb2.ClusterStatus(nodes=[local_pb2.NodeInfo(
                node_id=b"N" * 16, address="127.0.0.1:1234", alive=True, is_head=True,
                resources_total={"CPU": 4.0}, resources_available={"CPU": 3.0})])
            self.push(local_pb2.NodeOp(info_reply=local_pb2.InfoReply(
                request_id=op.info_request.request_id, cluster_status=status)))
        elif which in ("create_actor", "get_actor") and self.actor_requests is not None:
            answer = self.actor_requests(op)
            if answer is not None:
                self.push(answer)
        elif which == "submit_task" and self.auto_results is not None:
            spec = op.submit_task.spec
            value = self.auto_results(spec)
            for i in range(spec.num_returns):
                oid = spec.task_id + struct.pack("<I", i + 1)
                self.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(object_id=oid, value=value)))

    def push(self, *ops):
        msg = local_pb2.NodeMessage(ops=list(ops)).SerializeToString()
        self.conn.sendall(struct.pack("<I", len(msg)) + msg)

    def wait_for(self, predicate, timeout=5.0):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.ops), timeout), "fake node: condition not met"

    def ops_of(self, kind, n=1, timeout=5.0):
        """The received ops of one kind, waiting until there are at least ``n``."""
        with self.cond:
            self.cond.wait_for(lambda: sum(op.WhichOneof("op") == kind for op in self.ops) >= n, timeout)
            return [getattr(op, kind) for op in self.ops if op.WhichOneof("op") == kind]

    def close(self):
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.listener.close()
