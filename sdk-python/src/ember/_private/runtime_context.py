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
        """The id (hex) of the actor this code runs in; None outside an actor."""
        rt = self._rt
        return rt.actor_id.hex() if rt is not None and rt.actor_id else None

    def get_actor_name(self) -> str | None:
        """The name of the actor this code runs in (None outside one; "" if anonymous)."""
        rt = self._rt
        if rt is None or rt.actor_task is None:
            return None
        return rt.actor_task.spec.actor_creation.name

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()

    @property
    def current_actor(self):
        """The handle of the actor this code runs in; RuntimeError outside an actor."""
        rt = self._rt
        if rt is None or rt.actor_task is None:
            raise RuntimeError("This method is only available in an actor.")
        from ember._private.actor import ActorHandle

        return ActorHandle.from_creation(rt.actor_task.spec)

    def get_task_name(self) -> str | None:
        task = self._current()
        return task.spec.name if task is not None else None

    def _holder(self):
        """The task whose resources the running code holds (an actor's creation in an actor)."""
        rt = self._rt
        if rt is not None and rt.actor_task is not None:
            return rt.actor_task
        return self._current()

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task (or actor) holds ({} in a driver)."""
        task = self._holder()
        return dict(task.assigned_resources) if task is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """Accelerator ids of the running task (or actor), by kind."""
        task = self._holder()
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
