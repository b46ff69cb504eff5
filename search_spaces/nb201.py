"""NAS-Bench-201's cell space (Dong and Yang, ICLR 2020): 6 edges of a 4-node cell, 5 operations each.

An architecture is the benchmark's own string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: the j-th operation of
group i is the edge from node j to node i+1. The network is the benchmark's macro skeleton: a 3x3 stem of 16
channels, three stages of 5 cells at 16, 32 and 64 channels joined by two residual reduction blocks, then BatchNorm,
ReLU, global pooling and the classifier. Its parameter count equals the benchmark's ``params_mb_*`` on every row
that records an exact count (``tests/test_proving_ground.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .interface import PartKey
from .positional import PositionalArch, PositionalSpace
from .space import SpaceError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node), in the string's order
STEM_CHANNELS, CELLS_PER_STAGE = 16, 5
STAGE_CHANNELS = (16, 32, 64)


@dataclass(frozen=True)
class NB201Arch(PositionalArch):
    ops: tuple[str, ...]  # one per edge of EDGES

    @classmethod
    def from_string(cls, text: str) -> "NB201Arch":
        """Parse the benchmark's string; SpaceError says what is malformed."""
        groups = text.strip().split("+")
        if len(groups) != 3:
            raise SpaceError(f"NAS-Bench-201 architecture {text!r}: expected 3 groups joined by '+', e.g. "
                             "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
        ops = []
        for node, group in enumerate(groups, start=1):
            items = [item for item in group.strip().strip("|").split("|") if item]
            if len(items) != node:
                raise SpaceError(f"NAS-Bench-201 architecture {text!r}: node {node} needs {node} edge(s), got "
                                 f"{len(items)}")
            for source, item in enumerate(items):
                op, _, index = item.partition("~")
                if index != str(source):
                    raise SpaceError(f"NAS-Bench-201 architecture {text!r}: {item!r} should come from node {source}")
                if op not in OPS:
                    raise SpaceError(f"NAS-Bench-201 architecture {text!r}: unknown operation {op!r}; accepted: "
                                     f"{', '.join(OPS)}")
                ops.append(op)
        return cls(tuple(ops))

    def digest(self) -> str:
        """The benchmark's string (its tables are keyed by it)."""
        groups, i = [], 0
        for node in range(1, 4):
            groups.append("|" + "|".join(f"{self.ops[i + j]}~{j}" for j in range(node)) + "|")
            i += node
        return "+".join(groups)

    def to_dict(self) -> dict[str, Any]:
        return {"space": "nb201", "arch_str": self.digest()}


# ---------------------------------------------------------------------------------------------- the network
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    """The ``none`` edge: zeros of the input's shape (the benchmark's ``x.mul(0.)``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def edge_op(op: str, channels: int) -> nn.Module:
    """One edge's operation inside a cell (stride 1, channels in = out, as every cell of the skeleton)."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise SpaceError(f"unknown NAS-Bench-201 operation {op!r}; accepted: {', '.join(OPS)}")


class NodeSums(nn.Module):
    """The additions of a cell alone: node 2 sums 2 edges, node 3 sums 3 (for pricing the skeleton)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node2 = x + x  # noqa: F841  (computed for its cost: the skeleton is only ever profiled)
        return x + x + x


class Cell(nn.Module):
    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(edge_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        i = 0
        for node in range(1, 4):
            terms = [self.edges[i + j](nodes[j]) for j in range(node)]
            i += node
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            nodes.append(total)
        return nodes[-1]


class Reduction(nn.Module):
    """The residual block between stages: two 3x3 ReLU-conv-BN (the first with stride 2), and an average-pooled
    1x1 conv on the shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Head(nn.Sequential):
    def __init__(self, channels: int, num_classes: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(channels, num_classes))


class NB201Network(nn.Module):
    """The benchmark's macro skeleton around one cell (``cell_ops``); with ``cell_ops=None`` the cells are only
    their additions (the skeleton a latency table prices apart from the edges)."""

    def __init__(self, cell_ops: Sequence[str] | None, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, STEM_CHANNELS, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(STEM_CHANNELS))
        layers: list[nn.Module] = []
        previous = STEM_CHANNELS
        for s, channels in enumerate(STAGE_CHANNELS):
            if s:
                layers.append(Reduction(previous, channels))
            layers.extend(Cell(cell_ops, channels) if cell_ops is not None else NodeSums()
                          for _ in range(CELLS_PER_STAGE))
            previous = channels
        self.cells = nn.Sequential(*layers)
        self.head = Head(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))


