"""The retraining recipe: every setting of a ``nas retrain`` run, as one value written next to its results.

Defaults are SwiftFormer's official recipe (``main.py`` of Amshaker/SwiftFormer, on timm 0.5.4): AdamW at lr
2e-3 for a global batch of 2048, weight decay 0.025, cosine schedule with 5 warm-up epochs from 1e-6 to a floor
of 1e-5, adaptive gradient clipping 0.01, RandAugment m9, random erasing 0.25, label smoothing 0.1, mixup 0.8 and
cutmix 1.0, repeated augmentation x3, EMA 0.99996 per step, hard token distillation 0.5/0.5. The released
variants override augmentation (``VARIANT_OVERRIDES``); a searched architecture takes the overrides of the
released variant nearest in parameters.

The learning rate follows timm's ``--lr-base`` rule: ``lr = lr_base * scale(global batch / lr_base_size)``, so at
the official batch it is the official 2e-3 and smaller batches get a proportionally gentler step (square-root
scaling, timm's default for adaptive optimisers; the official code does not scale because it always ran 2048).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from swiftformer import VARIANTS, SwiftFormerArch, count_params

from ..files import read_text, write_text
from ..identity import CROP_DRAWS


class RecipeError(ValueError):
    """A recipe value or file that cannot be used; the message names it and what is accepted."""


class RetrainError(ValueError):
    """A retraining that cannot start as asked (reference, teacher, init, resume); one line for the user.

    Defined here, with the recipe, so that the command line can name it without importing the training loop."""


CHOICES: dict[str, tuple[Any, ...]] = {
    "sched": ("cosine", "tanh", "poly", "step", "multistep", "constant"),
    "lr_base_scale": ("sqrt", "linear", "none"),
    "clip_mode": ("agc", "norm", "value"),
    "mixup_mode": ("batch", "pair", "elem"),
    "re_mode": ("pixel", "rand", "const"),
    "interpolation": ("bicubic", "bilinear", "nearest", "random"),
    "distill_type": ("hard", "soft"),
    "amp": ("auto", "off", "bf16", "fp16"),
    "eval_model": ("model", "ema"),
    "crop_draw": CROP_DRAWS,
}


@dataclass(frozen=True)
class Recipe:
    epochs: int = 300
    batch_size: int = 128  # per process; the global batch is this times the number of processes
    resolution: int | None = None  # training side; None: the architecture's
    opt: str = "adamw"
    lr: float | None = None  # None: from lr_base, lr_base_size and lr_base_scale
    lr_base: float = 2e-3
    lr_base_size: int = 2048
    lr_base_scale: str = "sqrt"
    weight_decay: float = 0.025
    opt_eps: float = 1e-8
    sched: str = "cosine"
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    clip_grad: float | None = 0.01
    clip_mode: str = "agc"
    smoothing: float = 0.1
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4  # used only when auto_augment is off, as in timm
    interpolation: str = "bicubic"
    scale_min: float = 0.08  # RandomResizedCrop's smallest area fraction
    crop_draw: str = "torchvision"  # how the device draws it (nas.identity.CROP_DRAWS; "clipped": before 2026-12-07)
    hflip: float = 0.5
    re_prob: float = 0.25
    re_mode: str = "pixel"
    re_count: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    aug_repeats: int = 3
    crop_pct: float = 0.875  # evaluation: resize to side / crop_pct, centre crop (the official 256 -> 224)
    model_ema: bool = True
    model_ema_decay: float = 0.99996
    model_ema_warmup: bool = False
    eval_model: str = "model"  # the weights whose accuracy is the headline (the official code evaluates the model)
    distill_type: str = "hard"
    task_loss_weight: float = 0.5  # the rest goes to the distillation head's loss
    eval_every: int = 1
    seed: int = 0
    amp: str = "auto"  # auto: bfloat16 (or float16 with a scaler) on CUDA, off on CPU
    sync_bn: bool = False
    loader_workers: int = 2  # DataLoader processes per training process, where the images stream from disk
    val_fraction: float = 0.1  # the same hold-out as the search (part of the data's identity)
    val_seed: int = 0

    def __post_init__(self) -> None:
        for name, accepted in CHOICES.items():
            if getattr(self, name) not in accepted:
                raise RecipeError(f"recipe {name} {getattr(self, name)!r} is not supported; accepted: "
                                  f"{', '.join(map(str, accepted))}")
        for name in ("epochs", "batch_size", "lr_base_size", "eval_every", "aug_repeats", "re_count"):
            if getattr(self, name) < 1:
                raise RecipeError(f"recipe {name} {getattr(self, name)!r} must be a positive integer")
        if self.resolution is not None and self.resolution < 32:
            raise RecipeError(f"recipe resolution {self.resolution!r} must be at least 32 (five stride-2 stages)")
        for name in ("smoothing", "re_prob", "mixup_prob", "mixup_switch_prob", "hflip", "task_loss_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise RecipeError(f"recipe {name} {getattr(self, name)!r} must be between 0 and 1")
        if not 0 < self.model_ema_decay < 1:
            raise RecipeError(f"recipe model_ema_decay {self.model_ema_decay!r} must be between 0 and 1 (exclusive)")
        if not 0 < self.crop_pct <= 1 or not 0 < self.scale_min <= 1:
            raise RecipeError("recipe crop_pct and scale_min must be in (0, 1]")
        if not 0 < self.val_fraction < 1:
            raise RecipeError(f"recipe val_fraction {self.val_fraction!r} must be between 0 and 1 (exclusive)")
        if self.loader_workers < 0 or self.warmup_epochs < 0 or self.weight_decay < 0:
            raise RecipeError("recipe loader_workers, warmup_epochs and weight_decay must not be negative")
        if self.eval_model == "ema" and not self.model_ema:
            raise RecipeError("recipe eval_model 'ema' needs model_ema: true")
        if self.lr is not None and self.lr <= 0:
            raise RecipeError(f"recipe lr {self.lr!r} must be positive")

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def learning_rate(self, world_size: int = 1) -> float:
        """The peak learning rate for this many processes (``lr`` if given, else the scaled ``lr_base``)."""
        if self.lr is not None:
            return self.lr
        ratio = self.batch_size * world_size / self.lr_base_size
        factor = {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[self.lr_base_scale]
        return self.lr_base * factor

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except ``crop_draw`` where it is the clipped draw: a retraining recorded before the draw was
        a choice keeps its identity, and one drawn as torchvision draws has another."""
        data = dataclasses.asdict(self)
        if data["crop_draw"] == "clipped":
            del data["crop_draw"]
        return data

    @classmethod
    def recorded(cls, identity: Mapping[str, Any]) -> "Recipe":
        """The recipe a record's identity (``to_dict``) names: one that names no crop draw was drawn clipped."""
        return cls.from_dict({"crop_draw": "clipped", **identity})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "Recipe | None" = None, where: str = "recipe") -> "Recipe":
        """``base`` (default: the official recipe) with ``data``'s values; unknown keys and bad types are errors."""
        known = {f.name: f for f in fields(cls)}
        if "workers" in data and "loader_workers" not in data:  # the key's name before --workers meant trainings
            data = {("loader_workers" if k == "workers" else k): v for k, v in data.items()}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: "
                              f"{', '.join(known)}")
        base = base or cls()
        return dataclasses.replace(base, **{k: _coerce(k, v, getattr(base, k), where) for k, v in data.items()})

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """YAML that ``--recipe`` reads back; ``extra`` goes into a leading comment (what it was resolved for)."""
        header = "".join(f"# {k}: {v}\n" for k, v in (extra or {}).items())
        write_text(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, base: "Recipe | None" = None) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(read_text(path, "recipe file", "give --recipe a YAML file of recipe keys")) or {}
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, Mapping):
            raise RecipeError(f"recipe file {str(path)!r} must hold a mapping of recipe keys to values")
        return cls.from_dict(data, base, where=str(path))


