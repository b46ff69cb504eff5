"""HW-NAS-Bench's FBNet space (Wu et al., CVPR 2019; Li et al., ICLR 2021): 22 layers, 9 choices each.

The macro skeleton is HW-NAS-Bench's CIFAR setting, whose latency HELP recorded (CIFAR-100 input): a 3x3 stem of
16 channels at stride 1; stages of 1, 4, 4, 4, 4, 4 and 1 layers at 16, 24, 32, 64, 112, 184 and 352 channels with
strides 1, 1, 2, 2, 1, 2, 1 (the first layer of a stage takes the stride and the channel change); a 1x1 conv to
1504 channels, global pooling and the classifier. A layer is an inverted residual block (``k<kernel>_e<expansion>``,
with ``_g2`` its pointwise convs in 2 groups and the channels shuffled between them) or ``skip`` (the identity, or
a strided 1x1 conv where the shape changes). An architecture is written as the benchmark writes it: the 22
choices separated by spaces.

The blocks are timm's ``InvertedResidual`` and ``ConvNormAct`` where they fit; timm has no grouped-pointwise
block with a channel shuffle, so that one is written here from the same pieces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import swiftformer._torchvision_fix  # noqa: F401  (before timm)

import torch
from timm.layers import ConvNormAct
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

from .interface import PartKey
from .positional import PositionalArch, PositionalSpace
from .space import SpaceError

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)  # HW-NAS-Bench's CIFAR setting
STEM_CHANNELS, HEAD_CHANNELS = 16, 1504


def layer_shapes(resolution: int) -> list[tuple[int, int, int, int]]:
    """Each of the 22 layers' (channels in, channels out, stride, input side)."""
    shapes, previous, side = [], STEM_CHANNELS, resolution
    for layers, channels, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES):
        for i in range(layers):
            s = stride if i == 0 else 1
            shapes.append((previous, channels, s, side))
            side = (side + s - 1) // s
            previous = channels
    return shapes


