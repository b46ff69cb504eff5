"""A whole training step (forward, backward, clipping, optimizer step) captured once as a CUDA graph and replayed.

Small models at the proxies' sides are limited by kernel launches from one Python thread, not by arithmetic: an
XS step at batch 128 is several hundred small kernels. Replaying a captured graph launches them all at once.
This is what ``torch.compile(mode="reduce-overhead")`` does, without a compiler in the way.

Replays compute exactly what the eager step computes (the same kernels on the same tensors); the capture is
prepared so that the run is the eager run: a few warm-up steps (which CUDA needs before capture) run on a copy of
the weights' values that is put back afterwards, with the optimizer's moments and step counts zeroed, as a fresh
optimizer's are. The learning rate lives in a device tensor per parameter group, refreshed from what the
scheduler set before each replay. Batches of another shape (an epoch's last, partial batch) run eagerly, on the
same weights and optimizer state. If capture fails, the training says so once and runs eagerly throughout.

Only for CUDA, without a gradient scaler (bfloat16 or float32), with an optimizer that takes ``capturable``.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from .step import Training, apply_update, eager_update

WARMUP_STEPS = 3


def can_capture(training: Training) -> bool:
    return (training.policy.cuda and training.scaler is None
            and all(group.get("capturable", False) for group in training.optimizer.param_groups))


class GraphedUpdate:
    """``update(inputs, targets) -> losses``: replays the captured step for batches of the captured shape."""

    def __init__(self, training: Training, say: Callable[[str], None] | None = None):
        self.training = training
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.shape: tuple[torch.Size, torch.Size] | None = None
        self.lrs: list[torch.Tensor] = []

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return eager_update(self.training, inputs, targets)
        shape = (inputs.shape, targets.shape)
        if self.graph is None and self.shape is None:
            self.shape = shape
            try:
                self._capture(inputs, targets)
            except Exception as exc:  # noqa: BLE001 (any capture error: fall back to the eager step)
                self.failed = True
                self.say(f"note: CUDA graph capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                         "this training runs eagerly")
                return eager_update(self.training, inputs, targets)
        if self.graph is None or shape != self.shape:
            return eager_update(self.training, inputs, targets)
        for group, lr in zip(self.training.optimizer.param_groups, self.lrs):
            lr.fill_(float(group["lr"]))
        self.static_inputs.copy_(inputs)
        self.static_targets.copy_(targets)
        self.graph.replay()
        return self.static_losses.clone()

    def _capture(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        training = self.training
        model, optimizer = training.model, training.optimizer
        snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.static_inputs = inputs.clone()
        self.static_targets = targets.clone()
        groups = optimizer.param_groups
        floats = [float(g["lr"]) for g in groups]
        self.lrs = [torch.tensor(lr, dtype=torch.float32, device=inputs.device) for lr in floats]
        for group, lr in zip(groups, self.lrs):
            group["lr"] = lr
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                warm_up(training, self.static_inputs, self.static_targets, snapshot)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self.static_losses = _captured_step(training, self.static_inputs, self.static_targets)
            self.graph = graph
        except BaseException:
            with torch.no_grad():
                model.load_state_dict(snapshot)
                optimizer.state.clear()
            raise
        finally:
            for group, lr in zip(groups, floats):
                group["lr"] = lr


def warm_up(training: Training, inputs: torch.Tensor, targets: torch.Tensor, snapshot: dict[str, torch.Tensor],
            steps: int = WARMUP_STEPS) -> None:
    """Run ``steps`` updates (what CUDA needs before capture: the optimizer's state allocated, the kernels chosen),
    then put the weights and buffers back to ``snapshot`` and the optimizer's moments and step counts to zero, as
    a fresh optimizer has them: the training starts where it would have without the warm-up."""
    for _ in range(steps):
        eager_update(training, inputs, targets)
    with torch.no_grad():
        training.model.load_state_dict(snapshot)
        for state in training.optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()


def _captured_step(training: Training, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The step inside capture (the policy's autocast keeps no weight cache, which capture would freeze)."""
    losses = training.step(inputs, targets)
    apply_update(training)
    return losses
