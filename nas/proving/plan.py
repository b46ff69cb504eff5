"""What the proving ground runs: settings with known answers, samplers, repeats, query counts.

A setting is a NAS-Bench-201 dataset and, for a constrained one, a device of the latency table and a budget. The
constrained settings are HELP's Table 4 (CIFAR-100; its 5 test devices x 3 budgets, with the architecture HELP's
search found there); the unconstrained ones are the three datasets with no budget. Each (setting, latency
source, sampler, repeat) is one search of ``queries`` table look-ups: latency measured (the oracle's own view) or
predicted from a few measured architectures (the realistic case, where a pick may break the budget).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

from ..search.config import SAMPLERS

UNCONSTRAINED_DEVICE = "titan_rtx_256"  # any device: with no budget its latency only labels the trials


@dataclass(frozen=True)
class Setting:
    dataset: str
    device: str | None = None  # None: unconstrained
    budget_ms: float = math.inf
    help_found: tuple[float, float] | None = None  # HELP Table 4: (found latency ms, accuracy %)

    @property
    def key(self) -> str:
        if self.device is None:
            return f"{self.dataset}-unconstrained"
        return f"{self.dataset}-{self.device}-{self.budget_ms:g}ms"

    @property
    def constrained(self) -> bool:
        return self.device is not None


def _help(device: str, budgets: tuple[float, ...], found: tuple[tuple[float, float], ...]) -> list[Setting]:
    return [Setting("cifar100", device, b, f) for b, f in zip(budgets, found)]


# HELP (NeurIPS 2021) Table 4, MetaD2A + HELP with 10 latency samples: constraint -> (found latency, accuracy)
HELP_SETTINGS: tuple[Setting, ...] = tuple(
    _help("titan_rtx_256", (18, 21, 25), ((17.8, 69.7), (18.9, 71.5), (24.2, 71.8)))
    + _help("gold_6226", (8, 11, 14), ((8.0, 67.3), (10.7, 70.2), (14.3, 72.1)))
    + _help("pixel2", (14, 18, 22), ((13, 69.7), (19, 71.8), (25, 73.2)))
    + _help("eyeriss", (5, 7, 9), ((3.9, 71.5), (5.1, 71.8), (9.1, 73.5)))
    + _help("fpga", (4, 5, 6), ((3.8, 70.2), (4.7, 71.8), (7.4, 73.5))))
UNCONSTRAINED: tuple[Setting, ...] = tuple(Setting(d) for d in ("cifar10", "cifar100", "imagenet16-120"))
SETTINGS = {s.key: s for s in HELP_SETTINGS + UNCONSTRAINED}

MEASURED = "measured"


def latency_label(shots: int | None) -> str:
    return MEASURED if shots is None else f"{shots}-shot"


@dataclass(frozen=True)
class RunSpec:
    """One search of the proving ground."""

    setting: str  # Setting.key
    shots: int | None  # None: measured latency
    sampler: str
    repeat: int  # the search's seed
    queries: int
    score: str = "12ep"
    workers: int = 1  # workers proposing and evaluating at once, each evaluation taking a while (``run``)

    @property
    def key(self) -> str:
        key = f"{self.setting}|{latency_label(self.shots)}|{self.sampler}|{self.score}|r{self.repeat}"
        return key if self.workers == 1 else f"{key}|w{self.workers}"


@dataclass(frozen=True)
class Plan:
    """Everything a proving-ground run is; stored beside its results, so a resume runs the same plan."""

    name: str
    settings: tuple[str, ...]
    samplers: tuple[str, ...]
    repeats: int
    queries: int
    # predicted latency (k measured architectures of the device) on the constrained settings, for these samplers
    shots: int | None = 10
    shot_samplers: tuple[str, ...] = ("tpe", "random")
    scores: tuple[str, ...] = ("12ep",)
    # samplers whose cost grows fast with the trials they have seen, run last with fewer queries: (sampler, queries)
    capped: tuple[tuple[str, int], ...] = ()
    checkpoints: tuple[int, ...] = field(default=(10, 20, 50, 100, 200, 300, 500))
    workers: int = 1  # of every search: with more, the sampler proposes while other trials are evaluated

    def __post_init__(self) -> None:
        object.__setattr__(self, "capped", tuple((str(s), int(q)) for s, q in self.capped))
        unknown = [s for s in self.samplers + self.shot_samplers + tuple(s for s, _ in self.capped)
                   if s not in SAMPLERS]
        if unknown:
            raise ValueError(f"unknown sampler {unknown[0]!r}; accepted: {', '.join(SAMPLERS)}")
        missing = [s for s in self.settings if s not in SETTINGS]
        if missing:
            raise ValueError(f"unknown setting {missing[0]!r}; accepted: {', '.join(SETTINGS)}")
        if self.repeats < 1 or self.queries < 1 or self.workers < 1:
            raise ValueError("a plan needs at least 1 repeat, 1 query and 1 worker")
        object.__setattr__(self, "checkpoints", tuple(q for q in self.checkpoints if q <= self.queries)
                           or (self.queries,))

    def runs(self) -> Iterator[RunSpec]:
        """Every search: measured latency first, then predicted, then the capped samplers; repeat-major within
        each, so a chunk that stops early leaves every setting with as many repeats."""
        for repeat in range(self.repeats):
            for score in self.scores:
                for key in self.settings:
                    for sampler in self.samplers:
                        yield RunSpec(key, None, sampler, repeat, self.queries, score, self.workers)
        for repeat in range(self.repeats):
            for score in self.scores:
                for key in self.settings:
                    if self.shots is not None and SETTINGS[key].constrained:
                        for sampler in self.shot_samplers:
                            yield RunSpec(key, self.shots, sampler, repeat, self.queries, score)
        for repeat in range(self.repeats):
            for score in self.scores:
                for key in self.settings:
                    for sampler, queries in self.capped:
                        yield RunSpec(key, None, sampler, repeat, min(queries, self.queries), score)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # (tuples as lists, as the stored plan reads back)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        def tuples(value: Any) -> Any:
            return tuple(tuples(v) for v in value) if isinstance(value, list) else value

        return cls(**{k: tuples(v) for k, v in data.items()})

    @property
    def all_samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.samplers + self.shot_samplers + tuple(s for s, _ in self.capped)))

    def with_overrides(self, **changes: Any) -> "Plan":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PLANS = {
    # the run: HELP's 15 settings and the 3 unconstrained ones, 4 samplers x 30 repeats x 500 queries with
    # measured latency; tpe and random again with a 10-shot predictor (HELP's 10 samples) on the 15
    "full": Plan("full", tuple(SETTINGS), ("tpe", "nsga2", "random", "evolution"), 30, 500),
    # the samplers as optimisers: each query gets the 200-epoch mean itself (no proxy between score and truth), so
    # regret is the sampler's alone; measured latency, to the 200 queries the target is stated at
    "optimiser": Plan("optimiser", tuple(SETTINGS), ("tpe", "random", "evolution"), 30, 200, shots=None,
                      scores=("200ep-mean",)),
    # Optuna's GP sampler beside tpe and random, to 50 queries: its acquisition's cost per trial (RESULTS.md, plan gp)
    # would make 30 repeats x 18 settings about 30 CPU hours; 10 repeats of 6 settings
    "gp": Plan("gp", ("cifar100-pixel2-14ms", "cifar100-eyeriss-7ms", "cifar100-fpga-5ms", "cifar10-unconstrained",
                      "cifar100-unconstrained", "imagenet16-120-unconstrained"), ("tpe", "random", "gp"), 10, 50,
               shots=None),
    # what `make search`'s two workers cost the sampler: TPE proposing while another trial is evaluated (Optuna's
    # constant liar), against plan full's one-worker TPE on the same settings, score and measured latency
    "parallel": Plan("parallel", ("cifar100-pixel2-14ms", "cifar100-eyeriss-7ms", "cifar100-fpga-5ms",
                                  "cifar10-unconstrained", "cifar100-unconstrained", "imagenet16-120-unconstrained"),
                     ("tpe",), 10, 100, shots=None, checkpoints=(10, 25, 50, 100), workers=2),
    # minutes on 2 cores: one HELP setting, one unconstrained, 3 samplers x 5 repeats x 100 queries
    "quick": Plan("quick", ("cifar100-pixel2-14ms", "cifar10-unconstrained"), ("tpe", "random", "evolution"), 5, 100),
}
