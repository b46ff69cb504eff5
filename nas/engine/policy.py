"""The one precision, memory-format and seeding policy of every training.

- Precision: bfloat16 autocast on a CUDA device that has it (float16 with a gradient scaler on one that does not),
  full float32 on the CPU (bfloat16 autocast measured no faster there for our models, and CPU figures stay
  comparable with every recorded run), as a recipe's ``amp`` asks.
- Memory format: channels_last everywhere. cuDNN's convolutions prefer it on a GPU, and the recorded CPU runs of
  the proxy were trained in it, so keeping it on the CPU keeps their numbers.
- Seeding: the initial weights follow from the seed alone (``seed_init``: Python, NumPy and torch seeded with it,
  the rule the recorded proxy runs were trained under); every other random draw of an epoch from (seed, epoch,
  rank) (``seed_epoch``, and the epoch plans of ``nas.engine.batches``). This is what makes a resumed run the run
  it resumes, and a run's numbers independent of how many others share its device.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import numpy as np
import torch

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


class PolicyError(ValueError):
    """A precision asked for that the device cannot run; one line naming it and what is accepted."""


@dataclass(frozen=True)
class Policy:
    """Where and in which precision a training runs. Built once per training by ``Policy.for_device``."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32

    @classmethod
    def for_device(cls, device: str | torch.device, amp: str = "auto") -> "Policy":
        device = torch.device(device)
        if amp not in AMP_CHOICES:
            raise PolicyError(f"amp {amp!r} is not supported; accepted: {', '.join(AMP_CHOICES)}")
        if device.type != "cuda":
            if amp in ("bf16", "fp16"):
                raise PolicyError(f"amp {amp!r} needs a CUDA device (training on {device}); use auto or off")
            return cls(device, None)
        if amp == "off":
            return cls(device, None)
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return cls(device, torch.float16)
        return cls(device, torch.bfloat16)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: part of what a training is (a study, an ablation's reuse and a pilot's
        seed pair hold one precision, never a mix)."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast in the policy's dtype (a no-op context in float32). Its weight cache is off: every weight of
        our models is cast once per forward anyway, and a cache would be frozen into a captured CUDA graph."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=False)

    def scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler where float16 needs one (bfloat16 and float32 do not)."""
        return torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on the device in the policy's memory format."""
        return model.to(self.device, memory_format=self.memory_format)

    def describe(self) -> str:
        precision = "float32" if self.amp_dtype is None else f"{str(self.amp_dtype).removeprefix('torch.')} autocast"
        return f"{self.device}, {precision}, channels_last"


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of (seed, epoch, rank)."""
    return (seed * 1_000_003 + epoch * 7919 + rank) % 2**31


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (every device) from (seed, epoch, rank): timm's Mixup draws from NumPy, its
    transforms and drop-path from Python and torch."""
    value = epoch_seed(seed, epoch, rank)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def rng_state() -> dict:
    """Every global random stream, for a checkpoint taken inside an epoch."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_init(seed: int) -> None:
    """Seed every stream with ``seed`` itself: a model built next has the weights of this seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
