"""Latency predictors: a few non-negative costs per unit of work, fitted to measured latencies.

A prediction is ``intercept + sum(cost[k] * work[k])`` over the deployed graph's work (``graph.FEATURES``), so
it is additive over the parts of a network: a per-block table built with the same predictor sums to the
whole-model prediction. Which terms a predictor uses, and how its costs are fitted, is chosen by
leave-one-family-out error (``calibration.py``); every predictor carries the error band of that choice, measured
on model families it never saw, so a search can keep a margin.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..files import write_json
from .graph import OpProfile

# Every cost term a predictor may use, with the unit its cost is expressed in (ms per unit). ``macs`` is one
# rate shared by every multiply-accumulate; the others are extra costs of particular kinds of work: depthwise
# convs, linears on token sequences and activation-activation products (which the Neural Engine runs slowly),
# weight traffic, normalisation layers, softmax, reductions, element-wise ops, activation memory traffic and
# layout changes. The extras are non-negative and ridge-penalised, so with little evidence a kind of work
# costs nothing extra.
TERMS: dict[str, float] = {
    "macs": 1e9,
    "weight_io": 1e7,
    "dwconv_macs": 1e8,
    "token_macs": 1e9,
    "attn_macs": 1e8,
    "norm": 1e6,
    "softmax": 1e6,
    "reduction": 1e6,
    "elementwise": 1e6,
    "activation_io": 1e7,
    "layout": 1e6,
}


SEARCHED_FAMILY = "swiftformer"  # the family every search space and the released variants belong to


class PredictorError(ValueError):
    """A predictor file or device name that cannot be used."""


def work_vector(profile: OpProfile, terms: tuple[str, ...] | list[str] = tuple(TERMS)) -> np.ndarray:
    """The profile's work in the predictor's units, one entry per term."""
    values = {**profile.features, "macs": profile.macs}
    return np.array([values[name] / TERMS[name] for name in terms])


@dataclass
class LatencyPredictor:
    device: str
    costs: dict[str, float]  # ms per unit of TERMS[name], for the terms this predictor uses
    intercept_ms: float
    units: dict[str, float] = field(default_factory=lambda: dict(TERMS))
    calibration: dict = field(default_factory=dict)  # rows used, their source, the model form chosen, fit figures
    band: dict = field(default_factory=dict)  # relative error band on unseen families: quantile, lower, upper
    # measured families' own lines on this device: family -> {"offset_ms", "scale", "rows", "band", "held_out"}
    families: dict = field(default_factory=dict)

    def predict(self, profile: OpProfile, family: str | None = None) -> float:
        """Milliseconds for one inference of the profiled, deployed graph (of ``family``: a measured family is
        priced by its own line)."""
        predictor = self.for_family(family)
        return predictor.intercept_ms + predictor.predict_parts(profile)

    def predict_parts(self, profile: OpProfile) -> float:
        """The work-dependent part only: what a piece of a network adds (used for per-block tables)."""
        return float(work_vector(profile, list(self.costs)) @ np.array(list(self.costs.values())))

    def for_family(self, family: str | None) -> "LatencyPredictor":
        """This predictor as it prices ``family``: its own offset and scale, and the band of its own held-out
        errors, where the calibration had rows of it; else this predictor (the shared costs, the band measured
        on unseen families). Still additive over parts, so a per-block table built from it sums to its price."""
        own = self.families.get(family or "")
        if not own:
            return self
        return LatencyPredictor(self.device, {k: v * own["scale"] for k, v in self.costs.items()},
                                self.intercept_ms + own["offset_ms"], dict(self.units),
                                {**self.calibration, "family": family, "family_line": own},
                                own.get("band") or self.band)

    def upper_ms(self, predicted_ms: float) -> float:
        """The band's upper edge for a prediction: what a model may take (of an unseen family; for a predictor
        ``for_family`` returned, a new member of that family)."""
        return predicted_ms * (1.0 + self.band["upper"]) if self.band else predicted_ms

    def lower_ms(self, predicted_ms: float) -> float:
        return predicted_ms * (1.0 + self.band["lower"]) if self.band else predicted_ms

    # ------------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PredictorError(f"cannot read predictor {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PredictorError(f"predictor {str(path)!r} is not UTF-8 text (damaged, or not a predictor's "
                                 "JSON); give one that `nas latency calibrate` wrote") from None
        except json.JSONDecodeError as exc:
            raise PredictorError(f"predictor {str(path)!r} is not valid JSON: {exc}") from None
        try:
            predictor = cls(**data)
        except TypeError as exc:
            raise PredictorError(f"predictor {str(path)!r} is malformed: {exc}") from None
        foreign = [t for t in predictor.costs if TERMS.get(t) != predictor.units.get(t)]
        if foreign or set(predictor.units) != set(predictor.costs):
            raise PredictorError(f"predictor {str(path)!r} was made for other cost terms "
                                 f"({', '.join(foreign or predictor.costs)}); recalibrate it with this version")
        if predictor.band and not all(isinstance(predictor.band.get(k), (int, float)) for k in ("lower", "upper")):
            raise PredictorError(f"predictor {str(path)!r} has a malformed band {predictor.band!r}; expected "
                                 "numbers 'lower' and 'upper' (relative errors)")
        return predictor


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
