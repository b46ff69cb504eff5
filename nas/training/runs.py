"""What a retraining was asked for (``RetrainSpec``) and what it gave (``RetrainResult``): the values the command
line builds, ``retrain`` runs and ``outputs`` writes up."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftformer import SwiftFormerArch

from .recipe import Recipe


@dataclass
class RetrainResult:
    out: Path
    arch: SwiftFormerArch
    recipe: Recipe
    epochs_done: int
    log: list[dict[str, Any]]
    final: dict[str, float] = field(default_factory=dict)  # val/test top-1/top-5 of the model and the EMA
    seconds: float = 0.0
    finished: bool = False


@dataclass
class RetrainSpec:
    """What ``nas retrain`` was asked for, before anything is built."""

    ref: str
    data: str
    out: Path
    recipe: Recipe | None = None  # None: the official recipe for the architecture
    recipe_changes: dict[str, Any] = field(default_factory=dict)  # --epochs, --set ..., applied last
    recipe_file: str | None = None
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    init: str | None = None
    train_device: str = "auto"
    exports: tuple[str, ...] = ("onnx", "coreml")
    track: str | None = None  # tensorboard: the curve as event files in <out>/tensorboard (``nas.tracking``)
