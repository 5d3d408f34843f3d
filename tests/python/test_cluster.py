"""Several nodes on one machine (127.0.0.x), each a real `ember` process:
nodes join a head, the cluster view reaches every node and driver, a node
killed with SIGKILL is declared dead, a wrong token is refused, and a node
whose head is away keeps retrying and joins when it is back."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from ember_test_support import (
    EMBER_BIN,
    NodeProcess,
    cluster_nodes,
    run_driver,
    wait_for,
)

FAST_BEATS = {"EMBER_HEARTBEAT_MS": "200", "EMBER_NODE_DEATH_BEATS": "5"}


def _alive(address: str, root: str) -> dict:
    return {n["ADDRESS"]: n["ALIVE"] == "true" for n in cluster_nodes(address, root)}


@pytest.fixture
def three_nodes(tmp_path):
    root = str(tmp_path)
    head = NodeProcess(["--head", "--num-cpus", "1"], root, FAST_BEATS)
    nodes = [head]
    try:
        nodes.append(NodeProcess(["--address", head.address, "--node-ip", "127.0.0.2", "--num-cpus", "2",
                                  "--resources", '{"special": 1}'], root, FAST_BEATS))
        nodes.append(NodeProcess(["--address", head.address, "--node-ip", "127.0.0.3", "--num-cpus", "3"],
                                 root, FAST_BEATS))
        wait_for(lambda: sum(_alive(head.address, root).values()) == 3, what="three live nodes")
        yield root, nodes
    finally:
        for node in reversed(nodes):
            node.stop()


def test_nodes_join_and_every_node_sees_the_cluster(three_nodes):
    root, (head, second, third) = three_nodes
    assert second.address.startswith("127.0.0.2:") and third.address.startswith("127.0.0.3:")
    # Each node learns the whole cluster from its heartbeats.
    for node in (head, second, third):
        wait_for(lambda n=node: _alive(n.address, root) == {head.address: True, second.address: True,
                                                      third.address: True},
                 what=f"the full view on {node.address}")
    status = subprocess.run([EMBER_BIN, "status", "--address", second.address], capture_output=True,
                            text=True, check=True, env=dict(os.environ, EMBER_TMPDIR=root)).stdout
    assert "Nodes (3)" in status and "CPU: 0.0 / 6.0" in status and "special: 0.0 / 1.0" in status, status
    # A driver on any node sees every node, Ray's way.
    out = run_driver(
        f"""
        import ember
        ember.init(address="{third.address}")
        nodes = ember.nodes()
        print("NODES", len(nodes), sum(n["Alive"] for n in nodes), sum(n["IsHead"] for n in nodes))
        print("CPU", ember.cluster_resources()["CPU"], "SPECIAL", ember.cluster_resources().get("special"))
        print("HERE", ember.get_runtime_context().get_node_id() == [n["NodeID"] for n in nodes
              if n["NodeManagerAddress"] == "127.0.0.3"][0])
        ember.shutdown()
        """,
        env={"EMBER_TMPDIR": root},
    )
    assert "NODES 3 3 1" in out.stdout, out.stdout + out.stderr
    assert "CPU 6.0 SPECIAL 1.0" in out.stdout, out.stdout
    assert "HERE True" in out.stdout, out.stdout


def test_a_killed_node_is_declared_dead(three_nodes):
    root, (head, second, third) = three_nodes
    third.kill()
    # 5 missed beats of 200 ms: dead within about a second; every node hears it.
    wait_for(lambda: _alive(head.address, root).get(third.address) is False, timeout=15, what="death at the head")
    wait_for(lambda: _alive(second.address, root).get(third.address) is False, timeout=15, what="death on a node")
    out = run_driver(
        f"""
        import ember
        ember.init(address="{second.address}")
        print("ALIVE", sorted(n["NodeManagerAddress"] for n in ember.nodes() if n["Alive"]))
        print("CPU", ember.cluster_resources()["CPU"])
        ember.shutdown()
        """,
        env={"EMBER_TMPDIR": root},
    )
    assert "ALIVE ['127.0.0.1', '127.0.0.2']" in out.stdout, out.stdout + out.stderr
    assert "CPU 3.0" in out.stdout, out.stdout


def test_joining_with_a_wrong_token_is_refused(tmp_path):
    root = str(tmp_path)
    head = NodeProcess(["--head", "--num-cpus", "1"], root, FAST_BEATS)
    try:
        intruder = subprocess.run(
            [EMBER_BIN, "start", "--block", "--address", head.address, "--node-ip", "127.0.0.4",
             "--token", "not-the-token"],
            check=False, capture_output=True, text=True, timeout=60, env=dict(os.environ, EMBER_TMPDIR=root))
        assert intruder.returncode != 0
        assert "refused" in intruder.stderr and "token" in intruder.stderr, intruder.stderr[-2000:]
        assert list(_alive(head.address, root)) == [head.address]
    finally:
        head.stop()


def test_a_node_keeps_trying_until_its_head_is_there_and_rejoins_a_restarted_head(tmp_path):
    root = str(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "a-cluster-token-for-this-test"
    head_address = f"127.0.0.1:{port}"
    env = dict(FAST_BEATS, EMBER_TOKEN=token)
    # The node starts first: the head is not there yet.
    node = NodeProcess(["--address", head_address, "--node-ip", "127.0.0.5"], root, env)
    head = None
    try:
        assert node.proc.poll() is None
        head = NodeProcess(["--head", "--port", str(port)], root, env)
        assert head.address == head_address
        wait_for(lambda: _alive(head_address, root).get(node.address) is True, what="the node joins")
        # The head dies and comes back: the node registers again.
        head.kill()
        head = NodeProcess(["--head", "--port", str(port)], root, env)
        wait_for(lambda: _alive(head_address, root).get(node.address) is True, what="the node rejoins")
    finally:
        node.stop()
        if head is not None:
            head.stop()
