"""Where training runs: ``auto`` (CUDA, then Apple's MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

This is the machine that trains candidates, not the phone whose latency is predicted (``--device``). Local
workers each take their own GPU (worker ``i`` gets ``cuda:i mod count``) instead of all sharing ``cuda:0``.
"""
from __future__ import annotations

import torch

TRAIN_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


class TrainDeviceError(ValueError):
    """A training device that does not exist on this machine; the message says which ones do."""


def resolve_train_device(name: str = "auto", worker: int = 0) -> torch.device:
    """The torch device for ``worker`` (0-based) given a ``--train-device`` value."""
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        name = "cuda" if cuda_count else "mps" if mps else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not mps:
            raise TrainDeviceError(f"training device 'mps' is not available here; {_available(cuda_count, mps)}")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not cuda_count:
            raise TrainDeviceError(f"training device {name!r} is not available here (no CUDA GPU); "
                                   f"{_available(cuda_count, mps)}")
        if name == "cuda":
            return torch.device("cuda", worker % cuda_count)
        index = name.partition(":")[2]
        if not index.isdigit() or int(index) >= cuda_count:
            raise TrainDeviceError(f"training device {name!r} does not exist; {_available(cuda_count, mps)}")
        return torch.device("cuda", int(index))
    raise TrainDeviceError(f"unknown training device {name!r}; accepted: {', '.join(TRAIN_DEVICES)}")


def _available(cuda_count: int, mps: bool) -> str:
    names = ["cpu"] + (["mps"] if mps else []) + [f"cuda:{i}" for i in range(cuda_count)]
    return f"available: auto, {', '.join(names)}"
