"""A declarative search space over the SwiftFormer family.

A space lists, per stage, the depths, widths and MLP ratios to choose from and where attention encoders may
sit, plus the input resolutions. Its points are ``SwiftFormerArch`` values: sampled with a seeded RNG,
suggested by an Optuna trial (define-by-run), tested for membership, mutated and crossed over, counted, and
encoded as fixed-length numeric vectors.

Each architecture is determined by its *decisions* (a flat dict: ``resolution``, ``stem_width``, and per stage
``depth``, ``width``, ``mlp_ratio`` and ``attn``, plus ``attn_kind`` where a stage offers more than one kind of
attention encoder); every operation works on decisions and builds the value.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from torch import nn

from swiftformer import ATTENTION_TYPES, Block, Stage, SwiftFormer, SwiftFormerArch, count_macs, count_params

from . import swiftformer_parts

ATTENTION_MODES = ("last", "mask")
#: What a stage's attention encoders are unless the space says otherwise: SwiftFormer's additive attention.
DEFAULT_ATTN_KINDS = ("attn",)


class SpaceError(ValueError):
    """A malformed space definition, or an architecture outside the space; the message names the field."""


@dataclass(frozen=True)
class StageChoices:
    """The options of one stage.

    ``attention="last"``: the stage's last k blocks are attention encoders, k from ``attn_blocks`` (capped at
    the depth). ``attention="mask"``: any subset of the stage's blocks may be attention encoders.

    ``attn_kinds``: the block types those encoders may be (``attn``, ``mhsa``), one per stage. With more than
    one, the kind is a decision of its own (``attn_kind``); with the default, there is no such decision, so
    spaces written before kinds existed keep their decisions, size and Optuna parameters.
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mlp_ratios: tuple[float, ...] = (4.0,)
    attention: str = "last"
    attn_blocks: tuple[int, ...] = (0, 1)
    attn_kinds: tuple[str, ...] = DEFAULT_ATTN_KINDS

    def __post_init__(self) -> None:
        kinds = tuple(self.attn_kinds)
        unknown = [k for k in kinds if k not in ATTENTION_TYPES]
        if unknown or not kinds or len(set(kinds)) != len(kinds):
            bad = f"{unknown[0]!r} is unknown" if unknown else f"expected distinct kinds, got {list(kinds)!r}"
            raise SpaceError(f"attn_kinds: {bad}; accepted: {', '.join(ATTENTION_TYPES)}")
        object.__setattr__(self, "attn_kinds", kinds)

    def decision_keys(self) -> tuple[str, ...]:
        """This stage's decisions, without the ``stageN.`` prefix."""
        return ("depth", "width", "mlp_ratio", "attn") + (("attn_kind",) if len(self.attn_kinds) > 1 else ())

    def attn_options(self, depth: int) -> list[Any]:
        if self.attention == "mask":
            return [tuple(bit == "1" for bit in format(m, f"0{depth}b")) for m in range(2 ** depth)]
        return sorted({min(k, depth) for k in self.attn_blocks})

    def size(self) -> int:
        kinds = len(self.attn_kinds)  # a stage without attention blocks is one architecture whatever the kind
        return len(self.widths) * len(self.mlp_ratios) * sum(
            kinds if _attends(option) else 1 for d in self.depths for option in self.attn_options(d))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    stages: tuple[StageChoices, ...]
    resolutions: tuple[int, ...] = (224,)
    stem_widths: tuple[int, ...] | None = None  # None: half the first stage's width, as in every released variant
    num_classes: int = 1000
    in_chans: int = 3
    distillation: bool = True
    description: str = ""

    # ---------------------------------------------------------------------------------------- decisions
    def decision_names(self) -> list[str]:
        names = ["resolution"] + (["stem_width"] if self.stem_widths else [])
        for i, choices in enumerate(self.stages):
            names += [f"stage{i + 1}.{k}" for k in choices.decision_keys()]
        return names

    def build(self, decisions: Mapping[str, Any]) -> SwiftFormerArch:
        """The architecture a full set of decisions describes."""
        stages = []
        for i, choices in enumerate(self.stages):
            p = f"stage{i + 1}."
            depth, width, ratio, attn = (decisions[p + k] for k in ("depth", "width", "mlp_ratio", "attn"))
            mask = attn if choices.attention == "mask" else tuple(j >= depth - attn for j in range(depth))
            kind = decisions.get(p + "attn_kind", choices.attn_kinds[0])
            stages.append(Stage(width, tuple(Block(kind if a else "conv", ratio) for a in mask)))
        stem = decisions.get("stem_width") or max(1, stages[0].width // 2)
        return SwiftFormerArch(stem, tuple(stages), num_classes=self.num_classes, distillation=self.distillation,
                               in_chans=self.in_chans, resolution=decisions["resolution"])

    def decisions(self, arch: SwiftFormerArch) -> dict[str, Any]:
        """The decisions that build ``arch``; SpaceError says which one falls outside the space."""
        def check(name: str, value: Any, options: Sequence[Any]) -> Any:
            if value not in options:
                raise SpaceError(f"{name} = {value!r} is outside space {self.name!r} (choices: {list(options)})")
            return value

        out: dict[str, Any] = {"resolution": check("resolution", arch.resolution, self.resolutions)}
        if self.stem_widths:
            out["stem_width"] = check("stem_width", arch.stem_width, self.stem_widths)
        elif arch.stem_width != max(1, arch.stages[0].width // 2):
            raise SpaceError(f"stem_width = {arch.stem_width} is outside space {self.name!r} "
                             f"(it is half the first stage's width, {arch.stages[0].width // 2})")
        if len(arch.stages) != len(self.stages):
            raise SpaceError(f"{len(arch.stages)} stages; space {self.name!r} has {len(self.stages)}")
        if not all(arch.downsample):
            raise SpaceError(f"space {self.name!r} downsamples between every pair of stages")
        for i, (stage, choices) in enumerate(zip(arch.stages, self.stages)):
            p = f"stage{i + 1}."
            out[p + "depth"] = check(p + "depth", stage.depth, choices.depths)
            out[p + "width"] = check(p + "width", stage.width, choices.widths)
            ratios = {b.mlp_ratio for b in stage.blocks}
            if len(ratios) > 1:
                raise SpaceError(f"{p}mlp_ratio differs between blocks {sorted(ratios)}; the space uses one per stage")
            out[p + "mlp_ratio"] = check(p + "mlp_ratio", ratios.pop(), choices.mlp_ratios)
            mask = tuple(b.type != "conv" for b in stage.blocks)
            kinds = sorted({b.type for b in stage.blocks if b.type != "conv"})
            if len(kinds) > 1:
                raise SpaceError(f"{p}attn_kind: the stage mixes {', '.join(kinds)}; space {self.name!r} uses one "
                                 "attention kind per stage")
            kind = check(p + "attn_kind", kinds[0], choices.attn_kinds) if kinds else choices.attn_kinds[0]
            if len(choices.attn_kinds) > 1:
                out[p + "attn_kind"] = kind
            if choices.attention == "mask":
                out[p + "attn"] = mask
            else:
                k = sum(mask)
                if mask != tuple(j >= stage.depth - k for j in range(stage.depth)):
                    raise SpaceError(f"{p}attn: attention blocks must be the stage's last ones in space {self.name!r}")
                out[p + "attn"] = check(p + "attn", k, choices.attn_options(stage.depth))
        return out

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, SwiftFormerArch):
            return False
        try:
            self.decisions(arch)
        except SpaceError:
            return False
        return True

    # ------------------------------------------------------------------------------------------ sampling
    def sample(self, rng: random.Random | int | None = None) -> SwiftFormerArch:
        """A uniformly random architecture (uniform over each decision in turn); an int seeds the RNG."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        decisions: dict[str, Any] = {"resolution": rng.choice(self.resolutions)}
        if self.stem_widths:
            decisions["stem_width"] = rng.choice(self.stem_widths)
        for i, choices in enumerate(self.stages):
            p = f"stage{i + 1}."
            depth = rng.choice(choices.depths)
            decisions.update({p + "depth": depth, p + "width": rng.choice(choices.widths),
                              p + "mlp_ratio": rng.choice(choices.mlp_ratios),
                              p + "attn": rng.choice(choices.attn_options(depth))})
            if len(choices.attn_kinds) > 1:  # no draw otherwise: single-kind spaces keep their random streams
                decisions[p + "attn_kind"] = rng.choice(choices.attn_kinds)
        return self.build(decisions)

    def samples(self, n: int, seed: int = 0) -> Iterator[SwiftFormerArch]:
        rng = random.Random(seed)
        for _ in range(n):
            yield self.sample(rng)

    def suggest(self, trial: Any) -> SwiftFormerArch:
        """Define-by-run: ask an Optuna trial for each decision and return the architecture.

        Distributions never depend on earlier answers (Optuna requires that of a parameter name): an attention
        count above the drawn depth is capped, and mask bits are asked only for blocks that exist.
        """
        decisions: dict[str, Any] = {"resolution": _ask(trial, "resolution", self.resolutions)}
        if self.stem_widths:
            decisions["stem_width"] = _ask(trial, "stem_width", self.stem_widths)
        for i, choices in enumerate(self.stages):
            p = f"stage{i + 1}."
            depth = _ask(trial, p + "depth", choices.depths)
            decisions[p + "depth"] = depth
            decisions[p + "width"] = _ask(trial, p + "width", choices.widths)
            decisions[p + "mlp_ratio"] = _ask(trial, p + "mlp_ratio", choices.mlp_ratios)
            if choices.attention == "mask":
                decisions[p + "attn"] = tuple(
                    bool(trial.suggest_categorical(f"{p}block{j + 1}.attn", [False, True])) for j in range(depth))
            else:
                decisions[p + "attn"] = min(_ask(trial, p + "attn_blocks", choices.attn_blocks), depth)
            decisions[p + "attn_kind"] = _ask(trial, p + "attn_kind", choices.attn_kinds)  # asked only if several
        return self.build(decisions)

    def trial_params(self, arch: SwiftFormerArch) -> dict[str, Any]:
        """The Optuna parameters ``suggest`` asks for that yield ``arch`` (for ``study.enqueue_trial``)."""
        d = self.decisions(arch)
        params: dict[str, Any] = {}
        if len(self.resolutions) > 1:
            params["resolution"] = d["resolution"]
        if self.stem_widths and len(self.stem_widths) > 1:
            params["stem_width"] = d["stem_width"]
        for i, choices in enumerate(self.stages):
            p = f"stage{i + 1}."
            for key, options in (("depth", choices.depths), ("width", choices.widths),
                                 ("mlp_ratio", choices.mlp_ratios)):
                if len(options) > 1:
                    params[p + key] = d[p + key]
            if choices.attention == "mask":
                params.update({f"{p}block{j + 1}.attn": bit for j, bit in enumerate(d[p + "attn"])})
            elif len(choices.attn_blocks) > 1:  # the smallest count that, capped at the depth, gives this one
                params[p + "attn_blocks"] = min(k for k in choices.attn_blocks if min(k, d[p + "depth"]) == d[p + "attn"])
            if len(choices.attn_kinds) > 1:
                params[p + "attn_kind"] = d[p + "attn_kind"]
        return params

    # ------------------------------------------------------------------------------------------ evolution
    def mutate(self, arch: SwiftFormerArch, rng: random.Random | int | None = None, n: int = 1) -> SwiftFormerArch:
        """``arch`` with ``n`` decisions redrawn (each to a different value where the space allows one)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        decisions = self.decisions(arch)
        mutable = [k for k in decisions if len(self._options(k, decisions)) > 1]
        for name in rng.sample(mutable, k=min(n, len(mutable))):
            options = [o for o in self._options(name, decisions) if o != decisions[name]]
            decisions[name] = rng.choice(options)
            if name.endswith(".depth"):  # keep the attention decision valid for the new depth
                decisions[name.replace("depth", "attn")] = self._fit_attn(name, decisions, rng)
        return self.build(decisions)

    def crossover(self, a: SwiftFormerArch, b: SwiftFormerArch,
                  rng: random.Random | int | None = None) -> SwiftFormerArch:
        """A child taking each stage (all its decisions together) and each global decision from a or b."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        da, db = self.decisions(a), self.decisions(b)
        child = {}
        for group in self._groups():
            source = da if rng.random() < 0.5 else db
            child.update({k: source[k] for k in group})
        return self.build(child)

    def _groups(self) -> list[list[str]]:
        groups = [["resolution"]] + ([["stem_width"]] if self.stem_widths else [])
        return groups + [[f"stage{i + 1}.{k}" for k in choices.decision_keys()]
                         for i, choices in enumerate(self.stages)]

    def _options(self, name: str, decisions: Mapping[str, Any]) -> list[Any]:
        if name == "resolution":
            return list(self.resolutions)
        if name == "stem_width":
            return list(self.stem_widths or ())
        stage, key = name.split(".")
        choices = self.stages[int(stage.removeprefix("stage")) - 1]
        if key == "attn":
            return choices.attn_options(decisions[f"{stage}.depth"])
        if key == "attn_kind":  # without attention blocks another kind would build the same architecture
            return list(choices.attn_kinds) if _attends(decisions[f"{stage}.attn"]) else [decisions[name]]
        return list({"depth": choices.depths, "width": choices.widths, "mlp_ratio": choices.mlp_ratios}[key])

    def _fit_attn(self, depth_name: str, decisions: Mapping[str, Any], rng: random.Random) -> Any:
        attn_name = depth_name.replace("depth", "attn")
        old, options = decisions[attn_name], self._options(attn_name, decisions)
        if isinstance(old, tuple):  # mask: keep the old bits that still have a block, draw the new ones
            depth = decisions[depth_name]
            return tuple(old[j] if j < len(old) else rng.random() < 0.5 for j in range(depth))
        if old in options:
            return old
        below = [o for o in options if o <= old]
        return max(below) if below else min(options)

    # ------------------------------------------------------------------------------------- size and codes
    def size(self) -> int:
        """The number of distinct architectures in the space."""
        stems = len(self.stem_widths) if self.stem_widths else 1
        return len(self.resolutions) * stems * math.prod(c.size() for c in self.stages)

    def encode(self, arch: SwiftFormerArch) -> list[float]:
        """A fixed-length numeric vector: resolution, stem width, and per stage depth, width, MLP ratio,
        number of attention blocks and the attention mask padded to the stage's largest depth, then, where the
        stage offers several attention kinds, the kind's index in ``attn_kinds``."""
        d = self.decisions(arch)
        vector = [float(arch.resolution), float(arch.stem_width)]
        for i, (stage, choices) in enumerate(zip(arch.stages, self.stages)):
            mask = [float(b.type != "conv") for b in stage.blocks]
            vector += [float(stage.depth), float(stage.width), float(d[f"stage{i + 1}.mlp_ratio"]), sum(mask)]
            vector += mask + [0.0] * (max(choices.depths) - stage.depth)
            if len(choices.attn_kinds) > 1:
                vector.append(float(choices.attn_kinds.index(d[f"stage{i + 1}.attn_kind"])))
        return vector

    @property
    def encoding_size(self) -> int:
        return 2 + sum(4 + max(c.depths) + (len(c.attn_kinds) > 1) for c in self.stages)

    # ------------------------------------------------------------------------- the interface's records, parts
    def arch_from_dict(self, data: Mapping[str, Any]) -> SwiftFormerArch:
        return SwiftFormerArch.from_dict(data)

    def for_task(self, num_classes: int, in_chans: int) -> "SearchSpace":
        return dataclasses.replace(self, num_classes=num_classes, in_chans=in_chans)

    def build_model(self, arch: SwiftFormerArch) -> nn.Module:
        return SwiftFormer(arch)

    def input_shape(self, arch: SwiftFormerArch) -> tuple[int, int, int, int]:
        return (1, arch.in_chans, arch.resolution, arch.resolution)

    def part_keys(self, arch: SwiftFormerArch) -> list[tuple]:
        return swiftformer_parts.part_keys(arch)

    def part_module(self, key: tuple) -> tuple[nn.Module, tuple[int, ...]]:
        return swiftformer_parts.part_module(key)

    def every_part_key(self) -> list[tuple]:
        return swiftformer_parts.space_part_keys(self)

    def counts(self, arch: SwiftFormerArch) -> dict[str, int]:
        """In closed form (``swiftformer.counting``): microseconds a candidate."""
        return {"params": count_params(arch), "macs": count_macs(arch)}

    # -------------------------------------------------------------------------------------- description
    def describe(self) -> list[str]:
        stem = ", ".join(map(str, self.stem_widths)) if self.stem_widths else "half the first stage's width"
        lines = [f"space {self.name}: {self.size():,} architectures" + (f" - {self.description}" if self.description else ""),
                 f"  resolution: {', '.join(map(str, self.resolutions))}", f"  stem width: {stem}"]
        for i, c in enumerate(self.stages):
            attn = "any subset of blocks" if c.attention == "mask" else \
                f"last {', '.join(map(str, c.attn_blocks))} block(s)"
            if c.attn_kinds != DEFAULT_ATTN_KINDS:
                attn += f" of kind {' or '.join(c.attn_kinds)}"
            lines.append(f"  stage {i + 1}: depth {_fmt(c.depths)}; width {_fmt(c.widths)}; "
                         f"mlp ratio {_fmt(c.mlp_ratios)}; attention: {attn}")
        lines.append(f"  task: {self.num_classes} classes, {self.in_chans} input channels, "
                     f"distillation head {'on' if self.distillation else 'off'}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        stages = []
        for c in self.stages:
            stage = {"depth": list(c.depths), "width": list(c.widths), "mlp_ratio": list(c.mlp_ratios),
                     "attention": c.attention}
            if c.attention == "last":
                stage["attn_blocks"] = list(c.attn_blocks)
            if c.attn_kinds != DEFAULT_ATTN_KINDS:  # omitted by default: existing spaces keep their dict and digest
                stage["attn_kinds"] = list(c.attn_kinds)
            stages.append(stage)
        return {"name": self.name, "description": self.description, "resolution": list(self.resolutions),
                "stem_width": list(self.stem_widths) if self.stem_widths else "auto", "stages": stages,
                "num_classes": self.num_classes, "in_chans": self.in_chans, "distillation": self.distillation}


def _attends(attn: Any) -> bool:
    """Whether a stage's ``attn`` decision (a count, or a mask) places any attention block."""
    return any(attn) if isinstance(attn, tuple) else attn > 0


def _fmt(values: Sequence[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _ask(trial: Any, name: str, options: Sequence[Any]) -> Any:
    """Evenly spaced integers become an integer parameter (samplers see their order); the rest categorical."""
    options = list(options)
    if len(options) == 1:
        return options[0]
    if all(isinstance(o, int) for o in options):
        steps = {b - a for a, b in zip(options, options[1:])}
        if len(steps) == 1 and steps.pop() > 0:
            return trial.suggest_int(name, options[0], options[-1], step=options[1] - options[0])
    return trial.suggest_categorical(name, options)  # also names (attention kinds), which have no differences
