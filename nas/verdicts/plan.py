"""A verdict plan: what the three headline experiments train, at one scale, read from a YAML file.

The three questions SwiftNAS exists to answer (does the search find better variants; does attention placement pay;
where does a searched family beat the hand-designed one) are answered by one plan per scale: the GPU-sized plan
for the headline figures, a CPU-sized one for what a 2-core machine can add, a toy one for the tests. A plan is a
value, so the same file always names the same trainings, and a changed plan starts its own folder's studies.

Every model a verdict compares is retrained with one recipe and the same seeds, so each comparison is paired.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..files import read_text
from ..training.protocols import CANDIDATES
from ..units import parse_latency_ms

VERDICTS = ("search", "ablation", "family")
RELEASED = ("xs", "s", "l1", "l3")
ABLATIONS = ("placement", "type")


class PlanError(ValueError):
    """A plan that cannot run; the message names the bad value and what is accepted."""


@dataclass(frozen=True)
class SearchPart:
    """Verdict 1: a default search and a one-shot search per budget, their winners against the released variants
    within the budget."""

    budgets: tuple[float, ...] = (0.8, 1.0)  # ms on the plan's phone
    trials: int = 100  # trained candidates of each proxy search (references not counted)
    args: tuple[str, ...] = ()  # extra `nas search` options for every search of the plan (e.g. the proxy's size)
    oneshot_space: str = "experiments/supernet/swiftformer-cifar.yaml"
    supernet_epochs: int = 30
    supernet_args: tuple[str, ...] = ()
    oneshot_trials: int = 1000  # candidates each one-shot search scores with the supernet's weights
    # The supernet's weights (hundreds of MB) stay on the machine that trained them, so the supernet and the
    # one-shot searches that read it run in one chunk: started only when this many minutes are left in it.
    oneshot_minutes: float = 60.0


@dataclass(frozen=True)
class AblationPart:
    """Verdict 2: `nas ablate placement` and `type` on one base, with as many seeds as resolve ``resolve`` points."""

    base: str = "swiftformer:xs"
    protocol: str = "56px-20ep-crop"
    args: tuple[str, ...] = ()  # extra `nas ablate` options (the proxy's size where protocol is proxy)
    studies: tuple[str, ...] = ABLATIONS
    kinds: str | None = None  # the type ablation's --kinds (default: every kind)
    first_seeds: int = 4  # seeds trained before the noise is measured
    resolve: float = 0.5  # points of val accuracy to resolve at 80 % power, two-sided 5 %
    max_seeds: int = 24  # the most seeds the plan spends; the report says when it binds


@dataclass(frozen=True)
class FamilyPart:
    """Verdict 3: a Pareto search up to ``budget``, its front retrained beside the released ``references``."""

    budget: float = 1.5
    trials: int = 100
    front: int = 6  # front members retrained, spread over the front's latency
    references: tuple[str, ...] = ("xs", "s", "l1")


@dataclass(frozen=True)
class Plan:
    name: str
    data: str  # a data spec, relative paths from the repository root (so every machine names the same study)
    recipe: str  # the retraining recipe of every compared model (`nas retrain --recipe`)
    phone: str = "iphone14"
    seeds: int = 5  # paired retraining seeds 0..seeds-1
    workers: int = 1  # trainings at once: search and ablation workers, parallel retrainings
    verdicts: tuple[str, ...] = VERDICTS
    search: SearchPart = field(default_factory=SearchPart)
    ablation: AblationPart = field(default_factory=AblationPart)
    family: FamilyPart = field(default_factory=FamilyPart)
    source: str = ""  # the file it was read from

    def __post_init__(self) -> None:
        _check(self.seeds >= 2, "seeds", self.seeds, "at least 2 (paired intervals need two pairs)")
        _check(self.workers >= 1, "workers", self.workers, "a positive integer")
        _check(self.phone in ("iphone14", "iphone12"), "phone", self.phone, "iphone14 or iphone12")
        for verdict in self.verdicts:
            _check(verdict in VERDICTS, "verdicts", verdict, ", ".join(VERDICTS))
        for budget in (*self.search.budgets, self.family.budget):
            _check(budget > 0, "budget", budget, "a positive latency such as 1ms")
        for count, key in ((self.search.trials, "search.trials"), (self.search.oneshot_trials, "oneshot_trials"),
                           (self.search.supernet_epochs, "supernet_epochs"), (self.family.trials, "family.trials"),
                           (self.family.front, "family.front"), (self.ablation.first_seeds, "first_seeds"),
                           (self.ablation.max_seeds, "max_seeds")):
            _check(isinstance(count, int) and count >= 1, key, count, "a positive integer")
        _check(self.ablation.first_seeds >= 2, "first_seeds", self.ablation.first_seeds,
               "at least 2 (the noise is a paired SD)")
        _check(self.ablation.max_seeds >= self.ablation.first_seeds, "max_seeds", self.ablation.max_seeds,
               f"at least first_seeds ({self.ablation.first_seeds})")
        _check(self.search.oneshot_minutes > 0, "oneshot_minutes", self.search.oneshot_minutes,
               "a positive number of minutes")
        _check(self.ablation.resolve > 0, "resolve", self.ablation.resolve, "a positive number of points")
        protocols = ("proxy", "reference", *CANDIDATES)
        _check(self.ablation.protocol in protocols, "ablation.protocol", self.ablation.protocol, ", ".join(protocols))
        for study in self.ablation.studies:
            _check(study in ABLATIONS, "ablation.studies", study, ", ".join(ABLATIONS))
        for ref in self.family.references:
            _check(ref in RELEASED, "family.references", ref, ", ".join(RELEASED))

    @property
    def root(self) -> Path:
        """Where its studies, retrainings and report live: next to the plan file, in a folder of its name."""
        return Path(self.source).parent / self.name if self.source else Path(self.name)


def _check(ok: bool, key: str, value: Any, accepted: str) -> None:
    if not ok:
        raise PlanError(f"plan value {key}: {value!r} is not accepted; expected {accepted}")


def _budget(value: Any, key: str) -> float:
    try:
        return parse_latency_ms(str(value))
    except ValueError:
        raise PlanError(f"plan value {key}: {value!r} is not a latency; expected e.g. 0.8ms, 800us") from None


def _part(cls, data: Any, key: str, budgets: tuple[str, ...] = ()) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise PlanError(f"plan section {key}: expected a mapping of its settings, got {data!r}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise PlanError(f"plan section {key}: unknown setting {unknown[0]!r}; accepted: {', '.join(sorted(known))}")
    values = dict(data)
    for name, value in values.items():
        if name in budgets:
            values[name] = (tuple(_budget(v, f"{key}.{name}") for v in value) if isinstance(value, list)
                            else _budget(value, f"{key}.{name}"))
        elif isinstance(value, list):
            values[name] = tuple(str(v) if name.endswith("args") else v for v in value)
    return cls(**values)


def load_plan(path: str | Path) -> Plan:
    """Read a plan file; one-line PlanError on anything it cannot run."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan {str(path)!r} is not a file; the shipped plans are experiments/verdicts/*.yaml")
    try:
        data = yaml.safe_load(read_text(path, "plan", "give a YAML plan (the shipped ones: experiments/verdicts/*.yaml)"))
    except yaml.YAMLError as exc:
        raise PlanError(f"plan {str(path)!r} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PlanError(f"plan {str(path)!r} is not a mapping of settings")
    top = {"name", "data", "recipe", "phone", "seeds", "workers", "verdicts", "search", "ablation", "family"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise PlanError(f"plan {str(path)!r}: unknown setting {unknown[0]!r}; accepted: {', '.join(sorted(top))}")
    for key in ("name", "data", "recipe"):
        if not data.get(key):
            raise PlanError(f"plan {str(path)!r} has no {key!r}; it names the plan's folder, data and retraining "
                            "recipe")
    return Plan(name=str(data["name"]), data=str(data["data"]), recipe=str(data["recipe"]),
                phone=data.get("phone", "iphone14"), seeds=data.get("seeds", 5), workers=data.get("workers", 1),
                verdicts=tuple(data.get("verdicts", VERDICTS)),
                search=_part(SearchPart, data.get("search"), "search", ("budgets",)),
                ablation=_part(AblationPart, data.get("ablation"), "ablation"),
                family=_part(FamilyPart, data.get("family"), "family", ("budget",)), source=str(path))
