"""What a search is: its settings, which of them make a study's results comparable, and its user errors."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..identity import ProxyConfig, ScoringConfig
from ..trials.errors import RunError
from ..trials.execution import Execution

SAMPLERS = ("tpe", "nsga2", "random", "evolution", "gp")
OBJECTIVES = ("constrained", "pareto")
MARGINS = ("none", "band")  # what must fit the budget: the predicted latency, or its error band's upper edge


class SearchError(RunError):
    """A search that cannot start or go on; the message says what to change."""


@dataclass
class SearchConfig(Execution):
    budget_ms: float
    device: str | None = "iphone14"  # the phone whose latency is predicted
    predictor: str | None = None  # a calibrated predictor file instead of a shipped device
    space: str = "swiftformer"
    data: str = "fashion-mnist"
    trials: int = 25  # searched architectures given training time (rejections, duplicates, references are extra)
    sampler: str = "tpe"
    objective: str = "constrained"
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    evaluator: str = "proxy"  # proxy: train each candidate; supernet:DIR: its inherited weights from DIR's supernet;
    # callable:MODULE:FUNCTION: FUNCTION(arch) -> val accuracy (a tabular benchmark, a zero-cost score, a load test)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)  # the supernet evaluator's image counts
    seed: int = 0
    out: str = ""
    study: str = ""
    latency_margin: str = "none"  # "band": the upper edge of the predictor's error band must fit the budget
    # tabular benchmarks (--data nb201:<dataset>): the table column scored, and whether latency is the device's
    # measured figure (None) or a predictor's calibrated on this many measured architectures of the device
    table_score: str = "12ep"
    latency_shots: int | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}; accepted: {', '.join(SAMPLERS)}")
        if self.objective not in OBJECTIVES:
            raise SearchError(f"unknown objective {self.objective!r}; accepted: {', '.join(OBJECTIVES)}")
        self.check_execution(SearchError)
        if self.trials < 1:
            raise SearchError(f"--trials {self.trials} must be at least 1")
        if self.latency_margin not in MARGINS:
            raise SearchError(f"unknown latency margin {self.latency_margin!r}; accepted: {', '.join(MARGINS)}")
        kind, _, folder = self.evaluator.partition(":")
        if self.evaluator != "proxy" and not ((kind == "supernet" and folder) or
                                              (kind == "callable" and folder.count(":") == 1 and all(
                                                  folder.split(":")))):
            raise SearchError(f"--evaluator {self.evaluator!r} is not supported; accepted: proxy, supernet:DIR, "
                              "callable:MODULE:FUNCTION")
        if kind == "supernet":  # absolute: Ray workers run in other folders
            self.evaluator = f"supernet:{Path(folder).expanduser().resolve()}"
        if self.tabular:
            if self.evaluator != "proxy":
                raise SearchError(f"--evaluator {self.evaluator} does not apply to --data {self.data}: the table "
                                  "scores every architecture")
            if self.predictor:
                raise SearchError(f"--predictor does not apply to --data {self.data}: latency is the device's "
                                  "measured figure, or --latency-shots K calibrates a predictor on K of them")
        elif self.latency_shots is not None or self.table_score != "12ep":
            raise SearchError("--latency-shots and --table-score apply to tabular benchmarks only (--data nb201:...)")
        if self.latency_shots is not None and self.latency_shots < 3:
            raise SearchError(f"--latency-shots {self.latency_shots} must be at least 3 measured architectures")
        budget = f"{self.budget_ms:g}ms".replace(".", "p")
        budget += "" if self.latency_margin == "none" else f"-{self.latency_margin}"
        device = self.device or Path(self.predictor or 'custom').stem
        if self.tabular:  # the table's dataset, and how latency and score are had, name the study too
            device = f"{self.data.partition(':')[2]}-{device}"
            budget += "" if self.latency_shots is None else f"-{self.latency_shots}shot"
            budget += "" if self.table_score == "12ep" else f"-{self.table_score}"
        self.study = self.study or f"{Path(self.space).stem}-{device}-{budget}"
        self.out = self.out or str(Path("runs") / self.study)

    @property
    def tabular(self) -> bool:
        """Whether candidates are scored from a benchmark's table (``--data nb201:<dataset>``) instead of trained."""
        return self.data.startswith("nb201:")

    def storage_url(self) -> str:
        """``--storage`` if given; else the one already in ``--out``; else SQLite for one local process, a
        journal file for several or for Ray. A URL with ``://`` is an RDB, anything else a journal file path."""
        out = Path(self.out).resolve()
        url = self.storage
        if url is None:
            if (out / "study.db").exists():
                url = f"sqlite:///{out / 'study.db'}"
            elif (out / "study.journal").exists() or self.parallel_writers or self.tabular:
                # (a tabular trial takes microseconds: SQLite's commit per attribute would be most of the run)
                url = str(out / "study.journal")
            else:
                url = f"sqlite:///{out / 'study.db'}"
        return self.checked_storage(url, out, SearchError)

    def identity(self) -> dict[str, Any]:
        """What must stay the same for results to be comparable, and so for a run to resume a study. The proxy
        includes the val hold-out's fraction and seed, so a study records the split it selected on. The latency
        margin is part of it when one is kept (absent for none, so studies from before the option resume)."""
        identity = {"budget_ms": self.budget_ms, "device": self.device, "predictor": self.predictor,
                    "space": self.space, "data": self.data, "objective": self.objective, "proxy": self.proxy.to_dict()}
        if self.tabular:  # nothing is trained: the score column and the latency source say what a trial is
            del identity["proxy"]
            identity["score"] = self.table_score
            identity["latency"] = "measured" if self.latency_shots is None else \
                {"shots": self.latency_shots, "seed": self.seed}
        if self.supernet_dir is not None:  # (absent for the proxy, so studies made before evaluators still resume)
            scoring = {k: v for k, v in self.scoring.to_dict().items() if k != "uncalibrated"}  # a record, not a score
            identity["evaluator"] = {"supernet": supernet_digest(self.supernet_dir), "scoring": scoring}
        elif self.evaluator.startswith("callable:"):
            identity["evaluator"] = self.evaluator
        if self.latency_margin != "none":
            identity["latency_margin"] = self.latency_margin
        return identity

    def score_name(self) -> tuple[str, str]:
        """What a trial's val accuracy is, for reports (a supernet's score is not a proxy's): a short name and
        how it was obtained."""
        if self.supernet_dir is not None:
            val = "all" if self.scoring.val_images is None else f"{self.scoring.val_images}"
            return ("inherited-weight accuracy", f"scored with the weights of the supernet in {self.supernet_dir} "
                    f"(BN statistics re-estimated on {self.scoring.bn_images} train images), on {val} val images; "
                    "no candidate is trained")
        if self.evaluator.startswith("callable:"):
            return "evaluator accuracy", f"given by the user's function {self.evaluator.partition(':')[2]}"
        if self.tabular:
            from ..benchmarks.tabular import SCORES

            return f"{self.table_score} accuracy", f"read from the benchmark's table: {SCORES[self.table_score]}"
        return "proxy accuracy", f"proxy training: {self.proxy.describe()}"

    @property
    def supernet_dir(self) -> Path | None:
        return Path(self.evaluator.partition(":")[2]) if self.evaluator.startswith("supernet:") else None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["proxy"] = self.proxy.to_dict()
        data["scoring"] = self.scoring.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchConfig":
        return cls(**{**data, "proxy": ProxyConfig.from_dict(data["proxy"]),
                      "scoring": ScoringConfig(**data.get("scoring", {}))})


def supernet_digest(folder: Path) -> str:
    """Names the supernet trained in ``folder`` (its settings and length), read from its ``supernet.json``."""
    from ..supernet.checkpoint import DESCRIPTION, load_description

    if not (Path(folder) / DESCRIPTION).is_file():
        raise SearchError(f"--evaluator supernet:{folder}: no trained supernet there (no {DESCRIPTION}); train one "
                          f"with `nas supernet train --out {folder}`")
    try:
        return load_description(folder)["digest"]
    except (KeyError, TypeError) as exc:
        raise SearchError(f"--evaluator supernet:{folder}: no trained supernet there ({DESCRIPTION}: "
                          f"{type(exc).__name__}); train one with `nas supernet train --out {folder}`") from None


