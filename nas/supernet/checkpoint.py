"""A trained supernet on disk: ``supernet.pth`` (weights, the space, the settings it was trained with) and
``supernet.json`` (the same description, readable).

Everything a later user needs travels in the file, so ``--evaluator supernet:DIR`` and ``--init supernet:DIR``
rebuild the supernet without the training command: the space's spec (as ``SearchSpace.to_dict``), the task
(classes, channels), the data it was trained on and its val hold-out (a search must select on images the
supernet never trained on), and the training side (``downscale``: the side each architecture is trained and
scored at).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces import space_from_dict
from swiftformer import SwiftFormerArch

from ..files import UNREADABLE, load_torch, read_json, replacing, write_json
from ..identity import digest, training_side
from .model import SuperNet
from .spaces import SupernetError

CHECKPOINT = "supernet.pth"
DESCRIPTION = "supernet.json"
RETRAIN = "restore it, or train the supernet again with `nas supernet train --out` this folder"
STATE = "last.pth"


@dataclass(frozen=True)
class SupernetRecord:
    """What a trained supernet was trained on and how; ``identity`` is what a resumed training must match."""

    identity: dict[str, Any]
    data: str
    val_fraction: float
    val_seed: int
    downscale: float
    channels: int
    num_classes: int
    epochs: int
    seconds: float
    log: list[dict[str, Any]]

    def side(self, arch: SwiftFormerArch) -> int:
        """The input side ``arch`` is trained and scored at: its resolution / downscale, as the proxies do."""
        return training_side(arch.resolution, self.downscale)

    @property
    def digest(self) -> str:
        """Names this supernet (its settings and length), for a study's identity."""
        return digest({"identity": self.identity, "epochs": self.epochs})


def save_supernet(folder: Path, supernet: SuperNet, record: SupernetRecord) -> None:
    """Write ``supernet.pth`` and ``supernet.json``, each whole or not at all (a kill or a full disk leaves the
    previous ones)."""
    payload = {"state_dict": supernet.state_dict(), "space": supernet.space.to_dict(),
               "num_classes": supernet.num_classes, "in_chans": supernet.in_chans,
               "distillation": supernet.distillation, "record": record.__dict__}
    with replacing(folder / CHECKPOINT) as tmp:
        torch.save(payload, tmp)
    description = {"space": payload["space"], "num_classes": supernet.num_classes, "in_chans": supernet.in_chans,
                   "distillation": supernet.distillation, "largest": supernet.largest_arch().summary(),
                   "smallest": supernet.smallest_arch().summary(),
                   "parameters": sum(p.numel() for p in supernet.parameters()), "digest": record.digest,
                   **record.__dict__}
    write_json(folder / DESCRIPTION, description, default=str)


def load_supernet(folder: str | Path, device: str | torch.device = "cpu") -> tuple[SuperNet, SupernetRecord]:
    """The supernet trained in ``folder`` (eval mode) and its record; a one-line SupernetError if there is none."""
    folder = Path(folder)
    path = folder / CHECKPOINT
    if not folder.is_dir():
        raise SupernetError(f"supernet folder {str(folder)!r} does not exist; train one with `nas supernet train`")
    if not path.is_file():
        hint = ("its training has not finished: run the same `nas supernet train` again to resume"
                if (folder / STATE).is_file() else "train one there with `nas supernet train --out DIR`")
        raise SupernetError(f"{str(folder)!r} holds no {CHECKPOINT}: {hint}")
    payload = load_torch(path, "supernet checkpoint", RETRAIN)
    try:
        space = space_from_dict(payload["space"], where=str(path))
        supernet = SuperNet(space, payload["num_classes"], payload["in_chans"], payload["distillation"])
        supernet.load_state_dict(payload["state_dict"])
        record = SupernetRecord(**payload["record"])
    except UNREADABLE as exc:
        raise _unreadable(exc, path, "supernet checkpoint") from None
    return supernet.to(device).eval(), record


def load_snapshot(folder: str | Path, device: str | torch.device = "cpu") -> tuple[SuperNet, SupernetRecord]:
    """The weights of an unfinished training after its last finished epoch (``last.pth``), for measuring how the
    ranking grows during training; ``record.epochs`` counts the epochs behind them."""
    path = Path(folder) / STATE
    if not path.is_file():
        raise SupernetError(f"{str(folder)!r} holds no {STATE}: no supernet training has finished an epoch there")
    state = load_torch(path, "supernet training state", RETRAIN)
    try:
        identity = state["identity"]
        space = space_from_dict(identity["space"], where=str(path))
        supernet = SuperNet(space)
        supernet.load_state_dict(state["model"])
        progress = state["state"]  # the training engine's loop state (epochs finished, seconds, log)
        record = SupernetRecord(identity=identity, data=identity["data"],
                                val_fraction=identity["recipe"]["val_fraction"],
                                val_seed=identity["recipe"]["val_seed"], downscale=identity["sandwich"]["downscale"],
                                channels=space.in_chans, num_classes=space.num_classes, epochs=progress["epoch"],
                                seconds=progress["seconds"], log=progress["log"])
    except UNREADABLE as exc:
        raise _unreadable(exc, path, "supernet training state") from None
    return supernet.to(device).eval(), record


def _unreadable(exc: Exception, path: Path, what: str) -> SupernetError:
    """One line for a file this version cannot read (a SupernetError raised while reading passes through)."""
    if isinstance(exc, SupernetError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return SupernetError(f"{path} is not a {what} this version reads: {first[:200]}; {RETRAIN}")


def load_description(folder: str | Path) -> dict[str, Any]:
    """``supernet.json`` of ``folder`` (cheap: the weights are not read)."""
    return read_json(Path(folder) / DESCRIPTION, "supernet description", RETRAIN)
