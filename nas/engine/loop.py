"""The one training loop: epochs of steps, a hook after each epoch, checkpoints that resume exactly.

Every training of the project runs through ``fit``: a proxy trial, a fidelity reference run, an ablation run, a
retraining and a supernet training. What differs between them is a value (``Training``): the model and its
optimizer, the batches (``nas.engine.batches``), what one step computes (a classification loss, or the
supernet's sandwich), what happens after an update (an EMA) and after an epoch (an evaluation, a pruning report,
a log row, a checkpoint).

No step waits on the host: losses are summed on the device and read back once per epoch, where divergence is
checked. A checkpoint (``nas.engine.checkpoint``) can be taken inside an epoch (every ``checkpoint_every_s``, and
when ``stop`` says the run's time is up); it holds the step reached, the partial loss sums and every random
stream, and the epoch's plan is a function of (seed, epoch), so a resumed run continues the run it resumes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..progress import progress
from .policy import rng_state, seed_epoch, set_rng_state
from .step import Training, eager_update


class Diverged(RuntimeError):
    """The training loss stopped being finite."""


@dataclass
class LoopState:
    """Where a training stands; what a checkpoint stores besides the weights."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished inside the next epoch (0 at an epoch boundary)
    updates: int = 0
    seconds: float = 0.0  # training wall time so far, over every call that resumed it
    log: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: torch.Tensor | None = None  # the unfinished epoch's summed step losses
    rng: dict | None = None  # every random stream, when the state was taken inside an epoch

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "updates": self.updates, "seconds": self.seconds,
                "log": self.log, "loss_sum": None if self.loss_sum is None else self.loss_sum.cpu(), "rng": self.rng}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoopState":
        return cls(data["epoch"], data.get("step", 0), data["updates"], data["seconds"], data["log"],
                   data.get("loss_sum"), data.get("rng"))


def updater(training: Training) -> Callable[[torch.Tensor, torch.Tensor, LoopState], torch.Tensor]:
    """The training's update, eager. (A replayed CUDA graph was tried and removed until a GPU run measures that it
    pays and is exact: its warm-up reset optimizer state and advanced the random streams.)"""
    return lambda inputs, targets, state: eager_update(training, inputs, targets, state)


def fit(training: Training, epochs: int, state: LoopState | None = None,
        end_epoch: Callable[[int, list[float]], dict[str, Any]] | None = None,
        checkpoint: Callable[[LoopState], None] | None = None, checkpoint_every_s: float | None = None,
        stop: Callable[[LoopState], bool] | None = None, progress_label: str | None = None) -> LoopState:
    """Train from ``state`` (a fresh one: from the start) until ``epochs`` epochs are done or ``stop(state)`` is
    true (asked after every step, ``state.step`` 0 at an epoch's end; the state is checkpointed there and returned
    unfinished).

    ``end_epoch(epoch, mean_losses)`` runs after each epoch (evaluation, pruning reports: it may raise to end the
    training) and returns what goes into the epoch's log row; ``checkpoint(state)`` saves after each epoch, every
    ``checkpoint_every_s`` seconds inside one, and when stopped."""
    state = state or LoopState()
    source, policy = training.source, training.policy
    trained = training.trained or training.model
    steps = source.steps_per_epoch
    update = updater(training)
    while state.epoch < epochs:
        epoch = state.epoch
        t0 = time.perf_counter()
        last_save = time.monotonic()
        if state.step and state.rng is not None:
            set_rng_state(state.rng)  # inside an epoch: the streams as they were at the checkpoint
        else:
            seed_epoch(training.seed, epoch, training.rank)
        trained.train()
        loss_sum = state.loss_sum.to(policy.device) if state.loss_sum is not None else None
        report = progress(progress_label.format(epoch=epoch + 1, epochs=epochs)) if progress_label else None
        images, clock = 0, time.perf_counter()  # the images of this call's part of the epoch, and since when
        for inputs, targets in source.epoch(epoch, state.step):
            if training.mixup is not None:
                inputs, targets = training.mixup(inputs, targets)
            losses = update(inputs, targets, state)  # (the step sees the loop's state, ``step`` not yet counted)
            state.updates += 1
            if training.after_update is not None:
                training.after_update(state.updates)
            if training.scheduler is not None:
                training.scheduler.step_update(num_updates=state.updates)
            loss_sum = losses if loss_sum is None else loss_sum + losses
            state.step += 1
            images += inputs.shape[0]
            if report is not None:
                report(state.step, steps)
            due = checkpoint_every_s is not None and time.monotonic() - last_save >= checkpoint_every_s
            stopping = stop is not None and state.step < steps and stop(state)
            if due or stopping:
                state.loss_sum, state.rng = loss_sum, rng_state()
                state.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                if checkpoint is not None:
                    checkpoint(state)
                last_save = time.monotonic()
            if stopping:
                return state
        if training.scheduler is not None:
            training.scheduler.step(epoch + 1)
        sums = loss_sum.reshape(-1).tolist() if loss_sum is not None else [float("nan")]  # the epoch's one sync
        means = [value / steps for value in sums]
        if not all(math.isfinite(v) for v in means):
            raise Diverged(f"loss became {means[0]} in epoch {epoch + 1} (updates up to {state.updates})")
        # throughput over the same span as the images counted (a mid-epoch checkpoint restarts ``t0``, not this)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": training.optimizer.param_groups[0]["lr"],
                               "train_loss": means[0],
                               "images_per_s": images / max(time.perf_counter() - clock, 1e-9)}
        if end_epoch is not None:
            row.update(end_epoch(epoch + 1, means))
        state.seconds += time.perf_counter() - t0
        row["seconds"] = state.seconds
        state.log.append(row)
        state.epoch, state.step, state.loss_sum, state.rng = epoch + 1, 0, None, None
        if checkpoint is not None:
            checkpoint(state)
        if stop is not None and state.epoch < epochs and stop(state):
            return state
    return state
