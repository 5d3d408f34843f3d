"""Finding or starting the node daemon that ``init()`` connects to.

``start_local_node`` runs the ``ember`` binary as a child (head + node in one
process)::

    ember start --head --block --port 0 --ready-file F --python <sys.executable>
          --exit-with-stdin [--num-cpus N] [--num-gpus N] [--resources JSON]
          [--object-store-memory B]

with stdin a pipe: the node exits when the pipe closes, so a killed driver
never leaks a cluster. ``F`` (JSON, written once the node listens) holds
``address``, ``socket``, ``token``, ``session_dir``, ``pid``, ``node_id``.

``find_session`` locates the session file of a running cluster for
``init(address=...)``: ``"auto"`` → ``<root>/session_latest/session.json``,
``"host:port"`` → the ``<root>/session_*/session.json`` with that address,
where root is ``$EMBER_TMPDIR`` or ``/tmp/ember-<uid>``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT_S = 30.0
_POLL_S = 0.002


def find_binary() -> str:
    """The ``ember`` binary: $EMBER_BIN, beside the Python executable, on PATH, or the dev tree's build."""
    env = os.environ.get("EMBER_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise FileNotFoundError(f"EMBER_BIN={env} is not an executable file")
        return env
    beside = os.path.join(os.path.dirname(sys.executable), "ember")
    if os.access(beside, os.X_OK) and os.path.isfile(beside):
        return beside
    on_path = shutil.which("ember")
    if on_path:
        return on_path
    here = os.path.dirname(os.path.abspath(__file__))
    while True:
        candidate = os.path.join(here, "target", "release", "ember")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    raise FileNotFoundError("the ember binary was not found; run `make build` or set EMBER_BIN")


def session_root() -> str:
    """Where sessions live: $EMBER_TMPDIR or /tmp/ember-<uid>."""
    return os.environ.get("EMBER_TMPDIR") or os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}")


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def find_session(address: str) -> dict:
    """The session info of a running cluster at ``address`` ("auto" or "host:port")."""
    root = session_root()
    if address == "auto":
        path = os.path.join(root, "session_latest", "session.json")
        if not os.path.exists(path):
            raise ConnectionError(
                f"no running ember cluster found (looked for {path}); start one with "
                "`ember start --head` or call ember.init() without an address")
        info = _read_json(path)
    else:
        address = address.removeprefix("ember://").removeprefix("ray://")
        info = None
        # Newest first, and only live nodes: a node killed with SIGKILL
        # leaves its session file, and a restarted one may reuse the address.
        for path in sorted(glob.glob(os.path.join(root, "session_*", "session.json")), reverse=True):
            try:
                candidate = _read_json(path)
            except (OSError, ValueError):
                continue  # a session being written or removed
            if candidate.get("address") == address and _alive(candidate.get("pid", 0)):
                info = candidate
                break
        if info is None:
            raise ConnectionError(
                f"no ember session with address {address} found under {root}; is the cluster running "
                "on this machine? (set EMBER_TMPDIR if it uses another session root)")
    token = os.environ.get("EMBER_TOKEN")
    if token:
        info["token"] = token
    return info


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is not alive
    except (OSError, IndexError):
        return True


class LocalNode:
    """A node daemon started by this process; ``stop()`` ends it."""

    def __init__(self, process: subprocess.Popen, info: dict, log_path: str, temp_dir: str):
        self.process = process
        self.info = info
        self.log_path = log_path
        self.temp_dir = temp_dir

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin, SIGTERM, wait up to ``timeout``, then SIGKILL."""
        proc = self.process
        if proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass  # the pipe is already broken: the node is exiting
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass  # exited between poll and signal
        elif proc.stdin is not None:
            proc.stdin.close()
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()


def _log_tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def start_local_node(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict | None = None,
    object_store_memory: int | None = None,
    spill_dir: str | None = None,
    env: dict | None = None,
) -> LocalNode:
    """Start head + node as a child process and wait until it is ready.

    ``spill_dir``: where the node spills objects when its store is full;
    ``env``: extra environment variables for the node (``EMBER_*`` settings).
    """
    binary = find_binary()
    temp_dir = tempfile.mkdtemp(prefix="ember-driver-")
    ready_file = os.path.join(temp_dir, "ready.json")
    log_path = os.path.join(temp_dir, "node.log")
    cmd = [binary, "start", "--head", "--block", "--port", "0", "--ready-file", ready_file,
           "--python", sys.executable, "--exit-with-stdin"]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if resources:
        cmd += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        cmd += ["--object-store-memory", str(int(object_store_memory))]
    if spill_dir is not None:
        cmd += ["--spill-dir", str(spill_dir)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                close_fds=True, env={**os.environ, **env} if env else None)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if os.path.exists(ready_file):
            try:
                info = _read_json(ready_file)
                break
            except ValueError:
                pass  # written but not complete yet
        code = proc.poll()
        if code is not None:
            raise RuntimeError(f"the ember node exited with code {code} before it was ready "
                               f"(command: {' '.join(cmd)}); log {log_path}:\n{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the ember node was not ready after {READY_TIMEOUT_S:.0f}s; "
                               f"log {log_path}:\n{_log_tail(log_path)}")
        time.sleep(_POLL_S)
    return LocalNode(proc, info, log_path, temp_dir)
