"""What a supernet needs from a search space: its largest sizes, the block kinds each position may hold, its
extreme subnets, and a refusal of any dimension the supernet cannot hold.

Everything is derived through ``SearchSpace.build``, the one place that turns decisions into architectures, so a
space's rules (e.g. "attention in the last k blocks" or any mask) are never re-implemented here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from search_spaces import SearchSpace, StageChoices
from swiftformer import BLOCK_TYPES, SwiftFormerArch


class SupernetError(ValueError):
    """A space or architecture the supernet cannot hold; the one-line message names the dimension."""


#: The fields of a space that a supernet represents. A field added to SearchSpace / StageChoices later is refused
#: (unless left at its default) until the supernet learns to hold it, instead of being silently ignored.
REPRESENTED_FIELDS = {
    SearchSpace: {"name", "description", "stages", "resolutions", "stem_widths", "num_classes", "in_chans",
                  "distillation"},
    StageChoices: {"depths", "widths", "mlp_ratios", "attention", "attn_blocks"},
}


@dataclass(frozen=True)
class StageMaxima:
    """The largest stage of a space and, per block position, the block kinds some architecture puts there."""

    width: int
    hidden: int  # int(width * mlp_ratio) at the largest width and ratio: every subnet's MLP fits in it
    slot_kinds: tuple[tuple[str, ...], ...]  # one entry per position up to the largest depth

    @property
    def depth(self) -> int:
        return len(self.slot_kinds)


def check_represented(space: SearchSpace) -> None:
    """Refuse a space that varies a field the supernet does not hold (a one-line SupernetError naming it)."""
    for value, where in [(space, "space")] + [(c, f"stages[{i}]") for i, c in enumerate(space.stages)]:
        for field in dataclasses.fields(value):
            if field.name in REPRESENTED_FIELDS[_represented_base(value)]:
                continue
            default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            if getattr(value, field.name) != default:
                raise SupernetError(f"{where}.{field.name}: space {space.name!r} varies {field.name!r}, which the "
                                    "supernet cannot represent")


def _represented_base(value: Any) -> type:
    """SearchSpace or StageChoices, also for a subclass that adds fields."""
    return next(base for base in type(value).__mro__ if base in REPRESENTED_FIELDS)


def _first_decisions(space: SearchSpace) -> dict[str, Any]:
    decisions: dict[str, Any] = {"resolution": space.resolutions[0]}
    if space.stem_widths:
        decisions["stem_width"] = space.stem_widths[0]
    for i, c in enumerate(space.stages):
        p = f"stage{i + 1}."
        decisions.update({p + "depth": c.depths[0], p + "width": c.widths[0], p + "mlp_ratio": c.mlp_ratios[0],
                          p + "attn": c.attn_options(c.depths[0])[0]})
    return decisions


def stage_maxima(space: SearchSpace) -> tuple[StageMaxima, ...]:
    """Per stage: largest width and hidden width, and the kinds each block position takes in some architecture.

    Kinds are collected by building every (depth, attention) option of each stage, so a position only holds the
    blocks the space can put there (e.g. no attention weights before the last k positions).
    """
    base, maxima = _first_decisions(space), []
    for s, choices in enumerate(space.stages):
        p = f"stage{s + 1}."
        kinds: list[set[str]] = [set() for _ in range(max(choices.depths))]
        for depth in choices.depths:
            for attn in choices.attn_options(depth):
                arch = space.build({**base, p + "depth": depth, p + "attn": attn})
                for j, block in enumerate(arch.stages[s].blocks):
                    kinds[j].add(block.type)
        width = max(choices.widths)
        maxima.append(StageMaxima(width, int(width * max(choices.mlp_ratios)),
                                  tuple(tuple(sorted(k, key=_kind_order)) for k in kinds)))
    return tuple(maxima)


def _kind_order(kind: str) -> tuple[int, str]:
    return (BLOCK_TYPES.index(kind) if kind in BLOCK_TYPES else len(BLOCK_TYPES), kind)


def max_stem_width(space: SearchSpace) -> int:
    return max(space.stem_widths) if space.stem_widths else max(1, max(space.stages[0].widths) // 2)


def extreme_arch(space: SearchSpace, largest: bool = True) -> SwiftFormerArch:
    """The space's largest (or smallest) architecture: every decision at its maximum (minimum).

    For attention that is the most (fewest) attention encoders: the largest count, or the all-true mask, is the
    maximum of the stage's options. These are the sandwich rule's two fixed subnets.
    """
    pick = max if largest else min
    decisions: dict[str, Any] = {"resolution": pick(space.resolutions)}
    if space.stem_widths:
        decisions["stem_width"] = pick(space.stem_widths)
    for i, c in enumerate(space.stages):
        p, depth = f"stage{i + 1}.", pick(c.depths)
        decisions.update({p + "depth": depth, p + "width": pick(c.widths), p + "mlp_ratio": pick(c.mlp_ratios),
                          p + "attn": pick(c.attn_options(depth))})
    return space.build(decisions)
