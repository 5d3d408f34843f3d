"""Fixtures for the cross-component tests: real `ember` node processes on
127.0.0.1, real workers, real shared memory. Nothing is mocked."""

from __future__ import annotations

import os

import pytest
from ember_test_support import EMBER_BIN

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
