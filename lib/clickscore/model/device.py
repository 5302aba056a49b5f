"""Which device a process computes on: the one choice training and scoring share."""

from __future__ import annotations

import os
import time

import torch


def pick_device(who: str, doing: str, gpu_address: str | None = None) -> torch.device:
    """CUDA when this process sees a GPU, else the CPU.

    With CUDA, the device is the process's `LOCAL_RANK` (set by TorchDistributor, which also
    narrows `CUDA_VISIBLE_DEVICES` to the GPUs Spark gave it), else `gpu_address` (the GPU
    Spark assigned a task, as the caller read it from its TaskContext), else the first. A
    process Spark assigned a GPU that CUDA cannot use (`CUDA_VISIBLE_DEVICES` set, no device
    visible) says so in one line: `who` ("train rank 0") is `doing` ("training") on the
    CPU."""
    if torch.cuda.is_available():
        if os.environ.get("LOCAL_RANK") is not None:
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if gpu_address is not None:
            return torch.device("cuda", int(gpu_address))
        return torch.device("cuda")
    assigned = os.environ.get("CUDA_VISIBLE_DEVICES") or gpu_address
    if assigned:
        print(f"{time.strftime('%H:%M:%S')} {who}: Spark assigned GPU {assigned} but CUDA sees "
              f"no device here; {doing} on the CPU", flush=True)
    return torch.device("cpu")
