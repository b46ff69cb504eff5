"""What one training step is: the ``Training`` value the loop runs, and the update it makes (gradients zeroed,
the step's forward and backward, clipping, the optimizer step), eagerly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import swiftformer._torchvision_fix  # noqa: F401  (before timm)

import torch
from timm.utils import dispatch_clip_grad
from torch import nn

from .batches import EpochSource
from .policy import Policy

if TYPE_CHECKING:
    from .loop import LoopState

#: one step: forward and backward (through ``backward``) on a batch, given where the loop stands (the supernet's
#: subnets follow from the epoch and step); returns the step's losses, detached
StepFn = Callable[[torch.Tensor, torch.Tensor, "LoopState"], torch.Tensor]


@dataclass
class Training:
    """One training as a value the loop runs."""

    model: nn.Module  # the module whose parameters the optimizer holds (unwrapped from DDP)
    optimizer: torch.optim.Optimizer
    source: EpochSource
    policy: Policy
    step: StepFn
    scheduler: Any = None  # timm's: ``step_update`` after each update, ``step`` after each epoch
    scaler: torch.amp.GradScaler | None = None
    clip_grad: float | None = None
    clip_mode: str = "norm"
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    after_update: Callable[[int], None] | None = None  # e.g. the EMA's update, given the update count
    seed: int = 0
    rank: int = 0
    trained: nn.Module | None = None  # the module put in train mode each epoch (default: ``model``)


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Accumulate ``loss``'s gradients (scaled under float16); several calls before one update add up, as the
    supernet's sandwich does."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def classification_step(model: nn.Module, criterion: nn.Module, policy: Policy,
                        scaler: torch.amp.GradScaler | None) -> StepFn:
    """The plain step: ``criterion(model(x), y)`` under the policy's autocast, then backward."""

    def step(inputs: torch.Tensor, targets: torch.Tensor, state: "LoopState") -> torch.Tensor:
        with policy.autocast():
            loss = criterion(model(inputs), targets)
        backward(loss, scaler)
        return loss.detach().float()

    return step


def apply_update(training: Training) -> None:
    """One optimizer step on the accumulated gradients, clipped (after unscaling) when the training says so."""
    optimizer, scaler = training.optimizer, training.scaler
    if scaler is not None:
        if training.clip_grad:
            scaler.unscale_(optimizer)
            dispatch_clip_grad(training.model.parameters(), training.clip_grad, mode=training.clip_mode)
        scaler.step(optimizer)
        scaler.update()
        return
    if training.clip_grad:
        dispatch_clip_grad(training.model.parameters(), training.clip_grad, mode=training.clip_mode)
    optimizer.step()


def eager_update(training: Training, inputs: torch.Tensor, targets: torch.Tensor, state: "LoopState") -> torch.Tensor:
    """One update: gradients released (set to None, so a parameter this step does not reach, such as an unused
    supernet slice, is left alone by the optimizer; and so a step after a replayed CUDA graph does not add to the
    graph's gradients), the step's forward and backward, the optimizer step."""
    training.optimizer.zero_grad(set_to_none=True)
    losses = training.step(inputs, targets, state)
    apply_update(training)
    return losses
