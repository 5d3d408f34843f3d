"""Helpers for the cross-component tests (imported by conftest and tests;
named uniquely so it never clashes with another directory's conftest)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _ember_bin() -> str:
    for candidate in (
        os.environ.get("EMBER_BIN"),
        os.path.join(os.path.dirname(sys.executable), "ember"),
        str(ROOT / "target" / "release" / "ember"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("the ember binary was not found: run `make build`")


EMBER_BIN = _ember_bin()


def run_driver(
    code: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a driver program in a fresh interpreter (for tests that need their
    own cluster or environment)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        check=False,
        args=[sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


class NodeProcess:
    """One real `ember start --block` process (a head, or a node joining one)."""

    def __init__(self, args: list[str], session_root: str, env: dict | None = None, wait: bool = True):
        import json
        import tempfile
        import time

        self._json, self._time = json, time
        self.ready_file = tempfile.mktemp(prefix="ember-node-ready-", dir=session_root)
        self.log_path = self.ready_file + ".log"
        full_env = dict(os.environ, EMBER_TMPDIR=session_root, **(env or {}))
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        port = [] if "--port" in args else ["--port", "0"]
        self.proc = subprocess.Popen(
            [EMBER_BIN, "start", "--block", *port, "--ready-file", self.ready_file, *args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.info: dict = {}
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> dict:
        deadline = self._time.monotonic() + timeout
        while not self.info:
            if os.path.exists(self.ready_file):
                try:
                    with open(self.ready_file) as f:
                        self.info = self._json.load(f)
                    break
                except ValueError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"ember node exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self._time.monotonic() > deadline:
                raise RuntimeError(f"ember node not ready after {timeout}s:\n{self.log_tail()}")
            self._time.sleep(0.02)
        return self.info

    @property
    def address(self) -> str:
        return self.info["address"]

    def log_tail(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a machine failure would."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def cluster_nodes(address: str, session_root: str) -> list[dict]:
    """The nodes `ember list nodes` reports through the node at `address`."""
    out = subprocess.run([EMBER_BIN, "list", "nodes", "--address", address], capture_output=True,
                         text=True, check=True, timeout=30,
                         env=dict(os.environ, EMBER_TMPDIR=session_root)).stdout.strip().splitlines()
    header = out[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in out[1:]]


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    """Poll `condition` until it returns a truthy value (and return it)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
