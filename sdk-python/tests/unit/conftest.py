import gc

import pytest
from fakenode import FakeNode

from ember._private import state
from ember._private.runtime import CoreRuntime


@pytest.fixture
def fake_node(tmp_path):
    node = FakeNode(tmp_path)
    yield node
    node.close()


@pytest.fixture
def runtime(fake_node):
    rt = CoreRuntime(fake_node.path, "secret")
    state.runtime = rt
    yield rt
    state.runtime = None
    gc.collect()
    rt.shutdown()
