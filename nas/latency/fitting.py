"""Fitting per-device costs to measured latencies: one device alone, or several at once.

Published latencies are few (20 rows a phone) and come from different tools, OS versions and papers, so a
device's rows alone cannot pin down a dozen costs. A joint fit lets a device borrow structure from the others
without pretending they are one device: each device ``d`` has its own non-negative costs ``C[d]`` and intercept,
and a penalty ``shrinkage * |C[d] - s[d] * c|^2`` pulls them towards shared relative costs ``c`` times a
per-device (per-source) scale ``s[d]``. ``shrinkage`` 0 fits every device alone; a large one leaves only the
scale and intercept to each device. The error is relative (``predicted / measured - 1``), squared or Huber
(which stops a family the costs cannot explain, such as DeiT on the SwiftFormer paper's iPhone 14, from pulling
every cost towards it). Which form to use is not decided here: ``calibration.py`` chooses among ``FORMS`` by
leave-one-family-out error. A form may also give each family with rows on a device its own line over the shared
costs (``family_effects``): what prices the searched family from its own published members.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import nnls

from .predictor import TERMS, device_key, work_vector

# Candidate term sets, simplest first, on physical grounds: MACs alone (the usual proxy); kinds of compute the
# Neural Engine runs at different rates; memory traffic (activations, reductions, layout changes); compute plus
# normalisation, softmax and reductions (the terms of the predictors shipped before); everything.
TERM_SETS: dict[str, tuple[str, ...]] = {
    "macs": ("macs",),
    "compute": ("macs", "weight_io", "dwconv_macs", "token_macs", "attn_macs"),
    "memory": ("macs", "dwconv_macs", "activation_io", "reduction", "layout"),
    "compute+norms": ("macs", "weight_io", "dwconv_macs", "token_macs", "attn_macs", "norm", "softmax", "reduction"),
    "all": tuple(TERMS),
}
SHRINKAGES = (10.0, 1.0)  # strong (little more than a scale per device) first; 0 would fit each device alone
# A family's own line on a device (``family_effects``): ridge strength on its offset (relative to the family's mean
# latency) and on its scale's departure from 1, in the units of one row's squared relative error. The strength is
# chosen per device from this grid by the error of each family member held out of its family's line
# (``calibration.choose_family_shrinkage``), and that choice is repeated without each held-out model for the
# family bands a predictor carries (nested). The first, weakest, is the default where nothing can judge.
FAMILY_SHRINKAGES = (0.01, 0.1, 1.0, 3.0)
MIN_FAMILY_SCALE = 0.2  # a family's work never costs less than a fifth of the shared costs' price
RIDGE = 0.01  # on the extra costs (every term but macs), in the units of TERMS
HUBER_DELTA = 0.10  # relative error beyond which a row counts linearly: the +/-10 % the predictors aim at
_ITERATIONS = 12  # alternations of costs, device scales and Huber weights (converged well before on the data)


@dataclass(frozen=True)
class ModelForm:
    """How a predictor is fitted: its terms, how strongly devices share costs, and the loss."""

    terms: str = "macs"  # a key of TERM_SETS
    shrinkage: float = 0.0  # 0: each device alone
    loss: str = "squared"  # or "huber"
    families: bool = False  # each family with rows on a device also gets its own offset and scale there

    def describe(self) -> str:
        sharing = ("each device alone" if self.shrinkage == 0
                   else f"shrunk to shared costs (strength {self.shrinkage:g})")
        own = ", a line per measured family" if self.families else ""
        return f"terms {self.terms}, {sharing}, {self.loss} relative error{own}"

    def to_dict(self) -> dict:
        return asdict(self)


# The forms calibration chooses among, simplest first. Every one shares structure between devices (20 rows of
# one phone cannot carry a dozen costs to a family they never saw) and uses the Huber loss (a figure that is
# specific to one family and one source, such as DeiT in the SwiftFormer paper's table at 2.2x the iPhone 13
# figure, must not set every cost).
# Each also gives a family with rows its own line (``family_effects``): a candidate of a measured family (the
# searched SwiftFormer family above all) is priced from its own family's figures; an unseen family gets the
# shared costs, so leave-one-family-out figures do not change.
FORMS: tuple[ModelForm, ...] = tuple(ModelForm(t, s, "huber", True) for t in TERM_SETS for s in SHRINKAGES)
BASELINE = ModelForm("macs", 0.0, "squared")  # latency = a * MACs + b, per device: the proxy to beat
PREVIOUS = ModelForm("compute+norms", 0.0, "squared")  # the form of the predictors shipped before this one


@dataclass
class Rows:
    """Samples as arrays: the work of every term (in TERMS units), latency, device codes and families."""

    work: np.ndarray  # (n, len(TERMS))
    latency_ms: np.ndarray  # (n,)
    device: np.ndarray  # (n,) index into devices
    devices: list[str]  # device keys
    family: np.ndarray | None = None  # (n,) family names (None: no family lines)
    priced: np.ndarray | None = None  # (n, len(TERMS)) work of the graph each row is priced by (None: ``work``)

    @classmethod
    def of(cls, samples: Sequence) -> "Rows":
        devices = list(dict.fromkeys(device_key(s.device) for s in samples))
        return cls(np.stack([work_vector(s.profile) for s in samples]),
                   np.array([s.latency_ms for s in samples], dtype=float),
                   np.array([devices.index(device_key(s.device)) for s in samples]), devices,
                   np.array([s.family for s in samples]), np.stack([work_vector(s.priced_profile) for s in samples]))

    def take(self, index: np.ndarray) -> "Rows":
        return Rows(self.work[index], self.latency_ms[index], self.device[index], self.devices,
                    None if self.family is None else self.family[index],
                    None if self.priced is None else self.priced[index])


@dataclass
class Fit:
    form: ModelForm
    devices: list[str]
    costs: np.ndarray  # (len(devices), len(terms)); NaN for devices without rows in the fit
    intercept_ms: np.ndarray  # (len(devices),)
    # (device index, family) -> (offset ms, scale) of a family's own line: intercept + offset + scale * work
    effects: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)

    @property
    def terms(self) -> tuple[str, ...]:
        return TERM_SETS[self.form.terms]

    def shared(self, rows: Rows, priced: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Each row's device intercept and work-dependent part under the shared costs, of the graph the phone
        ran or (``priced``) of the graph the row's model is priced by."""
        source = rows.priced if priced and rows.priced is not None else rows.work
        work = source[:, [list(TERMS).index(t) for t in self.terms]]
        return self.intercept_ms[rows.device], np.einsum("ik,ik->i", work, self.costs[rows.device])

    def predict(self, rows: Rows) -> np.ndarray:
        """Milliseconds for each row (NaN for a device the fit had no rows of); a row of a family with its own
        line on the row's device is priced by that line, on the graph it is priced by."""
        intercept, part = self.shared(rows)
        if not self.effects or rows.family is None:
            return intercept + part
        _, priced = self.shared(rows, priced=True)
        out = intercept + part
        for i, (d, family) in enumerate(zip(rows.device, rows.family)):
            effect = self.effects.get((int(d), str(family)))
            if effect is not None:
                out[i] = intercept[i] + effect[0] + effect[1] * priced[i]
        return out

    def of_device(self, device: str) -> tuple[dict[str, float], float]:
        d = self.devices.index(device_key(device))
        return dict(zip(self.terms, map(float, self.costs[d]))), float(self.intercept_ms[d])

    def families_of(self, device: str) -> dict[str, tuple[float, float]]:
        """The families with their own line on ``device``: family -> (offset ms, scale)."""
        d = self.devices.index(device_key(device))
        return {family: effect for (e, family), effect in self.effects.items() if e == d}


