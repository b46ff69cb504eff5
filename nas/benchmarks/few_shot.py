"""Few-shot latency calibration of a device never seen, with other devices' measurements as prior knowledge.

HELP's setting (Lee et al., NeurIPS 2021): the rows of some devices are known (meta-training); a new device is
measured on k architectures and the rest of the space is predicted. Our method, written the linear way:

1. **An encoding of the architecture** (``encode``): each position's choice one-hot, our profiled work of the
   deployed graph (``PartProfiles``: MACs, memory and the other ``TERMS``), and for NAS-Bench-201 the choices of
   the *live* edges (on a path from the cell's input to its output) with a flag for a cell with no such path, and
   the pairs of positions' choices. Live edges matter because some measured runtimes (HW-NAS-Bench's compiled
   graphs) drop the dead ones: most cells with no path cost under 0.5 ms on raspi4 and pixel3.
2. **One model per known device** (``MetaBasis``): a ridge regression of its latency, or of its logarithm, on the
   encoding, fitted on ``META_ROWS`` random rows of that device (HELP's meta-training sample sizes); the link and
   the ridge strength are the ones of least leave-one-out relative error on those rows. (Linear suits a device whose
   latency adds up over the graph; the log link a device whose dead cells cost next to nothing, which a sum
   cannot fit.)
3. **The new device** from its k rows (``calibrate_few_shot``), by default as "devices": a non-negative mix of the
   known devices' models plus an intercept (a new device is priced like a blend of the ones it resembles: k = 10
   rows fit 10 numbers). Other forms: "work", the device alone fitted on its profiled work (``work_predictor``,
   the calibration before, which needs no other device), and "devices+work", the blend with the work terms as
   further non-negative columns; given several, the one of least leave-one-out relative error on the k rows.

Which devices are known, validated on (choices made here) and tested on is HELP's split (``SPLITS``); nothing here
was chosen on a test device.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from search_spaces.nb201 import EDGES

from ..latency.predictor import TERMS
from .latency import PartProfiles, work_predictor
from .tables import BenchmarkError, benchmark_space, check_device, latency_table

FORMS = ("devices", "work", "devices+work")
# The form shipped: of the procedures tried ("devices"; "devices+work"; the better of the two, or of all three, by
# leave-one-out on the shots), the one of least mean held-out MAPE over k = 10 and 100 on HELP's validation devices
# of both spaces (experiments/RESULTS.md, "Cheap scores and few-shot latency").
DEFAULT_FORMS = ("devices",)


@dataclass(frozen=True)
class Split:
    """HELP's devices of a space: known (meta-training), validation (our choices), test (the figures)."""

    known: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


# HELP's scripts (run_meta_training_nasbench201.sh, run_meta_training_fbnet.sh) and Table 2/3 of the paper
SPLITS = {
    "nb201": Split(("1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r", "samsung_a50", "pixel3",
                    "essential_ph_1", "samsung_s7"), ("titanx_1", "titanx_32", "titanx_256", "gold_6240"),
                   ("titan_rtx_256", "gold_6226", "pixel2", "raspi4", "eyeriss", "fpga")),
    "fbnet": Split(("1080ti_1", "1080ti_32", "1080ti_64", "silver_4114", "silver_4210r", "samsung_a50", "pixel3",
                    "essential_ph_1", "samsung_s7"), ("titanx_1", "titanx_32", "titanx_64", "gold_6240"),
                   ("fpga", "raspi4", "eyeriss")),
}
META_ROWS = {"nb201": 900, "fbnet": 4000}  # rows of each known device, as HELP meta-trains (num_meta_train_sample)
RIDGE_STRENGTHS = tuple(10.0 ** p for p in range(-4, 3))
# Published 10-shot Spearman on the test devices (HELP, NeurIPS 2021: Table 3 for NAS-Bench-201, Table 2 for FBNet)
HELP_SPEARMAN = {"nb201": {"titan_rtx_256": 0.987, "gold_6226": 0.989, "pixel2": 0.802, "raspi4": 0.890,
                           "eyeriss": 0.940, "fpga": 0.985},
                 "fbnet": {"fpga": 0.892, "raspi4": 0.887, "eyeriss": 0.943}}
HELP_MEAN_SPEARMAN = {"nb201": 0.932, "fbnet": 0.910}  # as published (FBNet's devices average 0.907)
HELP_FLOPS_SPEARMAN = {"nb201": {"titan_rtx_256": 0.950, "gold_6226": 0.826, "pixel2": 0.765, "raspi4": 0.846,
                                 "eyeriss": 0.437, "fpga": 0.900}}


def live_edges(ops: Sequence[str]) -> tuple[list[bool], bool]:
    """Which of a NAS-Bench-201 cell's edges lie on a path from its input (node 0) to its output (node 3), and
    whether any path exists."""
    forward, backward = {0}, {3}
    for (to, source), op in zip(EDGES, ops):
        if op != "none" and source in forward:
            forward.add(to)
    for (to, source), op in reversed(list(zip(EDGES, ops))):
        if op != "none" and to in backward:
            backward.add(source)
    return [op != "none" and s in forward and t in backward for (t, s), op in zip(EDGES, ops)], 3 in forward


