"""Let torchvision (and so timm) import next to a torch build its compiled ops were not built for.

On machines with a CPU-only torch and a CUDA torchvision wheel, torchvision's ``_C`` library fails to load and
its import then dies on ``register_fake("torchvision::nms")`` because the op schema was never defined. Defining
the schemas that torchvision registers fake kernels for is enough for it (and timm) to import; the ops themselves
stay unavailable, which nothing in this project needs. Where the compiled ops load, this module changes nothing.
Import it before the first ``import timm`` or ``import torchvision``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

# Ops that torchvision registers fake kernels for unconditionally at import time, with their upstream schemas.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None  # kept alive: a Library unregisters its ops when collected


def _compiled_ops_load() -> bool:
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return True
    package_dir = Path(importlib.util.find_spec("torchvision").origin).parent
    libraries = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not libraries:
        return False
    try:
        torch.ops.load_library(str(libraries[0]))
    except (OSError, ImportError):
        return False
    return True


def ensure_torchvision_importable() -> str:
    """Return ``"native"`` when torchvision's ops load, ``"patched"`` when their schemas had to be defined."""
    global _library
    if _library is not None:
        return "patched"
    if _compiled_ops_load():
        return "native"
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    return "patched"


STATUS = ensure_torchvision_importable()
