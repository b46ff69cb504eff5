"""The one training checkpoint: ``last.pth`` in a run's folder, written atomically, refused when its settings
differ from the run asked for.

It holds the model, the optimizer, the scheduler, the scaler, anything a job adds (an EMA's weights), the loop's
state (epoch, step inside it, updates, log, partial loss sums, random streams) and the identity of the run
(architecture or space, recipe, data, process count). ``nas retrain`` and ``nas supernet train`` both keep theirs
this way; a proxy trial is too short to need one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from .loop import LoopState
from .step import Training

STATE_FILE = "last.pth"
CHECKPOINT_EVERY_S = 600.0  # a checkpoint inside an epoch this often: a kill loses at most this much training


class CheckpointMismatch(ValueError):
    """A checkpoint of another run in the folder asked for; the message names what differs."""


def load_checkpoint(path: Path, identity: dict[str, Any], error: Callable[[str], Exception] = CheckpointMismatch,
                    what: str = "training") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if there is none); ``error(message)`` is raised when it belongs to a run
    with another identity."""
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload["identity"] != identity:
        changed = sorted(k for k in identity if payload["identity"].get(k) != identity[k])
        raise error(f"{path.parent} holds a {what} with other settings ({', '.join(changed)}); resume with the "
                    "same ones, or choose another --out")
    return payload


def save_checkpoint(path: Path, identity: dict[str, Any], training: Training, state: LoopState,
                    extra: dict[str, Any] | None = None) -> None:
    """Write the checkpoint (to a temporary file, then renamed: a kill while saving leaves the previous one)."""
    payload = {"identity": identity, "state": state.to_dict(), "model": training.model.state_dict(),
               "optimizer": training.optimizer.state_dict(),
               "scheduler": training.scheduler.state_dict() if training.scheduler is not None else None,
               "scaler": training.scaler.state_dict() if training.scaler is not None else None, **(extra or {})}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def restore_checkpoint(payload: dict[str, Any], training: Training) -> LoopState:
    """Load a checkpoint's weights and optimizer, scheduler and scaler states into ``training``; its loop state."""
    training.model.load_state_dict(payload["model"])
    training.optimizer.load_state_dict(payload["optimizer"])
    if training.scheduler is not None and payload.get("scheduler") is not None:
        training.scheduler.load_state_dict(payload["scheduler"])
    if training.scaler is not None and payload.get("scaler"):
        training.scaler.load_state_dict(payload["scaler"])
    return LoopState.from_dict(payload["state"])
