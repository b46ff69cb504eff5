"""Measured latencies from CSV files, turned into profiled samples.

Schema (the published data's and the one ``nas latency measure --csv`` writes): at least ``timm_name`` (or
``model``, a model reference), ``resolution`` and ``latency_ms``; optional ``device`` and ``batch_size``. Rows
that name no buildable model (no timm_name and a ``model`` that is not a reference) or were measured at another
batch size are reported and skipped, never silently; a ``timm_name`` that timm does not know is an error naming
the file and line.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..models import ModelRefError, parse_model_ref
from .graph import OpProfile, profile_model
from .predictor import device_key


class MeasurementError(ValueError):
    """A measurement file that cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class Sample:
    model: str  # the model reference
    resolution: int
    latency_ms: float
    device: str = ""

    @property
    def profile(self) -> OpProfile:
        return profile_ref(self.model, self.resolution)


@dataclass
class MeasurementSet:
    samples: list[Sample]
    skipped: list[str]  # one line per skipped row, with the reason
    devices: list[str]


def read_measurements(path: str | Path, device: str | None = None) -> MeasurementSet:
    """Rows of ``path`` (for ``device`` when the file holds several), validated."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = set(rows[0]) if rows else set()
    except OSError as exc:
        raise MeasurementError(f"cannot read measurements {str(path)!r}: {exc.strerror}") from None
    if not rows:
        raise MeasurementError(f"{path}: no measurement rows")
    missing = [c for c in ("resolution", "latency_ms") if c not in columns]
    if not ({"timm_name", "model"} & columns):
        missing.insert(0, "timm_name (or model)")
    if missing:
        raise MeasurementError(f"{path}: missing column(s) {', '.join(missing)}; required: timm_name or model, "
                               "resolution, latency_ms")
    devices = sorted({r.get("device", "") or "" for r in rows} - {""})
    if device is None and len(devices) > 1:
        raise MeasurementError(f"{path} holds measurements of several devices ({', '.join(devices)}); "
                               "choose one with --device-name")
    samples, skipped = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if device is not None and devices and device_key(row.get("device", "")) != device_key(device):
            continue
        where = f"{path}:{line}"
        latency = _number(where, "latency_ms", row["latency_ms"], float)
        resolution = _number(where, "resolution", row["resolution"], int)
        if latency <= 0 or resolution <= 0:
            bad = "latency_ms" if latency <= 0 else "resolution"
            raise MeasurementError(f"{where}: {bad} must be positive, got {row[bad]!r}")
        if row.get("batch_size") not in (None, "", "1"):
            skipped.append(f"{where}: measured at batch {row['batch_size']}; predictors are for batch 1")
            continue
        try:
            ref = _model_ref(row)
        except ModelRefError as exc:
            raise MeasurementError(f"{where}: {exc}") from None
        if ref is None:
            label = row.get("model") or row.get("timm_name") or "?"
            skipped.append(f"{where}: {label!r} names no buildable model (no timm_name; model is not a reference)")
            continue
        samples.append(Sample(ref, resolution, latency, row.get("device", "")))
    if device is not None and devices and not samples and not skipped:
        raise MeasurementError(f"{path}: no rows for device {device!r}; devices in the file: {', '.join(devices)}")
    if not samples:
        raise MeasurementError(f"{path}: no usable rows ({len(skipped)} skipped)")
    return MeasurementSet(samples, skipped, devices)


def _number(where: str, column: str, text: str, kind: type):
    try:
        return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except (TypeError, ValueError):
        raise MeasurementError(f"{where}: {column} must be a number, got {text!r}") from None


def _model_ref(row: dict) -> str | None:
    timm_name = (row.get("timm_name") or "").strip()
    candidates = [f"timm:{timm_name}"] if timm_name else []
    if row.get("model"):
        candidates.append(row["model"].strip())
    for text in candidates:
        try:
            parse_model_ref(text)
            return text
        except ModelRefError:
            continue
    if timm_name:  # a timm name was given but is not in this timm: that is an error, not a skip
        parse_model_ref(f"timm:{timm_name}")
    return None


@lru_cache(maxsize=512)
def profile_ref(model: str, resolution: int) -> OpProfile:
    """The deployed graph's work for a model reference at ``resolution`` (built once per process)."""
    ref = parse_model_ref(model)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        built = ref.build(resolution=resolution)
        return profile_model(built, (1, ref.in_chans, resolution, resolution))
