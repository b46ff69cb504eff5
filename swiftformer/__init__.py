"""SwiftFormer (Shaker et al., ICCV 2023) as a searchable model family.

Importing this package registers the timm models ``swiftnas_xs``, ``swiftnas_s``, ``swiftnas_l1``,
``swiftnas_l3`` (the released variants, official weights load strictly) and ``swiftnas_arch`` (any
architecture description).
"""
from . import _torchvision_fix  # noqa: F401  (must precede timm, imported by everything below)
from .arch import (ATTENTION_TYPES, BLOCK_TYPES, VARIANTS, ArchitectureError, Block, Stage, SwiftFormerArch,
                   as_arch, mhsa_heads, variant)
from .counting import count_macs, count_params
from .fusion import fuse
from .model import SwiftFormer, convert_checkpoint, load_checkpoint

__all__ = [
    "ATTENTION_TYPES", "BLOCK_TYPES", "VARIANTS", "ArchitectureError", "Block", "Stage", "SwiftFormer",
    "SwiftFormerArch", "as_arch", "convert_checkpoint", "count_macs", "count_params", "create_model", "fuse",
    "load_checkpoint", "mhsa_heads", "variant",
]


def create_model(arch: "SwiftFormerArch | str", **kwargs) -> SwiftFormer:
    """Build a SwiftFormer from a description or a released variant's name (``xs``, ``s``, ``l1``, ``l3``)."""
    if isinstance(arch, str) and not arch.lstrip().startswith("{"):
        try:
            return SwiftFormer(variant(arch), **kwargs)
        except ArchitectureError:
            pass  # not a variant name: a JSON file path
    return SwiftFormer(as_arch(arch), **kwargs)
