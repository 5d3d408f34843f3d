"""How many threads a worker's math libraries use: OMP_NUM_THREADS as Ray sets it.

As in Ray, unless the user set ``OMP_NUM_THREADS``, a task runs with it set to
the CPUs it holds (rounded down, at least 1), and an actor's calls to the
CPUs the actor holds (1 without ``num_cpus``). Without that, every worker's
BLAS (numpy's OpenBLAS) starts one thread per core of the machine, and N
workers of one-CPU tasks run N x cores threads on the cores.

The fork server sets ``OMP_NUM_THREADS=1`` before it imports numpy (a BLAS
sizes its pool when it loads) and marks it as its own choice
(``EMBER_OMP_NUM_THREADS_DEFAULTED``); every worker it forks starts there. A
task holding more CPUs sets the variable and resizes the pools already
loaded in the process (OpenBLAS, OpenMP, MKL: their ``*_set_num_threads``),
and the next task sets them back. A value the user set is never changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

ENV = "OMP_NUM_THREADS"
#: Set (to "1") by the fork server when it chose OMP_NUM_THREADS itself.
DEFAULTED_ENV = "EMBER_OMP_NUM_THREADS_DEFAULTED"

# (library file name contains, setter symbols, getter symbols)
_LIBRARIES = (
    ("openblas", ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                  "openblas_set_num_threads64_", "openblas_set_num_threads"),
     ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
      "openblas_get_num_threads64_", "openblas_get_num_threads")),
    ("gomp", ("omp_set_num_threads",), ("omp_get_max_threads",)),
    ("iomp", ("omp_set_num_threads",), ("omp_get_max_threads",)),
    ("libomp", ("omp_set_num_threads",), ("omp_get_max_threads",)),
    ("mkl_rt", ("MKL_Set_Num_Threads",), ("MKL_Get_Max_Threads",)),
)
_BY_KIND = {entry[0]: entry for entry in _LIBRARIES}


def default_for_workers(environ=os.environ) -> None:
    """Before the math libraries load: OMP_NUM_THREADS=1 unless already set."""
    if ENV not in environ:
        environ[ENV] = "1"
        environ[DEFAULTED_ENV] = "1"


def _loaded_libraries() -> list[tuple[str, str]]:
    """(path, kind) of the math libraries mapped in this process."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if not path or ".so" not in path:
                    continue
                path = "/" + path
                name = os.path.basename(path)
                for kind, _, _ in _LIBRARIES:
                    if kind in name and path not in found:
                        found[path] = kind
    except OSError:
        return []
    return list(found.items())


def _functions(which: int) -> list[tuple[str, object]]:
    """(path, function) of each loaded library's setter (which=1) or getter (2)."""
    out = []
    for path, kind in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _BY_KIND[kind][which]:
            function = getattr(lib, symbol, None)
            if function is not None:
                out.append((path, function))
                break
    return out


def pool_threads() -> dict[str, int]:
    """Threads each loaded math library would use now, by library path."""
    out = {}
    for path, getter in _functions(2):
        getter.restype = ctypes.c_int
        out[path] = int(getter())
    return out


def set_pools(n: int) -> None:
    """Size every loaded math library's pool to ``n`` threads."""
    for _, setter in _functions(1):
        # A library that refuses keeps its size.
        with contextlib.suppress(Exception):
            setter(ctypes.c_int(n))


class Threads:
    """OMP_NUM_THREADS and the loaded pools of one worker process."""

    def __init__(self, environ=os.environ):
        self.environ = environ
        # Only a value the fork server chose is ours to change.
        self.managed = environ.get(DEFAULTED_ENV) == "1" and environ.get(ENV) == "1"
        self.current = 1

    def set_for_cpus(self, cpus: float) -> None:
        """Size everything for a task (or actor) holding ``cpus`` CPUs."""
        n = max(int(cpus), 1)
        if n == self.current or not self.managed:
            return
        self.environ[ENV] = str(n)
        set_pools(n)
        self.current = n
