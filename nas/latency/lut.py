"""Per-block latency tables: predicting an architecture of a search space in microseconds.

Each part a space can contain (stem, embedding, conv or attention block of each kind at each width, MLP ratio and
map size, classifier head) is built alone in its deployed form, profiled, and priced by the device's predictor.
Because a predictor is additive over the deployed graph's work, the table's sum for an architecture equals the
whole-model prediction, up to float rounding; the search uses it to reject over-budget candidates before any
training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from search_spaces import SearchSpace
from swiftformer import Block, SwiftFormer, SwiftFormerArch
from swiftformer.counting import feature_sizes
from swiftformer.model import Embedding, Stem, make_block

from .graph import profile_module
from .predictor import SEARCHED_FAMILY, LatencyPredictor

PHONES = ("iphone14", "iphone12")  # the shipped predictors every job's results are priced on

Key = tuple  # ("stem", in_chans, stem_width, width, H, W) | ("embed", c_in, c_out, stride, h_in, w_in)
#            | (block_type, width, mlp_ratio, h, w) | ("head", width, num_classes, distillation, h, w)


class TableMissError(KeyError):
    """An architecture with a part the table was not built for."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class LatencyTable:
    device: str
    space: str
    intercept_ms: float
    entries: dict[Key, float] = field(default_factory=dict)

    def predict(self, arch: SwiftFormerArch) -> float:
        """Milliseconds for ``arch`` from the table (raises TableMissError for a part it does not hold)."""
        try:
            return self.intercept_ms + sum(self.entries[key] for key in part_keys(arch))
        except KeyError as exc:
            raise TableMissError(f"the {self.device} table of space {self.space!r} has no entry for "
                                 f"{exc.args[0]} (architecture {arch.summary()}); rebuild it for this space") from None

    def save(self, path: str | Path) -> None:
        data = {"device": self.device, "space": self.space, "intercept_ms": self.intercept_ms,
                "entries": [[list(k), v] for k, v in self.entries.items()]}
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(data) + "\n")
        partial.replace(path)  # atomic: a killed run never leaves a truncated table

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        data = json.loads(Path(path).read_text())
        return cls(data["device"], data["space"], data["intercept_ms"],
                   {tuple(k): v for k, v in data["entries"]})


def part_keys(arch: SwiftFormerArch) -> list[Key]:
    """The table keys of every part of ``arch``, in network order."""
    _, sizes = feature_sizes(arch)
    h, w = sizes[0]
    keys: list[Key] = [("stem", arch.in_chans, arch.stem_width, arch.stages[0].width, arch.resolution,
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


def _part_module(key: Key) -> tuple[nn.Module, tuple[int, ...]]:
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


def space_keys(space: SearchSpace) -> list[Key]:
    """Every table key an architecture of ``space`` can need."""
    keys: set[Key] = set()
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


def _geometry_arch(space: SearchSpace, resolution: int) -> SwiftFormerArch:
    return SwiftFormerArch.standard([1] * len(space.stages), [c.widths[0] for c in space.stages], attn_blocks=0,
                                    resolution=resolution)


def build_table(space: SearchSpace, predictor: LatencyPredictor,
                progress: Callable[[int, int], Any] | None = None) -> LatencyTable:
    """Profile and price every part ``space`` can contain."""
    return price_parts(space_keys(space), predictor, space.name, progress)


def table_for_archs(archs: Iterable[SwiftFormerArch], predictor: LatencyPredictor, name: str) -> LatencyTable:
    """Price just the parts of a fixed list of architectures (an ablation's variants): no space to enumerate."""
    keys = sorted({key for arch in archs for key in part_keys(arch)}, key=repr)
    return price_parts(keys, predictor, name)


def price_parts(keys: list[Key], predictor: LatencyPredictor, name: str,
                progress: Callable[[int, int], Any] | None = None) -> LatencyTable:
    """Profile each part alone in its deployed form and price it with ``predictor`` as it prices the searched
    family (its own line, where the calibration measured the family)."""
    predictor = predictor.for_family(SEARCHED_FAMILY)
    table = LatencyTable(predictor.device, name, predictor.intercept_ms)
    torch.manual_seed(0)
    for i, key in enumerate(keys):
        module, shape = _part_module(key)
        table.entries[key] = predictor.predict_parts(profile_module(module, torch.randn(shape)))
        if progress:
            progress(i + 1, len(keys))
    return table
