"""Why the local transport is length-prefixed protobuf frames on a Unix
socket and not gRPC: measure one request/response round trip from Python
both ways, on this machine.

    .venv/bin/python benches/transport_choice.py

- grpc_unary_uds: a grpcio unary call (generic bytes handler) over a Unix
  socket, server in another process.
- frames_uds: a ClientMessage frame (4-byte length + protobuf) sent over a
  Unix socket to an echo process and a frame read back, the way the SDK
  talks to its node.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import struct
import tempfile
import time

from ember.v1 import local_pb2

N = 3000


def _grpc_server(path: str, ready) -> None:
    from concurrent import futures

    import grpc

    def echo(request, context):
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    server.start()
    ready.set()
    server.wait_for_termination()


def bench_grpc(path: str) -> float:
    import grpc

    ready = mp.Event()
    proc = mp.Process(target=_grpc_server, args=(path, ready), daemon=True)
    proc.start()
    ready.wait(30)
    channel = grpc.insecure_channel(f"unix:{path}")
    call = channel.unary_unary("/bench.Echo/Call")
    payload = _message().SerializeToString()
    for _ in range(200):
        call(payload)
    t0 = time.perf_counter()
    for _ in range(N):
        call(payload)
    elapsed = time.perf_counter() - t0
    proc.terminate()
    return elapsed / N


def _message() -> local_pb2.ClientMessage:
    op = local_pb2.ClientOp(get_objects=local_pb2.GetObjects(object_ids=[os.urandom(20)]))
    return local_pb2.ClientMessage(ops=[op])


def _echo_server(sock: socket.socket) -> None:
    while True:
        head = sock.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return
        (n,) = struct.unpack("<I", head)
        body = sock.recv(n, socket.MSG_WAITALL)
        sock.sendall(head + body)


def bench_frames() -> float:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = mp.Process(target=_echo_server, args=(theirs,), daemon=True)
    proc.start()
    msg = _message()

    def round_trip():
        body = msg.SerializeToString()
        ours.sendall(struct.pack("<I", len(body)) + body)
        (n,) = struct.unpack("<I", ours.recv(4, socket.MSG_WAITALL))
        local_pb2.NodeMessage.FromString(ours.recv(n, socket.MSG_WAITALL))

    for _ in range(200):
        round_trip()
    t0 = time.perf_counter()
    for _ in range(N):
        round_trip()
    elapsed = time.perf_counter() - t0
    ours.close()
    proc.terminate()
    return elapsed / N


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        grpc_s = bench_grpc(os.path.join(tmp, "grpc.sock"))
    frames_s = bench_frames()
    print(f"grpc_unary_uds_us {grpc_s * 1e6:.1f}")
    print(f"frames_uds_us     {frames_s * 1e6:.1f}")
    print(f"frames are {grpc_s / frames_s:.1f}x faster per round trip")


if __name__ == "__main__":
    main()
