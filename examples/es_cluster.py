"""Evolution strategies across a cluster of three nodes on this machine.

The script starts a head (127.0.0.1) and two more nodes (127.0.0.2 and
127.0.0.3) as real `ember` processes, connects a driver to the head, and
trains the linear policy of `rollouts.py` with evolution strategies: every
iteration, rollout tasks are spread over the three nodes (SPREAD), each
evaluating one perturbed policy, and the driver combines their rewards. It
prints how many rollouts each node ran, checks that the rewards equal a
sequential run in this process, and stops the nodes.

Run: .venv/bin/python examples/es_cluster.py [--iterations 3] [--rollouts 12]
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import ember as ray
import numpy as np
from rollouts import local_batch, run_episode, train


def ember_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ember")
    return beside if os.access(beside, os.X_OK) else (shutil.which("ember") or "ember")


def start_node(args, root, name):
    """An `ember start --block` process; returns (process, its session info)."""
    ready = os.path.join(root, f"{name}.ready")
    log = open(os.path.join(root, f"{name}.log"), "wb")  # noqa: SIM115 - lives as long as the node
    proc = subprocess.Popen([ember_binary(), "start", "--block", "--port", "0", "--ready-file", ready, *args],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, EMBER_TMPDIR=root))
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node {name} did not start; see {log.name}")
        time.sleep(0.02)
    time.sleep(0.05)  # the ready file is written atomically, but be gentle
    with open(ready) as f:
        return proc, json.load(f)


@ray.remote(scheduling_strategy="SPREAD")
def spread_rollout(policy, env_seed, steps, noise_seed, sign, sigma):
    reward, stats = run_episode(policy, env_seed, steps, noise_seed, sign, sigma)
    stats["node"] = ray.get_runtime_context().get_node_id()
    return reward, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="ember-es-cluster-")
    nodes = []
    try:
        head, head_info = start_node(["--head", "--num-cpus", "1"], root, "head")
        nodes.append(head)
        for ip in ("127.0.0.2", "127.0.0.3"):
            node, _ = start_node(["--address", head_info["address"], "--node-ip", ip, "--num-cpus", "1"],
                                 root, ip)
            nodes.append(node)
        os.environ["EMBER_TMPDIR"] = root
        ray.init(address=head_info["address"])
        deadline = time.monotonic() + 30
        while sum(n["Alive"] for n in ray.nodes()) < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes did not join the head")
            time.sleep(0.1)
        names = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        print(f"cluster: {len(names)} nodes ({', '.join(sorted(names.values()))}), "
              f"{ray.cluster_resources()['CPU']:.0f} CPUs")

        ran_on = collections.Counter()

        def cluster_batch(policy, jobs):
            policy_ref = ray.put(policy)
            results = ray.get([spread_rollout.remote(policy_ref, *job) for job in jobs])
            ran_on.update(names[s.pop("node")] for _, s in results)
            return results

        start = time.perf_counter()
        _, history = train(args.iterations, args.rollouts, args.steps, cluster_batch, True)
        seconds = time.perf_counter() - start
        _, sequential = train(args.iterations, args.rollouts, args.steps, local_batch, False)
        assert all(np.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(history, sequential))
        print(f"rollouts per node: {dict(sorted(ran_on.items()))}")
        print(f"{args.iterations * args.rollouts} rollouts in {seconds:.2f} s; rewards equal a "
              f"sequential run; mean reward {history[0].mean():.1f} -> {history[-1].mean():.1f}")
        assert len(ran_on) == 3, "every node ran rollouts"
        ray.shutdown()
    finally:
        for proc in reversed(nodes):
            proc.terminate()
        for proc in nodes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
