"""Latency of a benchmark space's architectures: measured (the tables' oracle), and the profiled work of each
architecture's deployed graph (``PartProfiles``, part by part: ``Space.part_keys``) that a device's predictor is
fitted on (``work_predictor``; ``few_shot`` uses it as one of its forms).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from search_spaces.interface import Space

from ..latency.fitting import ModelForm, Rows, fit
from ..latency.graph import OpProfile, profile_module
from ..latency.predictor import TERMS, LatencyPredictor, device_key, work_vector
from .tables import check_device, latency_table

# How k measured architectures are fitted: the device alone (its k rows), every cost term (the extras ridge-shrunk),
# squared relative error. Chosen among the forms of ``fitting.TERM_SETS`` x {squared, Huber} by the mean held-out
# MAPE of 10 draws at k = 10 and 100 on HELP's validation devices (titanx_1/32/256, gold_6240), never on a device
# a benchmark reports (experiments/RESULTS.md, "Proving ground").
SHOTS_FORM = ModelForm("all", 0.0, "squared")


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


def work_predictor(device: str, work: np.ndarray, latency_ms: np.ndarray, record: dict[str, Any] | None = None
                   ) -> LatencyPredictor:
    """``device``'s predictor fitted on measured rows alone (their work, one row per architecture, and their
    milliseconds) in ``SHOTS_FORM``: linear in the deployed graph's work, so a per-part ``LatencyTable`` of it
    prices a whole network."""
    rows = Rows(work, np.asarray(latency_ms, dtype=float), np.zeros(len(work), dtype=int), [device_key(device)])
    costs, intercept = fit(rows, SHOTS_FORM).of_device(device)
    return LatencyPredictor(device, costs, intercept, {t: TERMS[t] for t in costs},
                            {"rows": len(work), "form": SHOTS_FORM.to_dict(), **(record or {})})


def measured(space_name: str, device: str) -> pd.Series:
    """A device's measured milliseconds, by architecture string (BenchmarkError for an unknown device)."""
    return latency_table(space_name)[check_device(space_name, device)]