def fit(rows: Rows, form: ModelForm, family_shrinkage: float | None = None) -> Fit:
    """Costs and intercepts of every device with rows, fitted in ``form`` (and, for a form with family lines,
    each measured family's own offset and scale on each device, ridge-shrunk by ``family_shrinkage``)."""
    shared = _fit_shared(rows, form)
    if form.families and rows.family is not None:
        shared.effects = family_effects(rows, shared, family_shrinkage)
    return shared


def family_effects(rows: Rows, shared: Fit, shrinkage: float | None = None) -> dict[tuple[int, str], tuple]:
    """Each (device, family)'s own line over the shared costs: ``intercept + a + s * work`` with ``a`` and ``s``
    minimising the squared relative errors of the family's rows on the device plus ``shrinkage * ((a / mean
    latency)^2 + (s - 1)^2)``: a per-family offset and scale shrunk towards the shared ones (0 and 1), learned
    where a family has rows. Fitted after the shared costs, so the families' lines never move the costs that
    price an unseen family; and on the work of the graph each row is priced by (``Rows.priced``), so the line maps
    the graph a family's models are priced by onto what the phone measured."""
    shrinkage = FAMILY_SHRINKAGES[0] if shrinkage is None else shrinkage
    intercept, part = shared.shared(rows, priced=True)
    effects = {}
    for d in np.unique(rows.device):
        for family in dict.fromkeys(rows.family[rows.device == d]):
            m = (rows.device == d) & (rows.family == family)
            y, b, w = rows.latency_ms[m], intercept[m], part[m]
            if not np.all(np.isfinite(w)):
                continue
            scale_y = float(y.mean())
            root = np.sqrt(shrinkage)
            # unknowns (a / mean latency, s - 1); residual (y - b - w - a - (s - 1) w) / y
            design = np.vstack([np.stack([scale_y / y, w / y], 1), root * np.eye(2)])
            target = np.concatenate([(y - b - w) / y, np.zeros(2)])
            (a, ds) = np.linalg.lstsq(design, target, rcond=None)[0]
            scale = max(1.0 + float(ds), MIN_FAMILY_SCALE)
            effects[(int(d), str(family))] = (float(a * scale_y), scale)
    return effects


