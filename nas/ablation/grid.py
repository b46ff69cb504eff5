"""Users' own ablations: a YAML grid of factors over a base architecture.

Schema (every key but ``factors`` optional)::

    name: attn-s2-s4            # names the default --out and study
    base: swiftformer:xs        # a model reference of the family (``--base`` overrides it; default swiftformer:xs)
    factors:                    # the grid is the product of every factor's values
      s2.attn: [0, 1]           # attention blocks in stage 2 (at the stage's position, default last)
      s4.attn: [0, 1, 2]
      s3.position: [first, last]  # where stage 3's attention blocks sit
      s3.kind: [attn, conv]     # the kind of stage 3's attention blocks (any of BLOCK_TYPES)
      s3.depth: [4, 6]          # blocks in stage 3 (attention count and position kept)
      s1.width: [32, 48]        # channels of stage 1
      s3.mlp_ratio: [2, 4]      # MLP ratio of every block of stage 3

A stage named by any factor other than ``width`` is rebuilt from its depth, attention count, position, kind
and MLP ratios, each taken from the factor if given, else from the base stage (position: ``first`` if its
attention blocks lead the stage, else ``last``; blocks added by a larger depth take the stage's most common MLP
ratio). The base is always trained too (every comparison is against it); cells that build the same network are
trained once.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from swiftformer import BLOCK_TYPES, ArchitectureError, Block, Stage, SwiftFormerArch

from ..files import read_text
from .variants import Variant, VariantError, attention_at, attention_kind, dedupe, is_attention, most_common_ratio

FIELDS = ("attn", "position", "kind", "depth", "width", "mlp_ratio")
TOP_LEVEL = ("name", "base", "factors")
MAX_CELLS = 100_000  # refused before enumerating: a grid this large was not meant
GRID_BASE = "base"
_KEY = re.compile(r"^s(\d+)\.(\w+)$")


class GridError(ValueError):
    """A grid file that cannot be read or run; the message names the key or cell."""


@dataclass(frozen=True)
class Grid:
    name: str
    base: str | None
    factors: dict[str, list[Any]]  # "sK.field" -> values, in file order

    @property
    def cells(self) -> int:
        size = 1
        for values in self.factors.values():
            size *= len(values)
        return size

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "factors": self.factors}


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "grid", "give a YAML grid (see README's ablation grids)"))
    except yaml.YAMLError as exc:
        raise GridError(f"grid {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return parse_grid(data, default_name=path.stem)
    except GridError as exc:
        raise GridError(f"{path}: {exc}") from None


def parse_grid(data: Any, default_name: str = "grid") -> Grid:
    if not isinstance(data, Mapping):
        raise GridError("a grid must be a mapping with a 'factors' key")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise GridError(f"unknown key {unknown[0]!r}; accepted: {', '.join(TOP_LEVEL)}")
    factors = data.get("factors")
    if not isinstance(factors, Mapping) or not factors:
        raise GridError("'factors' must be a non-empty mapping of sK.FIELD to a list of values, e.g. "
                        "{s2.attn: [0, 1]}")
    parsed: dict[str, list[Any]] = {}
    for key, values in factors.items():
        match = _KEY.match(str(key))
        if not match or match.group(2) not in FIELDS or int(match.group(1)) < 1:
            raise GridError(f"factor {key!r} is not sK.FIELD with K >= 1 and FIELD one of {', '.join(FIELDS)}")
        if not isinstance(values, list) or not values:
            raise GridError(f"factor {key!r} needs a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise GridError(f"factor {key!r} lists a value twice: {values!r}")
        for value in values:
            _check_value(str(key), match.group(2), value)
        parsed[str(key)] = list(values)
    base = data.get("base")
    if base is not None and not isinstance(base, str):
        raise GridError(f"'base' must be a model reference such as swiftformer:xs, got {base!r}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise GridError(f"'name' must be a word (letters, digits, '.', '-', '_'), got {name!r}")
    grid = Grid(name, base, parsed)
    if grid.cells > MAX_CELLS:
        raise GridError(f"the grid has {grid.cells:,} cells; more than {MAX_CELLS:,} is surely a mistake")
    return grid


def _check_value(key: str, field: str, value: Any) -> None:
    integer = isinstance(value, int) and not isinstance(value, bool)
    ok = {"attn": integer and value >= 0, "depth": integer and value >= 1, "width": integer and value >= 1,
          "position": value in ("first", "last"), "kind": value in BLOCK_TYPES,
          "mlp_ratio": isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0}[field]
    if not ok:
        expected = {"attn": "an integer >= 0", "depth": "an integer >= 1", "width": "an integer >= 1",
                    "position": "first or last", "kind": f"one of {', '.join(BLOCK_TYPES)}",
                    "mlp_ratio": "a positive number"}[field]
        raise GridError(f"factor {key!r}: value {value!r} is not {expected}")


def grid_variants(grid: Grid, base: SwiftFormerArch) -> list[Variant]:
    """The base, then every cell of the grid in file order, deduplicated by architecture."""
    for key in grid.factors:
        stage = int(_KEY.match(key).group(1))
        if stage > len(base.stages):
            raise GridError(f"factor {key!r}: the base has {len(base.stages)} stages")
    keys = list(grid.factors)
    named: list[tuple[str, SwiftFormerArch]] = [(GRID_BASE, base)]
    for values in itertools.product(*grid.factors.values()):
        cell = dict(zip(keys, values))
        name = ",".join(f"{k}={v}" for k, v in cell.items())
        try:
            named.append((name, apply_cell(base, cell)))
        except (ArchitectureError, VariantError) as exc:
            raise GridError(f"cell {name} cannot be built: {exc}") from None
    return dedupe(named)


def apply_cell(base: SwiftFormerArch, cell: Mapping[str, Any]) -> SwiftFormerArch:
    by_stage: dict[int, dict[str, Any]] = {}
    for key, value in cell.items():
        match = _KEY.match(key)
        by_stage.setdefault(int(match.group(1)) - 1, {})[match.group(2)] = value
    stages = list(base.stages)
    for index, edits in by_stage.items():
        stages[index] = edit_stage(stages[index], edits)
    return base.replace(stages=tuple(stages))


def edit_stage(stage: Stage, edits: Mapping[str, Any]) -> Stage:
    width = edits.get("width", stage.width)
    if set(edits) <= {"width"}:
        return Stage(width, stage.blocks)
    attention = [j for j, b in enumerate(stage.blocks) if is_attention(b)]
    leading = bool(attention) and attention == list(range(len(attention))) and len(attention) < stage.depth
    depth = edits.get("depth", stage.depth)
    ratios = [b.mlp_ratio for b in stage.blocks][:depth]
    ratios += [most_common_ratio(stage)] * (depth - len(ratios))
    if "mlp_ratio" in edits:
        ratios = [float(edits["mlp_ratio"])] * depth
    plain = Stage(width, tuple(Block("conv", r) for r in ratios))
    return attention_at(plain, edits.get("position", "first" if leading else "last"),
                        edits.get("attn", len(attention)), edits.get("kind", attention_kind(stage)))
