"""The one training checkpoint: ``last.pth`` in a run's folder, written whole or not at all, refused when its
settings differ from the run asked for or when it is damaged.

It holds the model, the optimizer, the scheduler, the scaler, anything a job adds (an EMA's weights), the loop's
state (epoch, step inside it, updates, log, partial loss sums, random streams) and the identity of the run
(architecture or space, recipe, data, process count). ``nas retrain`` and ``nas supernet train`` both keep theirs
this way; a proxy trial is too short to need one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch

from ..files import StateError, load_torch, replacing
from .loop import LoopState
from .step import Training

logger = logging.getLogger(__name__)

STATE_FILE = "last.pth"
CHECKPOINT_EVERY_S = 600.0  # a checkpoint inside an epoch this often: a kill loses at most this much training


class CheckpointMismatch(ValueError):
    """A checkpoint of another run in the folder asked for; the message names what differs."""


def load_checkpoint(path: Path, identity: dict[str, Any], error: Callable[[str], Exception] = CheckpointMismatch,
                    what: str = "training") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if there is none); ``error(message)`` is raised when it belongs to a run
    with another identity, a one-line ``StateError`` when it is damaged (the file is left as it is).

    A save is written beside the checkpoint and renamed over it, so a kill while saving leaves the previous
    checkpoint whole and a half-written file beside it: that one is never loaded; it is removed, and said so."""
    for partial in half_written(path):
        logger.info(f"{partial} is a half-written checkpoint (a kill or a full disk while saving): ignored and removed; "
              + (f"resuming from {path.name}" if path.exists() else "no earlier checkpoint, starting afresh"))
        partial.unlink(missing_ok=True)
    if not path.exists():
        return None
    way_out = f"restore it, or move it aside to start the {what} again from its first epoch (it was left as it is)"
    payload = load_torch(path, f"{what} checkpoint", way_out)
    if not isinstance(payload, dict) or not isinstance(payload.get("identity"), dict):
        raise StateError(f"{path} is not a {what} checkpoint of this version: {way_out}")
    if payload["identity"] != identity:
        changed = sorted(k for k in identity if payload["identity"].get(k) != identity[k])
        raise error(f"{path.parent} holds a {what} with other settings ({', '.join(changed)}); resume with the "
                    "same ones, or choose another --out")
    return payload


def save_checkpoint(path: Path, identity: dict[str, Any], training: Training, state: LoopState,
                    extra: dict[str, Any] | None = None) -> None:
    """Write the checkpoint whole or not at all (``nas.files.replacing``): a kill or a full disk while saving
    leaves the previous one."""
    payload = {"identity": identity, "state": state.to_dict(), "model": training.model.state_dict(),
               "optimizer": training.optimizer.state_dict(),
               "scheduler": training.scheduler.state_dict() if training.scheduler is not None else None,
               "scaler": training.scaler.state_dict() if training.scaler is not None else None, **(extra or {})}
    with replacing(path) as tmp:
        torch.save(payload, tmp)


def half_written(path: Path) -> list[Path]:
    """Files a save that did not finish left beside ``path`` (this version's and the ``.tmp`` of earlier ones)."""
    return sorted(path.parent.glob(f".{path.stem}.*.partial{path.suffix}")) + \
        [p for p in [path.with_suffix(".tmp")] if p.is_file()]


def restore_checkpoint(payload: dict[str, Any], training: Training) -> LoopState:
    """Load a checkpoint's weights and optimizer, scheduler and scaler states into ``training``; its loop state."""
    training.model.load_state_dict(payload["model"])
    training.optimizer.load_state_dict(payload["optimizer"])
    if training.scheduler is not None and payload.get("scheduler") is not None:
        training.scheduler.load_state_dict(payload["scheduler"])
    if training.scaler is not None and payload.get("scaler"):
        training.scaler.load_state_dict(payload["scaler"])
    return LoopState.from_dict(payload["state"])