# ------------------------------------------------------------------------------------------------- the space
@dataclass(frozen=True)
class NB201Space(PositionalSpace):
    num_classes: int = 10
    in_chans: int = 3
    resolution: int = 32  # CIFAR's; ImageNet16-120 is 16

    name = "nb201"
    positions = tuple(f"edge{to}<-{source}" for to, source in EDGES)
    choices = (OPS,) * len(EDGES)

    def make(self, ops: Sequence[str]) -> NB201Arch:
        return NB201Arch(self.check_ops(ops))

    def arch_from_dict(self, data: Mapping[str, Any]) -> NB201Arch:
        if "arch_str" not in data:
            raise SpaceError(f"not a NAS-Bench-201 architecture record (no 'arch_str'): {dict(data)!r}")
        return NB201Arch.from_string(data["arch_str"])

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.from_string(text)

    def for_task(self, num_classes: int, in_chans: int) -> "NB201Space":
        return NB201Space(num_classes, in_chans, self.resolution)

    def build_model(self, arch: NB201Arch) -> nn.Module:
        return NB201Network(arch.ops, self.num_classes, self.in_chans)

    def input_shape(self, arch: NB201Arch | None = None) -> tuple[int, int, int, int]:
        return (1, self.in_chans, self.resolution, self.resolution)

    # -------------------------------------------------------------------------------------------- parts
    def _stage_sides(self) -> list[int]:
        return [self.resolution // 2 ** s for s in range(len(STAGE_CHANNELS))]

    def part_keys(self, arch: NB201Arch) -> list[PartKey]:
        """The skeleton (stem, reductions, the cells' additions, head), then every edge of every cell."""
        keys: list[PartKey] = [("skeleton", self.num_classes, self.in_chans, self.resolution)]
        for channels, side in zip(STAGE_CHANNELS, self._stage_sides()):
            keys.extend(("edge", op, channels, side) for _ in range(CELLS_PER_STAGE) for op in arch.ops)
        return keys

    def part_module(self, key: PartKey) -> tuple[nn.Module, tuple[int, ...]]:
        if key[0] == "skeleton":
            _, num_classes, in_chans, side = key
            return NB201Network(None, num_classes, in_chans).eval(), (1, in_chans, side, side)
        _, op, channels, side = key
        return edge_op(op, channels).eval(), (1, channels, side, side)

    def every_part_key(self) -> list[PartKey]:
        keys: list[PartKey] = [("skeleton", self.num_classes, self.in_chans, self.resolution)]
        keys += [("edge", op, c, side) for c, side in zip(STAGE_CHANNELS, self._stage_sides()) for op in OPS]
        return keys

    # -------------------------------------------------------------------------------------- description
    def describe(self) -> list[str]:
        return [f"space nb201: {self.size():,} architectures - NAS-Bench-201's cell (Dong and Yang, ICLR 2020)",
                f"  6 edges of a 4-node cell, each one of: {', '.join(OPS)}",
                f"  skeleton: 3x3 stem of {STEM_CHANNELS}, 3 stages of {CELLS_PER_STAGE} cells at "
                f"{'/'.join(map(str, STAGE_CHANNELS))} channels, residual reductions, pooled classifier",
                f"  task: {self.num_classes} classes, {self.in_chans} input channels, {self.resolution} px"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "in_chans": self.in_chans,
                "resolution": self.resolution}
