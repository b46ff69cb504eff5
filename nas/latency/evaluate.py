"""How well latency is predicted: a fixed predictor on measured rows, or the calibration procedure on rows and
model families it never saw, each next to the MACs-only baseline.

Leave-one-row-out lets a held-out model be predicted from its near-identical siblings (three to five sizes of
one family); leave-one-family-out is what a user searching a new family gets. Both repeat the whole calibration,
choice of model form included, without the held-out rows (``calibration.cross_validate``). The baseline is the
usual proxy, latency = a * MACs + b per device, fitted on the same training rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import kendalltau

from .calibration import cross_validate
from .fitting import BASELINE, FORMS, ModelForm, Rows, fit
from .measurements import MeasurementError, Sample
from .predictor import LatencyPredictor, device_key


def scores(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float, float]:
    """Mean absolute percentage error, share within +/-10 %, Kendall tau."""
    p, y = np.asarray(predicted, float), np.asarray(measured, float)
    errors = np.abs(p - y) / y
    tau = kendalltau(p, y)[0] if len(y) > 1 else float("nan")
    return float(errors.mean()), float((errors <= 0.10 + 1e-9).mean()), float(tau)


def _score_dict(predicted: Sequence[float], baseline: Sequence[float], measured: Sequence[float]) -> dict:
    mape, within, tau = scores(predicted, measured)
    b_mape, b_within, b_tau = scores(baseline, measured)
    return {"mape": round(mape, 4), "within_10pct": round(within, 4), "kendall_tau": round(tau, 4),
            "baseline_mape": round(b_mape, 4), "baseline_within_10pct": round(b_within, 4),
            "baseline_kendall_tau": round(b_tau, 4)}


@dataclass
class Evaluation:
    """Predictions of one device's rows under one or more splits (``fixed``: a given predictor; ``row``,
    ``family``: cross-validated calibration)."""

    device: str
    mode: str
    samples: list[Sample]
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # split -> ms per sample
    baseline: dict[str, np.ndarray] = field(default_factory=dict)  # split -> MACs-only ms per sample
    forms: dict[str, list[str]] = field(default_factory=dict)  # split -> form chosen for each sample

    @property
    def measured(self) -> np.ndarray:
        return np.array([s.latency_ms for s in self.samples])

    def split_scores(self, split: str) -> dict:
        return _score_dict(self.predicted[split], self.baseline[split], self.measured)

    def families(self) -> list[dict]:
        """Per family and split: rows, MAPE, mean signed error and the largest error in ms."""
        out = []
        for family in dict.fromkeys(s.family for s in self.samples):
            index = [i for i, s in enumerate(self.samples) if s.family == family]
            y = self.measured[index]
            entry: dict[str, Any] = {"family": family, "rows": len(index), "splits": {}}
            for split, predicted in self.predicted.items():
                error = predicted[index] - y
                entry["splits"][split] = {"mape": round(float(np.mean(np.abs(error) / y)), 4),
                                "bias": round(float(np.mean(error / y)), 4),
                                "max_abs_ms": round(float(np.max(np.abs(error))), 4),
                                "baseline_mape": round(float(np.mean(np.abs(self.baseline[split][index] - y) / y)), 4)}
            out.append(entry)
        return out

    def summary(self) -> dict:
        """The first split's scores at the top level, every split's under its name, and the per-family table."""
        splits = list(self.predicted)
        return {"device": self.device, "mode": self.mode, "rows": len(self.samples),
                **self.split_scores(splits[0]), **{s: self.split_scores(s) for s in splits},
                "families": self.families()}


def evaluate_predictor(predictor: LatencyPredictor, samples: Sequence[Sample]) -> Evaluation:
    """A fixed predictor against measured rows, next to the MACs-only baseline fitted leave-one-row-out."""
    samples = list(samples)
    if len(samples) < 3:
        raise MeasurementError(f"evaluating against the MACs-only baseline needs at least 3 rows, got {len(samples)}")
    rows = Rows.of(samples)
    baseline = np.empty(len(samples))
    for i in range(len(samples)):
        keep = np.arange(len(samples)) != i
        baseline[i] = fit(rows.take(keep), BASELINE).predict(rows.take(np.array([i])))[0]
    result = Evaluation(predictor.device, f"predictor {predictor.device}", samples)
    result.predicted["fixed"] = np.array([predictor.predict(s.profile, s.family) for s in samples])
    result.baseline["fixed"] = baseline
    return result


def evaluate_calibration(samples: Sequence[Sample], device: str, splits: Sequence[str] = ("row",),
                         forms: Sequence[ModelForm] = FORMS,
                         progress: Callable[[str], Callable[[int, int], Any]] | None = None) -> Evaluation:
    """Nested cross-validation of calibrating ``device`` on ``samples`` (every device's rows help), per split."""
    samples = list(samples)
    mine = [i for i, s in enumerate(samples) if device_key(s.device) == device_key(device)]
    if len(mine) < 4:
        raise MeasurementError(f"cross-validation needs at least 4 usable rows of device {device!r}, got {len(mine)}")
    result = Evaluation(device, "calibration, cross-validated (form chosen inside each fold)",
                        [samples[i] for i in mine])
    for split in splits:
        cv = cross_validate(samples, split, forms, progress(f"leave-one-{split}-out") if progress else None,
                            only_device=device)
        result.predicted[split] = cv.predicted_ms[mine]
        result.baseline[split] = cv.baseline_ms[mine]
        result.forms[split] = [cv.forms[i] for i in mine]
    return result

