"""``get_runtime_context()``: ids and resources of the current driver or task."""

from __future__ import annotations

from ember._private import state


class RuntimeContext:
    """Ray's RuntimeContext: the job, node, worker and task this code runs in."""

    def __init__(self, rt):
        self._rt = rt

    def _current(self):
        return self._rt.current_task if self._rt is not None else None

    def get_job_id(self) -> str:
        """The job id (hex)."""
        task = self._current()
        if task is not None and task.spec.job_id:
            return task.spec.job_id.hex()
        return self._rt.job_id.hex()

    def get_node_id(self) -> str:
        """The node id (hex)."""
        return self._rt.node_id.hex()

    def get_worker_id(self) -> str:
        """The worker id (hex; empty in a driver)."""
        return self._rt.worker_id.hex()

    def get_task_id(self) -> str | None:
        """The running task's id (hex), None in a driver."""
        task = self._current()
        return task.spec.task_id.hex() if task is not None else None

    def get_actor_id(self) -> str | None:
        """None: actors are not supported yet."""
        return None

    def get_task_name(self) -> str | None:
        task = self._current()
        return task.spec.name if task is not None else None

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task holds ({} in a driver)."""
        task = self._current()
        return dict(task.assigned_resources) if task is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """Accelerator ids of the running task, by kind."""
        task = self._current()
        return {"GPU": list(task.gpu_ids) if task is not None else []}

    def get_node_address(self) -> str:
        return self._rt.node_address

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    def get_namespace(self) -> str:
        return self._rt.namespace

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    @property
    def task_id(self) -> str | None:
        return self.get_task_id()

    @property
    def worker_id(self) -> str:
        return self.get_worker_id()

    def was_current_actor_reconstructed(self) -> bool:
        return False

    def get(self) -> dict:
        """The context as a dict (Ray's deprecated form)."""
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "task_id": self.get_task_id(),
                "namespace": self.namespace}


def get_runtime_context() -> RuntimeContext:
    """The context of the current driver or task."""
    rt = state.runtime
    if rt is None:
        from ember._private.api import auto_init

        rt = auto_init()
    return RuntimeContext(rt)
