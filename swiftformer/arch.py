"""The SwiftFormer design space as plain values.

An architecture is a frozen, hashable dataclass that round-trips through JSON, so that search trials, result
tables, checkpoints and exported models can all name the exact network they hold. The official XS/S/L1/L3 are
four points of this space (``VARIANTS``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

BLOCK_TYPES = ("conv", "attn", "mhsa")
#: The block types that mix tokens across the whole map: SwiftFormer's additive attention and softmax self-attention.
ATTENTION_TYPES = ("attn", "mhsa")
#: One letter per block type in ``SwiftFormerArch.summary`` (``M``: multi-head self-attention).
_TYPE_CODES = {"conv": "C", "attn": "A", "mhsa": "M"}
#: Channels per head of an ``mhsa`` block, as in EfficientFormer.
MHSA_HEAD_DIM = 32


class ArchitectureError(ValueError):
    """An architecture description that cannot be built; the message names the offending field."""


@dataclass(frozen=True)
class Block:
    """One block of a stage: a ConvEncoder (``conv``), a SwiftFormerEncoder (``attn``, additive attention) or an
    MHSAEncoder (``mhsa``, EfficientFormer-style multi-head softmax self-attention).

    ``mlp_ratio`` sets the hidden width of the block's MLP (the 1x1 expansion in a ConvEncoder, the ``linear``
    MLP in the attention encoders) as ``int(width * mlp_ratio)``.
    """

    type: str = "conv"
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.type not in BLOCK_TYPES:
            raise ArchitectureError(f"block type {self.type!r} is unknown; accepted: {', '.join(BLOCK_TYPES)}")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or not self.mlp_ratio > 0:
            raise ArchitectureError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))


@dataclass(frozen=True)
class Stage:
    """A run of blocks at one width and resolution."""

    width: int
    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width <= 0:
            raise ArchitectureError(f"stage width must be a positive integer, got {self.width!r}")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ArchitectureError("a stage needs at least one block, got 0")
        for block in self.blocks:
            if not isinstance(block, Block):
                raise ArchitectureError(f"stage blocks must be Block values, got {block!r}")
            if int(self.width * block.mlp_ratio) < 1:
                raise ArchitectureError(
                    f"mlp_ratio {block.mlp_ratio} gives a hidden width of 0 at stage width {self.width}")

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_attn(self) -> int:
        """SwiftFormer (additive) attention blocks only: ``mhsa`` blocks are another kind and not counted."""
        return sum(block.type == "attn" for block in self.blocks)


@dataclass(frozen=True)
class SwiftFormerArch:
    """A whole network: stem, stages, the downsampling between them, and the classifier.

    - ``stem_width``: channels after the stem's first stride-2 conv (the stem ends at ``stages[0].width``).
    - ``downsample[i]``: whether the embedding between stage ``i`` and ``i+1`` halves the resolution (3x3, stride
      2, as in every official variant). When it does not, a 3x3 stride-1 embedding changes the width, or nothing
      is inserted if the width stays the same.
    - ``resolution``: the input side the network is meant to run at; it does not change the weights, but it
      sets the default for cost counting, latency prediction and export.
    """

    stem_width: int
    stages: tuple[Stage, ...]
    downsample: tuple[bool, ...] | None = None
    num_classes: int = 1000
    distillation: bool = True
    in_chans: int = 3
    resolution: int = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ArchitectureError("an architecture needs at least one stage, got 0")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise ArchitectureError(f"stages[{i}] must be a Stage, got {stage!r}")
        _check_positive_int("stem_width", self.stem_width)
        _check_positive_int("in_chans", self.in_chans)
        _check_positive_int("resolution", self.resolution)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ArchitectureError(f"num_classes must be an integer >= 0, got {self.num_classes!r}")
        if not isinstance(self.distillation, bool):
            raise ArchitectureError(f"distillation must be true or false, got {self.distillation!r}")
        transitions = len(self.stages) - 1
        downsample = (True,) * transitions if self.downsample is None else tuple(self.downsample)
        if len(downsample) != transitions or not all(isinstance(d, bool) for d in downsample):
            raise ArchitectureError(
                f"downsample must list {transitions} true/false values (one per stage transition), "
                f"got {self.downsample!r}")
        object.__setattr__(self, "downsample", downsample)

    # ----------------------------------------------------------------------------------------------- builders
    @classmethod
    def standard(
            cls,
            depths: Sequence[int],
            widths: Sequence[int],
            mlp_ratio: float = 4.0,
            attn_blocks: int | Sequence[int] = 1,
            stem_width: int | None = None,
            **kwargs: Any,
    ) -> "SwiftFormerArch":
        """The official layout: each stage's last ``attn_blocks`` blocks are attention, the rest conv."""
        if len(depths) != len(widths):
            raise ArchitectureError(f"depths {list(depths)} and widths {list(widths)} differ in length")
        attn = [attn_blocks] * len(depths) if isinstance(attn_blocks, int) else list(attn_blocks)
        if len(attn) != len(depths):
            raise ArchitectureError(f"attn_blocks {attn} must give one count per stage ({len(depths)})")
        stages = []
        for depth, width, n_attn in zip(depths, widths, attn):
            if not 0 <= n_attn <= depth:
                raise ArchitectureError(f"attn_blocks {n_attn} must lie between 0 and the stage depth {depth}")
            blocks = [Block("attn" if j >= depth - n_attn else "conv", mlp_ratio) for j in range(depth)]
            stages.append(Stage(width, tuple(blocks)))
        if stem_width is None:
            stem_width = max(1, widths[0] // 2)
        return cls(stem_width=stem_width, stages=tuple(stages), **kwargs)

    def replace(self, **changes: Any) -> "SwiftFormerArch":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------- properties
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(stage.depth for stage in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(stage.width for stage in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    def summary(self) -> str:
        """A compact one-line form for tables and logs, e.g. ``s24-48:CCA-56:CCA-112:CCCCCA-220:CCCA``.

        One letter per block: ``C`` conv, ``A`` additive attention, ``M`` multi-head self-attention; a number
        after it is an MLP ratio other than 4.
        """
        text = f"s{self.stem_width}"
        for i, stage in enumerate(self.stages):
            sep = "-" if i == 0 or self.downsample[i - 1] else "="  # "=" marks a transition that keeps resolution
            codes = "".join(_TYPE_CODES[b.type] + ("" if b.mlp_ratio == 4 else f"{b.mlp_ratio:g}")
                            for b in stage.blocks)
            text += f"{sep}{stage.width}:{codes}"
        return text + ("" if self.resolution == 224 else f"@{self.resolution}")

    def digest(self) -> str:
        """A short stable identifier of the architecture (same JSON, same digest, across runs and machines)."""
        return hashlib.sha1(self.to_json(indent=None).encode()).hexdigest()[:12]

    # ---------------------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "stem_width": self.stem_width,
            "stages": [
                {"width": s.width, "blocks": [{"type": b.type, "mlp_ratio": b.mlp_ratio} for b in s.blocks]}
                for s in self.stages
            ],
            "downsample": list(self.downsample),
            "num_classes": self.num_classes,
            "distillation": self.distillation,
            "in_chans": self.in_chans,
            "resolution": self.resolution,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SwiftFormerArch":
        if not isinstance(data, Mapping):
            raise ArchitectureError(f"an architecture must be a JSON object, got {type(data).__name__}")
        _check_keys("architecture", data, {f.name for f in dataclasses.fields(cls)}, required={"stages"})
        stages_data = data["stages"]
        if not isinstance(stages_data, list):
            raise ArchitectureError(f"stages must be a list, got {type(stages_data).__name__}")
        if not stages_data:
            raise ArchitectureError("an architecture needs at least one stage, got 0")
        stages = tuple(_stage_from_dict(i, s) for i, s in enumerate(stages_data))
        kwargs = {k: v for k, v in data.items() if k != "stages"}
        if "downsample" in kwargs and isinstance(kwargs["downsample"], list):
            kwargs["downsample"] = tuple(kwargs["downsample"])
        if "stem_width" not in kwargs and stages:
            kwargs["stem_width"] = max(1, stages[0].width // 2)
        return cls(stages=stages, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "SwiftFormerArch":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"architecture is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "SwiftFormerArch":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArchitectureError(f"cannot read architecture file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ArchitectureError(f"architecture file {str(path)!r} is not UTF-8 text (damaged, or not an "
                                    "architecture's JSON)") from None
        try:
            return cls.from_json(text)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{path}: {exc}") from None


def mhsa_heads(width: int) -> tuple[int, int]:
    """``(num_heads, head_dim)`` of an ``mhsa`` block at ``width`` channels.

    EfficientFormer's 32 channels per head, ``max(1, width // 32)`` heads. Attention then runs on
    ``num_heads * 32`` channels, which is the width itself when 32 divides it; otherwise the remainder
    (``width % 32``) still feeds every head through the q/k/v projection and receives the output projection, but
    gets no head of its own (no odd-sized head). Below 32 channels there is one head as wide as the stage.
    """
    _check_positive_int("width", width)
    return (max(1, width // MHSA_HEAD_DIM), min(width, MHSA_HEAD_DIM))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArchitectureError(f"{name} must be a positive integer, got {value!r}")


def _check_keys(where: str, data: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ArchitectureError(f"{where}: unknown field {unknown[0]!r}; accepted: {', '.join(sorted(allowed))}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise ArchitectureError(f"{where}: missing field {missing[0]!r}")


def _stage_from_dict(index: int, data: Any) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(data, Mapping):
        raise ArchitectureError(f"{where} must be an object with width and blocks, got {data!r}")
    _check_keys(where, data, {"width", "blocks"}, required={"width", "blocks"})
    blocks_data = data["blocks"]
    if not isinstance(blocks_data, list):
        raise ArchitectureError(f"{where}.blocks must be a list, got {type(blocks_data).__name__}")
    blocks = []
    for j, item in enumerate(blocks_data):
        try:
            if isinstance(item, str):  # shorthand: a block type ("conv", "attn", "mhsa") with the default MLP ratio
                blocks.append(Block(item))
            elif isinstance(item, Mapping):
                _check_keys(f"{where}.blocks[{j}]", item, {"type", "mlp_ratio"}, required={"type"})
                blocks.append(Block(**item))
            else:
                raise ArchitectureError(f"must be a block type or an object, got {item!r}")
        except ArchitectureError as exc:
            raise ArchitectureError(f"{where}.blocks[{j}]: {exc}") from None
    try:
        return Stage(width=data["width"], blocks=tuple(blocks))
    except ArchitectureError as exc:
        raise ArchitectureError(f"{where}: {exc}") from None


#: The four released variants (Shaker et al., ICCV 2023), exactly as in the official code.
VARIANTS: dict[str, SwiftFormerArch] = {
    "xs": SwiftFormerArch.standard(depths=(3, 3, 6, 4), widths=(48, 56, 112, 220)),
    "s": SwiftFormerArch.standard(depths=(3, 3, 9, 6), widths=(48, 64, 168, 224)),
    "l1": SwiftFormerArch.standard(depths=(4, 3, 10, 5), widths=(48, 96, 192, 384)),
    "l3": SwiftFormerArch.standard(depths=(4, 4, 12, 6), widths=(64, 128, 320, 512)),
}


def variant(name: str) -> SwiftFormerArch:
    """The released variant called ``name`` (``xs``, ``s``, ``l1`` or ``l3``, any case)."""
    key = name.lower().removeprefix("swiftformer_").removeprefix("swiftformer-")
    if key not in VARIANTS:
        raise ArchitectureError(f"unknown SwiftFormer variant {name!r}; accepted: {', '.join(VARIANTS)}")
    return VARIANTS[key]


def as_arch(value: "SwiftFormerArch | Mapping[str, Any] | str | Path") -> SwiftFormerArch:
    """An architecture from any of its forms: the value itself, its dict, its JSON text, or a JSON file path."""
    if isinstance(value, SwiftFormerArch):
        return value
    if isinstance(value, Mapping):
        return SwiftFormerArch.from_dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return SwiftFormerArch.from_json(value)
    if isinstance(value, (str, Path)):
        return SwiftFormerArch.load(value)
    raise ArchitectureError(f"cannot read an architecture from {type(value).__name__}; "
                            "accepted: SwiftFormerArch, dict, JSON text, JSON file path")