@lru_cache(maxsize=None)
def encode(space_name: str) -> pd.DataFrame:
    """The encoding of every architecture of ``space_name``'s latency table (rows in the table's order)."""
    space = benchmark_space(space_name)
    keys = list(latency_table(space_name).index)
    archs = [space.parse(key) for key in keys]
    columns = [(p, c) for p, choices in zip(space.positions, space.choices) for c in choices]
    where = {column: i for i, column in enumerate(columns)}
    onehot = np.zeros((len(archs), len(columns)))
    for row, arch in enumerate(archs):
        for position, op in zip(space.positions, arch.ops):
            onehot[row, where[(position, op)]] = 1
    parts = [onehot, encode_work(space_name)]
    if space_name == "nb201":
        live = np.zeros_like(onehot)
        dead = np.zeros((len(archs), 1))
        for row, arch in enumerate(archs):
            alive, connected = live_edges(arch.ops)
            dead[row, 0] = not connected
            for position, op, on in zip(space.positions, arch.ops, alive):
                live[row, where[(position, op)]] = on
        pairs = [onehot[:, i] * onehot[:, j] for i in range(len(columns)) for j in range(i + 1, len(columns))
                 if columns[i][0] != columns[j][0]]
        parts += [live, dead, np.stack(pairs, 1)]
    matrix = np.hstack(parts)
    return pd.DataFrame(matrix[:, matrix.std(0) > 0], index=keys)


def ridge_loo(x: np.ndarray, y: np.ndarray, log: bool = False, strengths: Sequence[float] = RIDGE_STRENGTHS
              ) -> tuple[np.ndarray, float, float]:
    """Ridge regression of ``y`` (of log ``y`` where ``log``) on standardised ``x`` with an intercept, its
    strength the one of least leave-one-out relative error of the latency (closed form through the hat matrix);
    returns (coefficients on the raw columns with the intercept last, the strength, that leave-one-out MAPE)."""
    mean, scale = x.mean(0), x.std(0) + 1e-12
    z = (x - mean) / scale
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    target = np.log(y) if log else y
    centred = target - target.mean()
    best = None
    for strength in strengths:
        shrink = s / (s ** 2 + strength * len(y))
        beta = vt.T @ (shrink * (u.T @ centred))
        hat = np.einsum("ij,j,ij->i", u, s * shrink, u) + 1.0 / len(y)
        residual = (centred - z @ beta) / np.maximum(1 - hat, 1e-9)  # target minus its leave-one-out prediction
        error = float(np.mean(np.abs(np.expm1(-residual)) if log else np.abs(residual / y)))
        if best is None or error < best[2]:
            best = (beta, strength, error)
    beta, strength, error = best
    coef = beta / scale
    return np.append(coef, target.mean() - mean @ coef), strength, error


class MetaBasis:
    """The known devices' models over a space's table: ``predictions`` (architectures x devices)."""

    def __init__(self, space_name: str, devices: Sequence[str] | None = None, rows: int | None = None,
                 seed: int = 0):
        self.space_name = space_name
        self.devices = tuple(devices or SPLITS[space_name].known)
        table = latency_table(space_name)
        features = encode(space_name)
        x = features.to_numpy()
        design = np.hstack([x, np.ones((len(x), 1))])
        rows = rows or META_ROWS[space_name]
        self.strengths: dict[str, float] = {}
        self.fit_error: dict[str, float] = {}
        self.links: dict[str, str] = {}
        columns = []
        for device in self.devices:
            chosen = random.Random(f"meta:{device}:{seed}").sample(range(len(table)), min(rows, len(table)))
            y = table[check_device(space_name, device)].to_numpy(float)
            fits = {link: ridge_loo(x[chosen], y[chosen], log=link == "log") for link in ("linear", "log")}
            link = min(fits, key=lambda name: fits[name][2])
            coef, self.strengths[device], self.fit_error[device] = fits[link]
            self.links[device] = link
            columns.append(np.exp(design @ coef) if link == "log" else design @ coef)
        self.predictions = pd.DataFrame(np.stack(columns, 1), index=features.index, columns=list(self.devices))


def meta_basis(space_name: str, device: str | None = None) -> MetaBasis:
    """HELP's known devices' models (without ``device``, where it is one of them), built once per process."""
    return _basis(space_name, device if device in SPLITS[space_name].known else None)


@lru_cache(maxsize=4)
def _basis(space_name: str, without: str | None) -> MetaBasis:
    return MetaBasis(space_name, [d for d in SPLITS[space_name].known if d != without])


@dataclass
class FewShot:
    """A device's latency over a space's table from ``shots`` measured rows: ``predict(arch)`` in ms."""

    device: str
    shots: int
    seed: int
    form: str  # the one chosen: FORMS
    loo_mape: dict[str, float]  # each form's leave-one-out relative error on the shots
    archs: list[str] = field(default_factory=list)  # the measured architectures it was fitted on
    predicted: pd.Series | None = None  # ms, every architecture of the table

    def predict(self, arch: Any) -> float:
        return float(self.predicted.at[arch.digest()])


