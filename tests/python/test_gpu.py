"""GPU scheduling on a machine with NVIDIA GPUs: the node detects them
through the CUDA driver (cudarc, loaded at run time), tasks that ask for GPUs
get CUDA_VISIBLE_DEVICES and can compute on them. Skipped where there is no
GPU (CI machines); `ember` itself runs unchanged on both."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ember_test_support import run_driver


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return (
        subprocess.run(
            check=False, args=["nvidia-smi", "-L"], capture_output=True
        ).returncode
        == 0
    )


pytestmark = pytest.mark.skipif(not _has_gpu(), reason="no NVIDIA GPU on this machine")


def test_detected_gpus_run_gpu_tasks():
    out = run_driver(
        """
        import os
        import ember
        ember.init(num_cpus=2)  # GPUs: detected, not given
        total = ember.cluster_resources().get("GPU", 0)
        print("GPUS", total)

        @ember.remote(num_gpus=1)
        def on_gpu():
            import torch
            x = torch.ones(1024, 1024, device="cuda")
            return os.environ["CUDA_VISIBLE_DEVICES"], ember.get_gpu_ids(), float((x @ x).sum())

        @ember.remote(num_gpus=0.5)
        def half():
            return os.environ["CUDA_VISIBLE_DEVICES"]

        visible, ids, value = ember.get(on_gpu.remote(), timeout=120)
        print("VISIBLE", visible, ids, value)
        print("HALVES", ember.get([half.remote(), half.remote()], timeout=120))
        ember.shutdown()
        """,
        timeout=300,
    )
    assert "GPUS" in out.stdout, out.stdout + out.stderr
    gpus = float(out.stdout.split("GPUS")[1].split()[0])
    assert gpus >= 1, out.stdout + out.stderr
    assert "VISIBLE 0 [0] 1073741824.0" in out.stdout, out.stdout + out.stderr
    assert "HALVES ['0', '0']" in out.stdout, out.stdout + out.stderr


def test_gpu_actor_keeps_its_device():
    out = run_driver(
        """
        import os
        import ember
        ember.init(num_cpus=2)

        @ember.remote(num_gpus=1)
        class Model:
            def __init__(self):
                import torch
                self.w = torch.ones(256, 256, device="cuda")

            def step(self):
                self.w = self.w * 2
                return os.environ["CUDA_VISIBLE_DEVICES"], float(self.w.sum())

        m = Model.remote()
        print("STEPS", ember.get([m.step.remote() for _ in range(3)], timeout=120))
        print("GPU_LEFT", ember.available_resources().get("GPU", 0))
        ember.shutdown()
        """,
        timeout=300,
    )
    assert "STEPS [('0', 131072.0), ('0', 262144.0), ('0', 524288.0)]" in out.stdout, out.stdout + out.stderr
    assert "GPU_LEFT 0" in out.stdout, out.stdout + out.stderr