@dataclass(frozen=True)
class FBNetArch(PositionalArch):
    ops: tuple[str, ...]  # one per layer

    @classmethod
    def from_string(cls, text: str) -> "FBNetArch":
        ops = tuple(text.split())
        if len(ops) != sum(STAGE_LAYERS):
            raise SpaceError(f"FBNet architecture {text!r}: expected {sum(STAGE_LAYERS)} layer choices separated "
                             f"by spaces, got {len(ops)}")
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise SpaceError(f"FBNet architecture: unknown layer choice {unknown[0]!r}; accepted: {', '.join(OPS)}")
        return cls(ops)

    def digest(self) -> str:
        """The benchmark's string: the 22 choices separated by spaces."""
        return " ".join(self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {"space": "fbnet", "ops": self.digest()}


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class GroupedInvertedResidual(nn.Module):
    """FBNet's ``_g2`` block: grouped 1x1 expansion, channel shuffle, depthwise conv, grouped 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int, groups: int = 2):
        super().__init__()
        mid = c_in * expansion
        self.groups = groups
        self.conv_pw = ConvNormAct(c_in, mid, 1, groups=groups, act_layer=nn.ReLU)
        self.conv_dw = ConvNormAct(mid, mid, kernel, stride=stride, groups=mid, act_layer=nn.ReLU)
        self.conv_pwl = ConvNormAct(mid, c_out, 1, groups=groups, apply_act=False)
        self.has_skip = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.conv_dw(_channel_shuffle(self.conv_pw(x), self.groups)))
        return y + x if self.has_skip else y


def layer_op(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "skip":
        if stride == 1 and c_in == c_out:
            return nn.Identity()
        return ConvNormAct(c_in, c_out, 1, stride=stride, act_layer=nn.ReLU)
    kernel, expansion, *grouped = op.split("_")
    kernel, expansion = int(kernel[1:]), int(expansion[1:])
    if grouped:
        return GroupedInvertedResidual(c_in, c_out, kernel, stride, expansion, int(grouped[0][1:]))
    return InvertedResidual(c_in, c_out, dw_kernel_size=kernel, stride=stride, exp_ratio=expansion, act_layer=nn.ReLU)


class Stem(ConvNormAct):
    def __init__(self, in_chans: int):
        super().__init__(in_chans, STEM_CHANNELS, 3, stride=1, act_layer=nn.ReLU)


class Head(nn.Sequential):
    def __init__(self, num_classes: int):
        super().__init__(ConvNormAct(STAGE_CHANNELS[-1], HEAD_CHANNELS, 1, act_layer=nn.ReLU),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(HEAD_CHANNELS, num_classes))


class FBNetNetwork(nn.Module):
    def __init__(self, ops: Sequence[str], num_classes: int = 100, in_chans: int = 3, resolution: int = 32):
        super().__init__()
        self.stem = Stem(in_chans)
        self.layers = nn.Sequential(*(layer_op(op, c_in, c_out, stride)
                                      for op, (c_in, c_out, stride, _) in zip(ops, layer_shapes(resolution))))
        self.head = Head(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@dataclass(frozen=True)
class FBNetSpace(PositionalSpace):
    num_classes: int = 100
    in_chans: int = 3
    resolution: int = 32

    name = "fbnet"
    positions = tuple(f"layer{i + 1:02d}" for i in range(sum(STAGE_LAYERS)))
    choices = (OPS,) * sum(STAGE_LAYERS)

    def make(self, ops: Sequence[str]) -> FBNetArch:
        return FBNetArch(self.check_ops(ops))

    def arch_from_dict(self, data: Mapping[str, Any]) -> FBNetArch:
        if "ops" not in data:
            raise SpaceError(f"not an FBNet architecture record (no 'ops'): {dict(data)!r}")
        return FBNetArch.from_string(data["ops"])

    def parse(self, text: str) -> FBNetArch:
        return FBNetArch.from_string(text)

    def for_task(self, num_classes: int, in_chans: int) -> "FBNetSpace":
        return FBNetSpace(num_classes, in_chans, self.resolution)

    def build_model(self, arch: FBNetArch) -> nn.Module:
        return FBNetNetwork(arch.ops, self.num_classes, self.in_chans, self.resolution)

    def input_shape(self, arch: FBNetArch | None = None) -> tuple[int, int, int, int]:
        return (1, self.in_chans, self.resolution, self.resolution)

    def part_keys(self, arch: FBNetArch) -> list[PartKey]:
        return [("stem", self.in_chans, self.resolution)] + \
            [("layer", op, *shape) for op, shape in zip(arch.ops, layer_shapes(self.resolution))] + \
            [("head", self.num_classes, self._head_side())]

    def _head_side(self) -> int:
        _, _, stride, side = layer_shapes(self.resolution)[-1]
        return (side + stride - 1) // stride

    def part_module(self, key: PartKey) -> tuple[nn.Module, tuple[int, ...]]:
        kind = key[0]
        if kind == "stem":
            _, in_chans, side = key
            return Stem(in_chans).eval(), (1, in_chans, side, side)
        if kind == "head":
            _, num_classes, side = key
            return Head(num_classes).eval(), (1, STAGE_CHANNELS[-1], side, side)
        _, op, c_in, c_out, stride, side = key
        return layer_op(op, c_in, c_out, stride).eval(), (1, c_in, side, side)

    def every_part_key(self) -> list[PartKey]:
        return [("stem", self.in_chans, self.resolution)] + \
            [("layer", op, *shape) for shape in layer_shapes(self.resolution) for op in OPS] + \
            [("head", self.num_classes, self._head_side())]

    def describe(self) -> list[str]:
        return [f"space fbnet: {self.size():,} architectures - HW-NAS-Bench's FBNet space (CIFAR skeleton)",
                f"  {sum(STAGE_LAYERS)} layers, each one of: {', '.join(OPS)}",
                f"  stages of {'/'.join(map(str, STAGE_LAYERS))} layers at {'/'.join(map(str, STAGE_CHANNELS))} "
                f"channels, strides {'/'.join(map(str, STAGE_STRIDES))}; 1x1 head of {HEAD_CHANNELS}",
                f"  task: {self.num_classes} classes, {self.in_chans} input channels, {self.resolution} px"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "in_chans": self.in_chans,
                "resolution": self.resolution}