def _fit_shared(rows: Rows, form: ModelForm) -> Fit:
    columns = [list(TERMS).index(t) for t in TERM_SETS[form.terms]]
    work, y = rows.work[:, columns], rows.latency_ms
    n, k = work.shape
    present = np.unique(rows.device)
    penalty = np.sqrt(RIDGE) * np.diag([0.0 if t == "macs" else 1.0 for t in TERM_SETS[form.terms]])
    costs = np.full((len(rows.devices), k), np.nan)
    intercept = np.full(len(rows.devices), np.nan)
    weights = np.ones(n)
    if form.shrinkage == 0:
        for d in present:
            m = rows.device == d
            costs[d], intercept[d] = _fit_alone(work[m], y[m], penalty, form.loss)
        return Fit(form, rows.devices, costs, intercept)
    # joint: x = [shared c (k), C[d] for each present device (k each), intercept[d] for each]
    D = len(present)
    slot = {d: i for i, d in enumerate(present)}
    data = np.zeros((n, k + D * k + D))
    for i, d in enumerate(rows.device):
        j = slot[d]
        data[i, k + j * k:k + (j + 1) * k] = work[i]
        data[i, k + D * k + j] = 1.0
    data /= y[:, None]
    ridge = np.zeros((D * k, data.shape[1]))
    for j in range(D):
        ridge[j * k:(j + 1) * k, k + j * k:k + (j + 1) * k] = penalty
    reference = max(present, key=lambda d: ((rows.device == d).sum(), -d))  # the device with most rows: scale 1
    scale = np.ones(D)
    root = np.sqrt(form.shrinkage)
    for iteration in range(_ITERATIONS):
        # costs given the scales: one non-negative least squares problem
        shrink = np.zeros((D * k, data.shape[1]))
        for j in range(D):
            shrink[j * k:(j + 1) * k, :k] = -root * scale[j] * np.eye(k)
            shrink[j * k:(j + 1) * k, k + j * k:k + (j + 1) * k] = root * np.eye(k)
        w = np.sqrt(weights)
        x = nnls(np.vstack([data * w[:, None], ridge, shrink]),
                 np.concatenate([w, np.zeros(2 * D * k)]), maxiter=50 * data.shape[1])[0]
        shared, per_device = x[:k], x[k:k + D * k].reshape(D, k)
        if form.loss == "huber":
            weights = _huber_weights(data @ x - 1.0)
        if iteration == _ITERATIONS - 1 or not shared.any():
            break
        # scales given the costs, judged on the data: each device's deviation from the shared costs is kept and
        # its shared part rescaled (judging the scale by the penalty alone would leave it where it started, as
        # a strong penalty holds the device's costs at the old scale)
        new_scale = scale.copy()
        for j, d in enumerate(present):
            m = rows.device == d
            shared_part, deviation = work[m] @ shared, work[m] @ (per_device[j] - scale[j] * shared)
            rw = np.sqrt(weights[m]) / y[m]
            new_scale[j] = nnls(np.stack([shared_part, np.ones(m.sum())], 1) * rw[:, None],
                                np.sqrt(weights[m]) - deviation * rw)[0][0]
        new_scale = np.maximum(new_scale, 1e-9) / max(new_scale[slot[reference]], 1e-9)
        converged = np.max(np.abs(new_scale - scale)) < 1e-4
        scale = new_scale
        if converged and form.loss == "squared":  # (Huber weights keep moving: all iterations)
            break
    for j, d in enumerate(present):
        costs[d], intercept[d] = per_device[j], x[k + D * k + j]
    return Fit(form, rows.devices, costs, intercept)


def _fit_alone(work: np.ndarray, y: np.ndarray, penalty: np.ndarray, loss: str) -> tuple[np.ndarray, float]:
    n, k = work.shape
    design = np.hstack([work, np.ones((n, 1))]) / y[:, None]
    ridge = np.hstack([penalty, np.zeros((k, 1))])
    weights = np.ones(n)
    for _ in range(_ITERATIONS if loss == "huber" else 1):
        w = np.sqrt(weights)
        x = nnls(np.vstack([design * w[:, None], ridge]), np.concatenate([w, np.zeros(k)]), maxiter=50 * (k + 1))[0]
        weights = _huber_weights(design @ x - 1.0)
    return x[:k], float(x[k])


def _huber_weights(relative_error: np.ndarray) -> np.ndarray:
    """Iteratively reweighted least squares weights of the Huber loss."""
    return np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(relative_error), 1e-12))
