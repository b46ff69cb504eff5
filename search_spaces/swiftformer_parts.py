"""The parts a SwiftFormer architecture is made of, for per-part latency tables.

Each part a space can contain (stem, embedding, conv or attention block of each kind at each width, MLP ratio and
map size, classifier head) is built alone in its deployed form, with the input shape it sees inside the network.
"""
from __future__ import annotations

import torch
from torch import nn

from swiftformer import Block, SwiftFormer, SwiftFormerArch
from swiftformer.counting import feature_sizes
from swiftformer.model import Embedding, Stem, make_block

from .interface import PartKey

# ("stem", in_chans, stem_width, width, H, W) | ("embed", c_in, c_out, stride, h_in, w_in)
# | (block_type, width, mlp_ratio, h, w) | ("head", width, num_classes, distillation, h, w)


def part_keys(arch: SwiftFormerArch) -> list[PartKey]:
    """The table keys of every part of ``arch``, in network order."""
    _, sizes = feature_sizes(arch)
    h, w = sizes[0]
    keys: list[PartKey] = [("stem", arch.in_chans, arch.stem_width, arch.stages[0].width, arch.resolution,
                            arch.resolution)]
    for s, stage in enumerate(arch.stages):
        if s:
            prev, down = arch.stages[s - 1].width, arch.downsample[s - 1]
            if down or prev != stage.width:
                keys.append(("embed", prev, stage.width, 2 if down else 1, h, w))
            h, w = sizes[s]
        c = stage.width
        keys.extend((b.type, c, b.mlp_ratio, h, w) for b in stage.blocks)
    keys.append(("head", arch.stages[-1].width, arch.num_classes, arch.distillation, h, w))
    return keys


class _Head(nn.Module):
    """A fused model's head path alone (final norm, pooling, classifier), as it runs inside the model."""

    def __init__(self, model: SwiftFormer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.norm(x))


def part_module(key: PartKey) -> tuple[nn.Module, tuple[int, ...]]:
    """The deployed module of a table key and the input shape it sees."""
    kind = key[0]
    if kind == "stem":
        _, in_chans, mid, width, h, w = key
        return Stem(in_chans, mid, width).fuse(), (1, in_chans, h, w)
    if kind == "embed":
        _, c_in, c_out, stride, h, w = key
        return Embedding(c_in, c_out, stride).fuse(), (1, c_in, h, w)
    if kind == "head":
        _, width, num_classes, distillation, h, w = key
        arch = SwiftFormerArch.standard([1], [width], attn_blocks=0, num_classes=num_classes,
                                        distillation=distillation)
        model = SwiftFormer(arch).eval()
        model.reparameterize()
        return _Head(model).eval(), (1, width, h, w)
    block_type, width, ratio, h, w = key
    return make_block(Block(block_type, ratio), width).eval().fuse(), (1, width, h, w)


def space_part_keys(space) -> list[PartKey]:
    """Every table key an architecture of the SwiftFormer ``space`` can need."""
    keys: set[PartKey] = set()
    stems = space.stem_widths or None
    for res in space.resolutions:
        _, sizes = feature_sizes(_geometry_arch(space, res))  # map sizes depend on the resolution alone
        first = space.stages[0]
        for width in first.widths:
            for mid in (stems or (max(1, width // 2),)):
                keys.add(("stem", space.in_chans, mid, width, res, res))
        for s, choices in enumerate(space.stages):
            if s:  # embeddings are keyed by the map size they receive
                keys.update(("embed", prev, width, 2, *sizes[s - 1]) for prev in space.stages[s - 1].widths
                            for width in choices.widths)
            h, w = sizes[s]
            may_attend = choices.attention == "mask" or max(choices.attn_blocks) > 0
            kinds = ("conv", *choices.attn_kinds) if may_attend else ("conv",)
            keys.update((kind, width, ratio, h, w) for kind in kinds for width in choices.widths
                        for ratio in choices.mlp_ratios)
        h, w = sizes[-1]
        keys.update(("head", width, space.num_classes, space.distillation, h, w)
                    for width in space.stages[-1].widths)
    return sorted(keys, key=repr)


def _geometry_arch(space, resolution: int) -> SwiftFormerArch:
    return SwiftFormerArch.standard([1] * len(space.stages), [c.widths[0] for c in space.stages], attn_blocks=0,
                                    resolution=resolution)