def _coerce(name: str, value: Any, default: Any, where: str) -> Any:
    """YAML and ``--set`` give strings, ints and floats; turn each into the type its default has."""
    if isinstance(value, str) and value.lower() in ("null", "none", "~", ""):
        value = None
    if value is None:
        if name in ("lr", "resolution", "clip_grad", "auto_augment"):
            return None
        raise RecipeError(f"{where}: {name} may not be empty")
    kind = {"lr": float, "resolution": int, "clip_grad": float, "auto_augment": str}.get(name, type(default))
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "yes", "1")
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{where}: {name} {value!r} is not a {kind.__name__}") from None


# The official per-variant settings (``dist_train.sh``, README): XS trains without RandAugment (colour jitter
# instead) and without mixup/cutmix, S without mixup/cutmix, L1 and L3 with everything.
VARIANT_OVERRIDES: dict[str, dict[str, Any]] = {
    "xs": {"auto_augment": None, "mixup": 0.0, "cutmix": 0.0},
    "s": {"mixup": 0.0, "cutmix": 0.0},
    "l1": {},
    "l3": {},
}


def nearest_variant(arch: SwiftFormerArch) -> str:
    """The released variant whose parameter count (at ImageNet's 1000 classes) is nearest on a log scale."""
    params = count_params(arch.replace(num_classes=1000, in_chans=3))
    return min(VARIANTS, key=lambda v: abs(math.log(params / count_params(VARIANTS[v]))))


def official_recipe(arch: SwiftFormerArch) -> tuple[Recipe, str]:
    """The official recipe with the augmentation of the nearest released variant, and that variant's name."""
    name = nearest_variant(arch)
    return Recipe().replace(**VARIANT_OVERRIDES[name]), name
