"""The one mutable module-level thing: the process's runtime.

``init()`` (in a driver) or ``worker_main.main`` (in a worker) sets
``runtime`` to a ``CoreRuntime``; ``shutdown()`` sets it back to ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ember._private.runtime import CoreRuntime

runtime: CoreRuntime | None = None