def fit_blend(basis: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights of the known devices' models and a free intercept (last), squared relative error."""
    scale = basis.max(0) + 1e-12
    design = np.hstack([basis / scale, np.ones((len(y), 1)), -np.ones((len(y), 1))]) / y[:, None]
    weights, _ = nnls(design, np.ones(len(y)))
    return np.append(weights[:-2] / scale, weights[-2] - weights[-1])


def _fit_work(work: np.ndarray, y: np.ndarray, device: str) -> np.ndarray:
    predictor = work_predictor(device, work, y)
    return np.append(np.array([predictor.costs.get(term, 0.0) for term in TERMS]), predictor.intercept_ms)


def predict_linear(coef: np.ndarray, work: np.ndarray) -> np.ndarray:
    """``work @ coef`` plus the intercept (``coef``'s last entry)."""
    return work @ coef[:-1] + coef[-1]


def calibrate_few_shot(space_name: str, device: str, shots: int, seed: int,
                       basis: MetaBasis | None = None, forms: Sequence[str] = DEFAULT_FORMS) -> FewShot:
    """Predict ``device`` from ``shots`` of its rows drawn at random (``seed``), in the form of least
    leave-one-out relative error on them among ``forms``. A device of HELP's known set is predicted from the
    others (its own rows never enter the basis)."""
    table = latency_table(space_name)
    check_device(space_name, device)
    basis = basis or meta_basis(space_name, device)
    if device in basis.devices:
        raise BenchmarkError(f"{device} is one of the basis's devices: it would predict itself")
    if not 3 <= shots <= len(table) // 2:
        raise BenchmarkError(f"--latency-shots {shots}: between 3 and {len(table) // 2} measured architectures")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise BenchmarkError(f"unknown few-shot form {unknown[0]!r}; accepted: {', '.join(FORMS)}")
    chosen = random.Random(f"{device}:{shots}:{seed}").sample(list(table.index), shots)
    y = table.loc[chosen, device].to_numpy(float)
    inputs = {"devices": basis.predictions.to_numpy(), "work": encode_work(space_name)}
    inputs["devices+work"] = np.hstack([inputs["devices"], inputs["work"]])
    row_of = {key: i for i, key in enumerate(table.index)}
    rows = np.array([row_of[key] for key in chosen])
    fitters = {"devices": fit_blend, "devices+work": fit_blend, "work": lambda x, t: _fit_work(x, t, device)}
    loo = {}
    for form in forms if len(forms) > 1 else ():
        x = inputs[form][rows]
        errors = []
        for i in range(shots):
            keep = np.arange(shots) != i
            coef = fitters[form](x[keep], y[keep])
            errors.append(abs(predict_linear(coef, x[i:i + 1])[0] / y[i] - 1))
        loo[form] = float(np.mean(errors))
    form = min(loo, key=loo.get) if loo else forms[0]
    coef = fitters[form](inputs[form][rows], y)
    predicted = pd.Series(predict_linear(coef, inputs[form]), index=table.index, name=device)
    return FewShot(device, shots, seed, form, loo, chosen, predicted)


@lru_cache(maxsize=None)
def encode_work(space_name: str) -> np.ndarray:
    """Every architecture's profiled work (``TERMS``), in the table's order."""
    space = benchmark_space(space_name)
    profiles = PartProfiles(space)
    return np.stack([profiles.work(space.parse(key)) for key in latency_table(space_name).index])


def score_few_shot(calibration: FewShot, space_name: str) -> dict[str, float]:
    """Spearman, Kendall, MAPE and the share within 10 % of the prediction on the rows it was not fitted on."""
    from scipy.stats import kendalltau, spearmanr

    measured = latency_table(space_name)[calibration.device]
    rest = measured.drop(index=calibration.archs)
    predicted = calibration.predicted.loc[rest.index].to_numpy()
    truth = rest.to_numpy(float)
    relative = np.abs(predicted / truth - 1)
    return {"spearman": float(spearmanr(predicted, truth)[0]), "kendall": float(kendalltau(predicted, truth)[0]),
            "mape": float(relative.mean()), "within_10": float((relative <= 0.10).mean())}


def evaluate_few_shot(space_name: str, devices: Sequence[str], shots: Sequence[int] = (10, 20, 50, 100),
                      draws: int = 10, forms: Sequence[str] = DEFAULT_FORMS,
                      progress: Any = None) -> pd.DataFrame:
    """One row per (device, k, draw): the scores of ``score_few_shot`` and the form chosen."""
    rows = []
    for position, device in enumerate(devices):
        basis = meta_basis(space_name, device)
        for k in shots:
            for draw in range(draws):
                calibration = calibrate_few_shot(space_name, device, k, draw, basis, forms)
                rows.append({"space": space_name, "device": device, "shots": k, "draw": draw,
                             "form": calibration.form, **score_few_shot(calibration, space_name)})
        if progress:
            progress(position + 1, len(devices))
    return pd.DataFrame(rows)
