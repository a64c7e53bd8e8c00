"""The GPUs a process may use, counted without starting CUDA in it.

CUDA reads `CUDA_VISIBLE_DEVICES` once, when it starts in a process; after that the process sees
what it saw. So whoever pins a process to one GPU (a sweep's workers, a run on a multi-GPU
machine) must count the GPUs without starting CUDA: torch's `device_count` asks NVML, which
does not; `is_available` starts CUDA.
"""

from __future__ import annotations

import os
import sys

GPU_ENV = "CUDA_VISIBLE_DEVICES"
# device nodes of NVIDIA, ROCm and WSL GPUs: without any of them torch sees no GPU, and a
# process need not import torch (seconds) to know
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, each as a child's `CUDA_VISIBLE_DEVICES` names it: the
    entries of this process's own `CUDA_VISIBLE_DEVICES` when it is set (indices, UUIDs or MIG
    names), else "0".."n-1"."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in GPU_NODES):
        return []
    import torch

    n = torch.cuda.device_count()
    if n <= 0:
        return []
    given = os.environ.get(GPU_ENV)
    if given is not None:
        return [e.strip() for e in given.split(",") if e.strip()][:n]
    return [str(i) for i in range(n)]


def cuda_started() -> bool:
    """Whether CUDA has started in this process (so `CUDA_VISIBLE_DEVICES` no longer counts)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())
