"""Variants of a base architecture, derived by rule so that an ablation names exactly what it changed.

Attention positions are the blocks whose kind is not ``conv``. Definitions (stage numbers ``k`` start at 1):

- ``released``: the base itself.
- ``none``: every attention block replaced by a conv block (same MLP ratio).
- ``only-sK``: attention in stage K alone. A stage "with attention" keeps the base's own attention blocks if it
  has any; otherwise its last block becomes one attention block (the released layout's convention).
- ``from-sK`` (K >= 2): attention in stages K and later, none before; ``all``: attention in every stage.
- ``sK-one`` / ``sK-two``: stage K holds exactly one / two attention blocks, in its last positions, other stages
  as the base. Only for stages of depth >= 2 (a one-block stage cannot hold two).
- ``sK-first`` / ``sK-last``: stage K's attention blocks (one if it has none) at the stage's first / last
  positions, right after / before the stage's convs. Only for stages of depth >= 2 (first is last otherwise).
- type ablation: ``attn``, ``mhsa``, ``conv``: the base's attention positions hold that kind
  (``swiftformer.arch.BLOCK_TYPES`` decides which kinds exist).

Variants that build the same network (same digest) are trained once: the first name is kept and the others are
listed as its aliases, so "as released" and "in all stages" of XS are one set of runs with both labels.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from swiftformer import ATTENTION_TYPES, BLOCK_TYPES, Block, Stage, SwiftFormerArch

BASE = "released"


class VariantError(ValueError):
    """A variant that cannot be derived from the base (the message names which and why)."""


@dataclass(frozen=True)
class Variant:
    name: str
    arch: SwiftFormerArch
    aliases: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def is_attention(block: Block) -> bool:
    return block.type in ATTENTION_TYPES


def dedupe(named: Iterable[tuple[str, SwiftFormerArch]]) -> list[Variant]:
    """One variant per distinct architecture, in first-seen order, with every name it was derived under."""
    by_digest: dict[str, Variant] = {}
    for name, arch in named:
        key = arch.digest()
        if key in by_digest:
            kept = by_digest[key]
            if name not in kept.labels:
                by_digest[key] = Variant(kept.name, kept.arch, (*kept.aliases, name))
        else:
            by_digest[key] = Variant(name, arch)
    return list(by_digest.values())


# --------------------------------------------------------------------------------------------- stage edits
def without_attention(stage: Stage) -> Stage:
    return Stage(stage.width, tuple(Block("conv", b.mlp_ratio) if is_attention(b) else b for b in stage.blocks))


def with_attention(stage: Stage) -> Stage:
    """The stage as it is if it has attention, else with its last block made additive attention."""
    if any(is_attention(b) for b in stage.blocks):
        return stage
    return attention_at(stage, "last", 1)


def attention_kind(stage: Stage) -> str:
    """The kind of a stage's attention blocks (the first one's), ``attn`` for a stage without any."""
    return next((b.type for b in stage.blocks if is_attention(b)), "attn")


def attention_at(stage: Stage, position: str, count: int, kind: str | None = None) -> Stage:
    """``count`` attention blocks of ``kind`` (default: the stage's own) at its ``first`` or ``last``
    positions, every other block conv; each block keeps its MLP ratio."""
    if not 0 <= count <= stage.depth:
        raise VariantError(f"a stage of depth {stage.depth} cannot hold {count} attention block(s)")
    if position not in ("first", "last"):
        raise VariantError(f"attention position {position!r} is unknown; accepted: first, last")
    kind = kind or attention_kind(stage)
    chosen = range(count) if position == "first" else range(stage.depth - count, stage.depth)
    return Stage(stage.width, tuple(Block(kind if j in chosen else "conv", b.mlp_ratio)
                                    for j, b in enumerate(stage.blocks)))


def replace_stage(base: SwiftFormerArch, index: int, stage: Stage) -> SwiftFormerArch:
    stages = list(base.stages)
    stages[index] = stage
    return base.replace(stages=tuple(stages))


def with_stages(base: SwiftFormerArch, attended: Iterable[int]) -> SwiftFormerArch:
    """Attention in the stages ``attended`` (0-based) and nowhere else."""
    attended = set(attended)
    return base.replace(stages=tuple(with_attention(s) if i in attended else without_attention(s)
                                     for i, s in enumerate(base.stages)))


# ---------------------------------------------------------------------------------------------- ablations
def placement_variants(base: SwiftFormerArch) -> list[Variant]:
    """Where attention goes, from nowhere to everywhere; see the module's docstring for each name."""
    n = len(base.stages)
    named: list[tuple[str, SwiftFormerArch]] = [(BASE, base), ("none", with_stages(base, []))]
    named += [(f"only-s{k + 1}", with_stages(base, [k])) for k in range(n)]
    named += [(f"from-s{k + 1}", with_stages(base, range(k, n))) for k in range(1, n)]
    named.append(("all", with_stages(base, range(n))))
    for k, stage in enumerate(base.stages):
        if stage.depth >= 2:
            named += [(f"s{k + 1}-{word}", replace_stage(base, k, attention_at(stage, "last", count)))
                      for count, word in ((1, "one"), (2, "two"))]
    for k, stage in enumerate(base.stages):
        if stage.depth >= 2:
            count = max(1, sum(is_attention(b) for b in stage.blocks))
            named += [(f"s{k + 1}-{position}", replace_stage(base, k, attention_at(stage, position, count)))
                      for position in ("first", "last")]
    return dedupe(named)


def type_variants(base: SwiftFormerArch, kinds: Iterable[str] | None = None) -> list[Variant]:
    """The base's attention positions filled with each kind (default: every kind of ``BLOCK_TYPES``)."""
    kinds = list(kinds) if kinds is not None else [*ATTENTION_TYPES, "conv"]
    for kind in kinds:
        if kind not in BLOCK_TYPES:
            raise VariantError(f"block kind {kind!r} is unknown; accepted: {', '.join(BLOCK_TYPES)}")
    if not kinds:
        raise VariantError("the type ablation needs at least one block kind")
    if not any(is_attention(b) for s in base.stages for b in s.blocks):
        raise VariantError(f"base {base.summary()} has no attention block to change the kind of")
    named = [(kind, base.replace(stages=tuple(
        Stage(s.width, tuple(Block(kind, b.mlp_ratio) if is_attention(b) else b for b in s.blocks))
        for s in base.stages))) for kind in dict.fromkeys(kinds)]
    return dedupe([*named, (BASE, base)])


def most_common_ratio(stage: Stage) -> float:
    return Counter(b.mlp_ratio for b in stage.blocks).most_common(1)[0][0]
