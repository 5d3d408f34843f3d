"""The head's tables on storage: a head killed with SIGKILL and restarted
on the same storage (a directory, or a real redis-server) recovers: its
nodes stay members, a detached named actor is found again, and a driver
that was running on another node carries on. A second head on storage
that a live head holds is refused."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from ember_test_support import NodeProcess, cluster_nodes, run_driver, wait_for

FAST_BEATS = {"EMBER_HEARTBEAT_MS": "200", "EMBER_NODE_DEATH_BEATS": "5"}


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: `make test` installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (make test installs it)")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def up():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False
        wait_for(up, timeout=20, what="redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _alive(address: str, root: str) -> dict:
    return {n["ADDRESS"]: n["ALIVE"] == "true" for n in cluster_nodes(address, root)}


def _driver_code(address: str, body: str) -> str:
    return f"""
import sys, time
import ember
ember.init(address="{address}")
""" + textwrap.dedent(body) + "\nember.shutdown()\n"


def _recovers(tmp_path, storage: str):
    root = str(tmp_path)
    port = _free_port()
    head_args = ["--head", "--port", str(port), "--num-cpus", "1", "--storage", storage]
    head = NodeProcess(head_args, root, FAST_BEATS)
    nodes = []
    long_driver = None
    try:
        for ip in ("127.0.0.2", "127.0.0.3"):
            nodes.append(NodeProcess(["--address", head.address, "--node-ip", ip, "--num-cpus", "2"],
                                     root, FAST_BEATS))
        wait_for(lambda: sum(_alive(head.address, root).values()) == 3, what="three live nodes")
        second, third = nodes
        env = {"EMBER_TMPDIR": root}
        out = run_driver(_driver_code(second.address, """
            @ember.remote
            class Keeper:
                def __init__(self):
                    self.n = 0
                def bump(self):
                    self.n += 1
                    return self.n
            k = Keeper.options(name="keeper", namespace="kept", lifetime="detached").remote()
            print("BUMP", ember.get(k.bump.remote(), timeout=60))
            """), env=env, timeout=120)
        assert "BUMP 1" in out.stdout, out.stdout + out.stderr[-3000:]

        # A driver on the second node keeps working while the head is away.
        long_driver = subprocess.Popen([sys.executable, "-c", _driver_code(second.address, """
            @ember.remote
            def square(i):
                return i * i
            ok = 0
            deadline = time.time() + 6
            while time.time() < deadline:
                ok += sum(ember.get([square.options(scheduling_strategy="SPREAD").remote(i)
                                     for i in range(20)], timeout=60)) == sum(i * i for i in range(20))
                time.sleep(0.05)
            print("LONG", ok > 20)
            """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **env))
        time.sleep(1.0)

        head.kill()  # SIGKILL: the head's process dies with its node
        # A second head on the storage the first held: free once the first is dead.
        started = time.monotonic()
        head = NodeProcess(head_args, root, FAST_BEATS)
        wait_for(lambda: _alive(head.address, root).get(second.address)
                 and _alive(head.address, root).get(third.address), timeout=30, what="nodes back")
        print(f"head back with its nodes after {time.monotonic() - started:.2f}s")
        # They are members for real: still alive after more than the 5 beats
        # (1 s) the head waits, while the old head's node is declared dead.
        time.sleep(1.6)
        view = cluster_nodes(head.address, root)
        alive = {n["ADDRESS"]: n["ALIVE"] == "true" for n in view}
        assert alive[second.address] and alive[third.address], view
        # Three live nodes, and the killed head's node (same address) dead.
        assert sorted(n["ALIVE"] for n in view) == ["false", "true", "true", "true"], view

        # A second head on storage that a live head holds is refused.
        other = NodeProcess(["--head", "--port", "0", "--storage", storage], root, FAST_BEATS, wait=False)
        assert other.proc.wait(30) != 0
        assert "in use by another head" in other.log_tail(), other.log_tail()
        other.stop()

        # The detached named actor is found again (through the restarted
        # head's directory), from a driver on the third node; its state lives.
        out = run_driver(_driver_code(third.address, """
            k = ember.get_actor("keeper", namespace="kept")
            print("AGAIN", ember.get(k.bump.remote(), timeout=60))
            """), env=env, timeout=120)
        assert "AGAIN 2" in out.stdout, out.stdout + out.stderr[-3000:] + head.log_tail()

        stdout, stderr = long_driver.communicate(timeout=120)
        assert long_driver.returncode == 0 and "LONG True" in stdout, stdout + stderr[-3000:]
    finally:
        if long_driver is not None and long_driver.poll() is None:
            long_driver.kill()
        for node in reversed(nodes):
            node.stop()
        head.stop()


def test_a_head_restarted_on_its_directory_recovers(tmp_path):
    _recovers(tmp_path, str(tmp_path / "head-tables"))


def test_a_head_restarted_on_redis_recovers(tmp_path, redis_url):
    _recovers(tmp_path, redis_url)
