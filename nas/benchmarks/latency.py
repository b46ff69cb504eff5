"""Latency of a benchmark space's architectures: measured (the tables' oracle), or predicted by a predictor
calibrated on k measured architectures of the device (the realistic case: a user measures a handful).

The prediction is our own latency machinery, unchanged: each architecture's deployed graph is profiled part by part
(``Space.part_keys``), its work fitted by ``nas.latency.fitting`` to the k measurements, and the space priced by a
per-part ``LatencyTable``, so a search prices a candidate in microseconds.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from search_spaces.interface import Space

from ..latency.fitting import ModelForm, Rows, fit
from ..latency.graph import OpProfile, profile_module
from ..latency.lut import LatencyTable, build_table
from ..latency.predictor import TERMS, LatencyPredictor, device_key, work_vector
from .tables import BenchmarkError, benchmark_space, check_device, latency_table

# How k measured architectures are fitted: the device alone (its k rows), every cost term (the extras ridge-shrunk),
# squared relative error. Chosen among the forms of ``fitting.TERM_SETS`` x {squared, Huber} by the mean held-out
# MAPE of 10 draws at k = 10 and 100 on HELP's validation devices (titanx_1/32/256, gold_6240), never on a device
# a benchmark reports (experiments/RESULTS.md, "Proving ground").
SHOTS_FORM = ModelForm("all", 0.0, "squared")
SHOT_CHOICES = (10, 20, 50, 100)


class PartProfiles:
    """Each part of a space profiled once; an architecture's work is the sum of its parts' (as its graph's)."""

    def __init__(self, space: Space):
        self.space = space
        self._work: dict[Any, np.ndarray] = {}

    def part_work(self, key: Any) -> np.ndarray:
        if key not in self._work:
            module, shape = self.space.part_module(key)
            torch.manual_seed(0)
            self._work[key] = work_vector(profile_module(module, torch.randn(shape)))
        return self._work[key]

    def work(self, arch: Any) -> np.ndarray:
        """The architecture's work in the predictors' units, one entry per ``TERMS`` term."""
        return np.sum([self.part_work(key) for key in self.space.part_keys(arch)], axis=0)

    def profile(self, arch: Any) -> OpProfile:
        """The whole network's profile (for checks: equal to the sum of the parts')."""
        model = self.space.build_model(arch).eval()
        return profile_module(model, torch.randn(self.space.input_shape(arch)))


@dataclass
class Calibration:
    """A predictor of ``device`` fitted on ``shots`` measured architectures drawn with ``seed``."""

    device: str
    shots: int
    seed: int
    archs: list[str] = field(default_factory=list)  # the measured architectures it was fitted on
    predictor: LatencyPredictor | None = None


def calibrate_shots(space_name: str, device: str, shots: int, seed: int,
                    profiles: PartProfiles | None = None, form: ModelForm = SHOTS_FORM) -> Calibration:
    """Fit ``device``'s costs on ``shots`` architectures drawn at random (``seed``) from its measured rows."""
    table = latency_table(space_name)[check_device(space_name, device)]
    if not 3 <= shots <= len(table):
        raise BenchmarkError(f"--latency-shots {shots}: between 3 and {len(table)} measured architectures")
    space = profiles.space if profiles else benchmark_space(space_name)
    profiles = profiles or PartProfiles(space)
    chosen = random.Random(f"{device}:{shots}:{seed}").sample(list(table.index), shots)
    archs = [space.parse(key) for key in chosen]
    work = np.stack([profiles.work(arch) for arch in archs])
    rows = Rows(work, table.loc[chosen].to_numpy(dtype=float), np.zeros(shots, dtype=int), [device_key(device)])
    costs, intercept = fit(rows, form).of_device(device)
    predictor = LatencyPredictor(device, costs, intercept, {t: TERMS[t] for t in costs},
                                 {"rows": shots, "form": form.to_dict(), "source": f"{space_name} latency table",
                                  "seed": seed})
    return Calibration(device, shots, seed, chosen, predictor)


def predicted_table(space: Space, calibration: Calibration) -> LatencyTable:
    """The space priced part by part by the calibrated predictor."""
    table = build_table(space, calibration.predictor)
    table.space = f"{space.name}:{calibration.device}:{calibration.shots}-shot:seed{calibration.seed}"
    return table


def measured(space_name: str, device: str) -> pd.Series:
    """A device's measured milliseconds, by architecture string (BenchmarkError for an unknown device)."""
    return latency_table(space_name)[check_device(space_name, device)]
