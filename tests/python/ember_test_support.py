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
