"""The pre-imported process the node forks Python workers from.

``python -m ember._private.forkserver`` imports numpy, cloudpickle, ember (and
any modules named in ``EMBER_WORKER_PREIMPORT``), prints ``{"ready":true}`` and then reads one JSON
command per line on stdin::

    {"op":"fork","worker_id":"<hex>","env":{...}}

For each it forks a child that applies ``env`` and runs
``worker_main.main(worker_id)``; the parent answers
``{"worker_id":"<hex>","pid":N}``, and reports each child's exit as
``{"exited":PID,"status":CODE}`` (negative: killed by that signal), so the
node learns of workers that die before connecting. Children's stdout goes to stderr (the
node's log), so the command pipe stays clean. It exits when stdin closes.
A fork of a process that already imported numpy is ready in ~2 ms instead of
the ~0.3 s a fresh interpreter needs.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys

# Workers share this process's pages copy-on-write. A collection of the
# cyclic GC in a worker writes to the header of every object it examines,
# which copied most of the inherited heap into each worker (7 MB of private
# memory a worker, and 5-8 ms a full collection, here). So: no collections
# here while importing (no freed holes in shared pages either), everything
# frozen (out of the GC's reach) before each fork, the GC on in the child.
gc.disable()

# As in Ray, a worker's math libraries get one thread unless the user set
# OMP_NUM_THREADS (a task holding more CPUs gets more: cpu_threads.py). Set
# before numpy (or anything EMBER_WORKER_PREIMPORT names) loads and sizes its
# pool; `ember` itself, imported first by `python -m`, loads no numpy.
from ember._private import cpu_threads  # imports only the standard library

cpu_threads.default_for_workers()

import cloudpickle  # noqa: F401 - pre-imported for the workers
import numpy

import ember  # noqa: F401 - pre-imported for the workers
from ember._private import worker_main

#: Extra modules to import before forking, comma-separated
#: (``EMBER_WORKER_PREIMPORT``, e.g. ``pyarrow,torch``). numpy and cloudpickle
#: always are. pyarrow is not by default: it adds ~25 MB to every node's idle
#: memory and imports in well under 0.1 s when a task first needs it.
PREIMPORT_ENV = "EMBER_WORKER_PREIMPORT"


def _preimport() -> None:
    import importlib

    for name in filter(None, (n.strip() for n in os.environ.get(PREIMPORT_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"ember forkserver: cannot pre-import {name}: {exc}", file=sys.stderr)


_preimport()

# The first numpy.random.seed() of a process builds numpy's entropy machinery
# (7-20 ms here); done once now, each child's reseed below costs ~0.1 ms.
numpy.random.seed()


def _child(worker_id: str, env: dict) -> None:
    """In the forked child: detach from the command pipes, apply env, run the worker."""
    gc.enable()
    _die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)
    os.environ["EMBER_WORKER_ID"] = worker_id
    # Forked children share numpy's global random state: give each its own.
    numpy.random.seed()
    worker_main.main(worker_id)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the fork server, which
    itself dies with the node) exits, so a killed node leaves no workers."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _LineWriter:
    """Whole lines written with one os.write each, so a line written by the
    SIGCHLD handler never lands inside another."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: str) -> None:
        data = text.encode()
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def flush(self) -> None:
        pass


def _reap(stdout) -> None:
    """Reap exited children and report them."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        stdout.write(json.dumps({"exited": pid, "status": code}) + "\n")


def serve(stdin=None, stdout=None) -> None:
    """Answer fork commands until stdin closes."""
    stdin = stdin or sys.stdin
    stdout = stdout or _LineWriter(sys.stdout.fileno())
    signal.signal(signal.SIGCHLD, lambda signum, frame: _reap(stdout))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdout.write('{"ready":true}\n')
    stdout.flush()
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as exc:
            stdout.write(json.dumps({"error": f"bad command: {exc}"}) + "\n")
            stdout.flush()
            continue
        if cmd.get("op") != "fork":
            stdout.write(json.dumps({"error": f"unknown op {cmd.get('op')!r}"}) + "\n")
            stdout.flush()
            continue
        worker_id = cmd.get("worker_id", "")
        env = cmd.get("env") or {}
        stdout.flush()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(worker_id, env)
            except BaseException:  # noqa: BLE001 - report and exit, never return into the server loop
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        stdout.write(json.dumps({"worker_id": worker_id, "pid": pid}) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
