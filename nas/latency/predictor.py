"""Latency predictors: a few non-negative costs per unit of work, fitted to measured latencies.

A prediction is ``intercept + sum(cost[k] * work[k])`` over the deployed graph's work (``graph.FEATURES``), so
it is additive over the parts of a network: a per-block table built with the same predictor sums to the
whole-model prediction. Costs are fitted by non-negative least squares on relative error, with a small ridge
penalty, because calibration sets have 20-50 rows: a handful of physically meaningful, non-negative costs
generalises where a flexible model would memorise.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import lsq_linear

from .graph import OpProfile

# The costs a predictor fits, with the unit each is expressed in (ms per unit). ``macs`` is one rate shared by
# every multiply-accumulate; the others are extra costs of particular kinds of work (depthwise convs, linears on
# token sequences and activation-activation products, which the Neural Engine runs slowly; weight traffic;
# normalisation layers, softmax, reductions). The extras are ridge-penalised and non-negative: with little
# evidence a predictor falls back to latency ~ MACs + constant, and a kind of work costs extra only where the
# measurements show it. Chosen on physical grounds, not by searching subsets on the data.
COSTS: dict[str, float] = {
    "macs": 1e9,
    "weight_io": 1e7,
    "dwconv_macs": 1e8,
    "token_macs": 1e9,
    "attn_macs": 1e8,
    "norm": 1e6,
    "softmax": 1e6,
    "reduction": 1e6,
}
UNPENALISED = ("macs",)
RIDGE = 0.01


class PredictorError(ValueError):
    """A predictor file or device name that cannot be used."""


def work_vector(profile: OpProfile) -> np.ndarray:
    """The profile's work in the predictor's units, in ``COSTS`` order."""
    values = {**profile.features, "macs": profile.macs}
    return np.array([values[name] / unit for name, unit in COSTS.items()])


@dataclass
class LatencyPredictor:
    device: str
    costs: dict[str, float]  # ms per unit of COSTS[name]
    intercept_ms: float
    units: dict[str, float] = field(default_factory=lambda: dict(COSTS))
    calibration: dict = field(default_factory=dict)  # rows used, their source, fit date, notes

    def predict(self, profile: OpProfile) -> float:
        """Milliseconds for one inference of the profiled, deployed graph."""
        return self.intercept_ms + self.predict_parts(profile)

    def predict_parts(self, profile: OpProfile) -> float:
        """The work-dependent part only: what a piece of a network adds (used for per-block tables)."""
        return float(work_vector(profile) @ np.array([self.costs[name] for name in COSTS]))

    # ------------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise PredictorError(f"cannot read predictor {str(path)!r}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise PredictorError(f"predictor {str(path)!r} is not valid JSON: {exc}") from None
        try:
            predictor = cls(**data)
        except TypeError as exc:
            raise PredictorError(f"predictor {str(path)!r} is malformed: {exc}") from None
        if set(predictor.costs) != set(COSTS) or predictor.units != COSTS:
            raise PredictorError(f"predictor {str(path)!r} was made for other cost terms "
                                 f"({', '.join(predictor.costs)}); recalibrate it with this version")
        return predictor


def fit_costs(work: np.ndarray, latency_ms: np.ndarray, ridge: float = RIDGE,
              penalised: Sequence[bool] | None = None) -> tuple[np.ndarray, float]:
    """Non-negative costs and intercept minimising relative squared error (+ ridge on the penalised costs)."""
    n, k = work.shape
    design = np.hstack([work, np.ones((n, 1))]) / latency_ms[:, None]
    weights = np.asarray(penalised if penalised is not None else [True] * k, dtype=float)
    penalty = np.sqrt(ridge) * np.hstack([np.diag(weights), np.zeros((k, 1))])
    solution = lsq_linear(np.vstack([design, penalty]), np.concatenate([np.ones(n), np.zeros(k)]),
                          bounds=(0, np.inf)).x
    return solution[:k], float(solution[k])


def calibrate(profiles: Sequence[OpProfile], latency_ms: Sequence[float], device: str,
              calibration: dict | None = None) -> LatencyPredictor:
    """A predictor for ``device`` from measured latencies of profiled models."""
    if len(profiles) < 3:
        raise PredictorError(f"calibration needs at least 3 measured models, got {len(profiles)}")
    work = np.stack([work_vector(p) for p in profiles])
    costs, intercept = fit_costs(work, np.asarray(latency_ms, dtype=float),
                                 penalised=[name not in UNPENALISED for name in COSTS])
    return LatencyPredictor(device, dict(zip(COSTS, map(float, costs))), intercept, dict(COSTS),
                            dict(calibration or {}, rows=len(profiles)))


# ----------------------------------------------------------------------------------------- shipped devices
def device_key(name: str) -> str:
    """How device names compare: ``iPhone 14``, ``iphone-14`` and ``iphone14`` are one device."""
    return name.lower().replace(" ", "").replace("-", "").replace("_", "")


def resolve_predictor(device: str | None, predictor_path: str | None) -> LatencyPredictor:
    """A calibrated predictor file if given, else the shipped predictor of ``device`` (default iphone14)."""
    return LatencyPredictor.load(predictor_path) if predictor_path else load_device(device or "iphone14")


def builtin_devices() -> list[str]:
    folder = resources.files("nas") / "data" / "predictors"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_device(name: str) -> LatencyPredictor:
    """A shipped predictor by device name (``iphone14``, ``iphone12``)."""
    key = device_key(name)
    if key not in builtin_devices():
        raise PredictorError(f"unknown device {name!r}; accepted: {', '.join(builtin_devices())} "
                             "(or calibrate your own with `nas latency calibrate`)")
    with resources.as_file(resources.files("nas") / "data" / "predictors" / f"{key}.json") as path:
        return LatencyPredictor.load(path)
