"""How well a predictor (or the calibration procedure) predicts measured latencies.

Leave-one-out repeats the whole calibration without each row in turn, so every figure is a prediction of a
model the fit never saw. The baseline is the usual proxy, latency proportional to MACs plus a constant, fitted
the same way (relative error, non-negative), also leave-one-out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import kendalltau

from .measurements import MeasurementError, Sample
from .predictor import LatencyPredictor, calibrate, fit_costs


@dataclass
class Evaluation:
    rows: list[dict] = field(default_factory=list)  # model, resolution, measured_ms, predicted_ms, baseline_ms
    mape: float = 0.0
    within_10pct: float = 0.0
    kendall_tau: float = 0.0
    baseline_mape: float = 0.0
    baseline_within_10pct: float = 0.0
    baseline_kendall_tau: float = 0.0
    mode: str = ""

    def summary(self) -> dict:
        keys = ("mape", "within_10pct", "kendall_tau", "baseline_mape", "baseline_within_10pct",
                "baseline_kendall_tau")
        return {"mode": self.mode, "rows": len(self.rows), **{k: round(getattr(self, k), 4) for k in keys}}


def scores(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float, float]:
    """Mean absolute percentage error, share within +/-10 %, Kendall tau."""
    p, y = np.asarray(predicted, float), np.asarray(measured, float)
    errors = np.abs(p - y) / y
    tau = kendalltau(p, y)[0] if len(y) > 1 else float("nan")
    return float(errors.mean()), float((errors <= 0.10 + 1e-9).mean()), float(tau)


def _baseline_loo(samples: Sequence[Sample]) -> list[float]:
    macs = np.array([[s.profile.macs / 1e9] for s in samples])
    y = np.array([s.latency_ms for s in samples])
    predictions = []
    for i in range(len(samples)):
        keep = np.arange(len(samples)) != i
        cost, intercept = fit_costs(macs[keep], y[keep], ridge=0.0)
        predictions.append(float(macs[i] @ cost + intercept))
    return predictions


def _finish(samples: Sequence[Sample], predicted: list[float], mode: str) -> Evaluation:
    baseline = _baseline_loo(samples)
    measured = [s.latency_ms for s in samples]
    result = Evaluation(mode=mode)
    result.rows = [dict(model=s.model, resolution=s.resolution, measured_ms=s.latency_ms, predicted_ms=p,
                        baseline_ms=b) for s, p, b in zip(samples, predicted, baseline)]
    result.mape, result.within_10pct, result.kendall_tau = scores(predicted, measured)
    result.baseline_mape, result.baseline_within_10pct, result.baseline_kendall_tau = scores(baseline, measured)
    return result


def evaluate_predictor(predictor: LatencyPredictor, samples: Sequence[Sample]) -> Evaluation:
    return _finish(samples, [predictor.predict(s.profile) for s in samples], f"predictor {predictor.device}")


def leave_one_out(samples: Sequence[Sample]) -> Evaluation:
    if len(samples) < 4:
        raise MeasurementError(f"leave-one-out needs at least 4 usable rows, got {len(samples)}")
    predicted = []
    for i, held_out in enumerate(samples):
        rest = [s for j, s in enumerate(samples) if j != i]
        predictor = calibrate([s.profile for s in rest], [s.latency_ms for s in rest], device="loo")
        predicted.append(predictor.predict(held_out.profile))
    return _finish(samples, predicted, "leave-one-out calibration")
