"""Fixtures for the cross-component tests: real `ember` node processes on
127.0.0.1, real workers, real shared memory. Nothing is mocked."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

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
os.environ.setdefault("EMBER_BIN", EMBER_BIN)


@pytest.fixture(scope="session", autouse=True)
def session_root(tmp_path_factory):
    """Keep every test cluster's session files in a private directory."""
    root = tmp_path_factory.mktemp("ember-sessions")
    os.environ["EMBER_TMPDIR"] = str(root)
    return root


@pytest.fixture(scope="module")
def cluster():
    """One embedded 2-CPU cluster shared by a test module."""
    import ember

    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, num_gpus=2, resources={"special": 1})
    yield ctx
    ember.shutdown()


def run_driver(code: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a driver program in a fresh interpreter (for tests that need their
    own cluster or environment)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
