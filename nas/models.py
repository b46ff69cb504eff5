"""Model references, the one way every command names a model.

- ``swiftformer:<xs|s|l1|l3>``: a released SwiftFormer variant;
- ``timm:<name>``: any timm model (built without weights);
- a path to an architecture JSON file (``*.json``) of the SwiftFormer family.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import swiftformer._torchvision_fix  # noqa: F401

import timm
from torch import nn

import swiftformer
from swiftformer import VARIANTS, ArchitectureError, SwiftFormerArch


class ModelRefError(ValueError):
    """A model reference that names nothing buildable."""


@dataclass(frozen=True)
class ModelRef:
    text: str
    kind: str  # "swiftformer" or "timm"
    name: str  # variant or timm name; for architecture files, the file's stem
    arch: SwiftFormerArch | None = None  # set for SwiftFormer-family references

    def build(self, num_classes: int | None = None, resolution: int | None = None) -> nn.Module:
        """The model, randomly initialised; ``resolution`` matters for timm models with a fixed input size."""
        if self.arch is not None:
            changes = {k: v for k, v in (("num_classes", num_classes), ("resolution", resolution)) if v is not None}
            return swiftformer.SwiftFormer(self.arch.replace(**changes))
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        cfg = timm.models.get_pretrained_cfg(self.name)
        if resolution is not None and cfg is not None and cfg.fixed_input_size and cfg.input_size[-1] != resolution:
            kwargs["img_size"] = resolution  # position embeddings are sized for the input
        return timm.create_model(self.name, pretrained=False, **kwargs)

    @property
    def in_chans(self) -> int:
        return self.arch.in_chans if self.arch is not None else 3

    def default_resolution(self) -> int:
        if self.arch is not None:
            return self.arch.resolution
        cfg = timm.models.get_pretrained_cfg(self.name)
        return int(cfg.input_size[-1]) if cfg is not None else 224


def parse_model_ref(text: str) -> ModelRef:
    """Resolve ``text``; raise ModelRefError with a one-line reason when it names nothing."""
    text = text.strip()
    prefix, _, rest = text.partition(":")
    if prefix == "swiftformer" and rest:
        if rest.lower() not in VARIANTS:
            raise ModelRefError(f"unknown SwiftFormer variant {rest!r}; accepted: {', '.join(VARIANTS)}")
        return ModelRef(text, "swiftformer", rest.lower(), VARIANTS[rest.lower()])
    if prefix == "timm" and rest:
        if not timm.is_model(rest):
            close = timm.list_models(f"*{rest}*")[:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ModelRefError(f"unknown timm model {rest!r}{hint}")
        return ModelRef(text, "timm", rest)
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ModelRefError(f"architecture file {text!r} does not exist")
        try:
            return ModelRef(text, "swiftformer", path.stem, SwiftFormerArch.load(path))
        except ArchitectureError as exc:
            raise ModelRefError(str(exc)) from None
    raise ModelRefError(f"cannot read model reference {text!r}; accepted: swiftformer:<{'|'.join(VARIANTS)}>, "
                        "timm:<name>, or a path to an architecture .json file")
