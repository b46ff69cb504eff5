"""Per-part latency tables: predicting an architecture of a search space in microseconds.

Each part a space can contain (``Space.every_part_key``: a SwiftFormer stem, embedding, block or head; a
NAS-Bench-201 edge; an FBNet layer) is built alone in its deployed form (``Space.part_module``), profiled, and
priced by the device's predictor. Because a predictor is additive over the deployed graph's work, the table's sum
for an architecture equals the whole-model prediction, up to float rounding; the search uses it to reject
over-budget candidates before any training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from search_spaces import SearchSpace, Space
from search_spaces.swiftformer_parts import part_keys, part_module
from swiftformer import SwiftFormerArch

from ..files import write_text
from .graph import profile_module
from .predictor import SEARCHED_FAMILY, LatencyPredictor

PHONES = ("iphone14", "iphone12")  # the shipped predictors every job's results are priced on

Key = tuple  # a space's part key (search_spaces.interface.PartKey)


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
    # the parts of an architecture (the space's ``part_keys``); not stored: the space is rebuilt from its name
    keys_of: Callable[[Any], list[Key]] = field(default=part_keys, repr=False, compare=False)

    def predict(self, arch: Any) -> float:
        """Milliseconds for ``arch`` from the table (raises TableMissError for a part it does not hold)."""
        try:
            return self.intercept_ms + sum(self.entries[key] for key in self.keys_of(arch))
        except KeyError as exc:
            raise TableMissError(f"the {self.device} table of space {self.space!r} has no entry for "
                                 f"{exc.args[0]} (architecture {arch.summary()}); rebuild it for this space") from None

    def save(self, path: str | Path) -> None:
        data = {"device": self.device, "space": self.space, "intercept_ms": self.intercept_ms,
                "entries": [[list(k), v] for k, v in self.entries.items()]}
        write_text(path, json.dumps(data) + "\n")  # whole or not at all: a killed run never leaves a cut table

    @classmethod
    def load(cls, path: str | Path, keys_of: Callable[[Any], list[Key]] = part_keys) -> "LatencyTable":
        data = json.loads(Path(path).read_text())
        return cls(data["device"], data["space"], data["intercept_ms"],
                   {tuple(k): v for k, v in data["entries"]}, keys_of)


def build_table(space: Space, predictor: LatencyPredictor,
                progress: Callable[[int, int], Any] | None = None) -> LatencyTable:
    """Profile and price every part ``space`` can contain (a SwiftFormer space's as the searched family, by its
    own line where the calibration measured it; other spaces' by the shared costs)."""
    family = SEARCHED_FAMILY if isinstance(space, SearchSpace) else None
    return price_parts(space.every_part_key(), predictor, space.name, progress, space.part_module, space.part_keys,
                       family)


def table_for_archs(archs: Iterable[SwiftFormerArch], predictor: LatencyPredictor, name: str) -> LatencyTable:
    """Price just the parts of a fixed list of SwiftFormer architectures (an ablation's variants): no space to
    enumerate."""
    keys = sorted({key for arch in archs for key in part_keys(arch)}, key=repr)
    return price_parts(keys, predictor, name)


def price_parts(keys: list[Key], predictor: LatencyPredictor, name: str,
                progress: Callable[[int, int], Any] | None = None,
                module_of: Callable[[Key], tuple[torch.nn.Module, tuple[int, ...]]] = part_module,
                keys_of: Callable[[Any], list[Key]] = part_keys,
                family: str | None = SEARCHED_FAMILY) -> LatencyTable:
    """Profile each part alone in its deployed form and price it with ``predictor`` as it prices ``family`` (its
    own line, where the calibration measured the family; None: the shared costs)."""
    predictor = predictor.for_family(family)
    table = LatencyTable(predictor.device, name, predictor.intercept_ms, keys_of=keys_of)
    torch.manual_seed(0)
    for i, key in enumerate(keys):
        module, shape = module_of(key)
        table.entries[key] = predictor.predict_parts(profile_module(module, torch.randn(shape)))
        if progress:
            progress(i + 1, len(keys))
    return table
