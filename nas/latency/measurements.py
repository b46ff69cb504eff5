"""Measured latencies from CSV files, turned into profiled samples.

Schema (the published data's and the one ``nas latency measure --csv`` writes): at least ``timm_name`` (or
``model``, a model reference), ``resolution`` and ``latency_ms``; optional ``device`` (else the file's rows are
one device, named by ``--device-name`` or the file's stem), ``batch_size``, ``family`` (else derived from the
model's name, see ``family_of``), ``graph`` (the graph the latency was measured on, ``measured_graphs.GRAPHS``;
default ``deployed``) and ``trust`` (a source's own rating; ``C`` marks a figure its notes call unreliable).
Rows that name no buildable model, were measured at another batch size or are rated ``C`` are reported and
skipped, never silently; a ``timm_name`` that timm does not know is an error naming the file and line.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from ..models import ModelRefError, parse_model_ref
from .graph import OpProfile, profile_model
from .measured_graphs import DEFAULT_GRAPH, GraphError, check_graph
from .predictor import device_key

UNTRUSTED = "C"  # the ``trust`` rating of rows a source's notes flag as unreliable
_WEIGHT_PREFIXES = {"tf", "tv", "gluon", "legacy", "ig", "ssl", "swsl", "hf"}  # timm names of re-trained copies


class MeasurementError(ValueError):
    """A measurement file that cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class Sample:
    model: str  # the model reference
    resolution: int
    latency_ms: float
    device: str = ""
    family: str = ""  # the model family, for leave-one-family-out (default: family_of(model))
    graph: str = DEFAULT_GRAPH  # the graph the latency was measured on

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", family_of(self.model))

    @property
    def profile(self) -> OpProfile:
        """The graph the phone ran: what the shared costs are fitted on."""
        return profile_ref(self.model, self.resolution, self.graph)

    @property
    def priced_profile(self) -> OpProfile:
        """The graph the model is priced by (``profiled_ref``), as measured: what its family's own line is fitted
        on."""
        return profile_ref(profiled_ref(self.model), self.resolution, self.graph)


def family_of(model: str) -> str:
    """The family a model reference belongs to: ``swiftformer`` for the SwiftFormer family (variants and
    architecture files), else the first word of the timm name without its size digits, keeping version
    suffixes (``resnet50`` -> ``resnet``, ``deit_small_patch16_224`` -> ``deit``, ``mobilenetv3_large_100`` ->
    ``mobilenetv3``, ``efficientformerv2_s0`` -> ``efficientformerv2``)."""
    ref = parse_model_ref(model)
    if ref.kind != "timm":
        return "swiftformer"
    words = [w for w in ref.name.split("_") if w]
    while len(words) > 1 and words[0] in _WEIGHT_PREFIXES:
        words = words[1:]
    return re.sub(r"(?<!v)\d+$", "", words[0]) or words[0]


@dataclass
class MeasurementSet:
    samples: list[Sample]
    skipped: list[str]  # one line per skipped row, with the reason
    devices: list[str]  # device names as the files spell them, in order of appearance
    sources: str = ""  # the files read, for messages

    def device_name(self, requested: str | None = None) -> str:
        """The device a command is about: ``requested`` (matched as ``device_key`` does), or the only one."""
        if requested is None:
            if len(self.devices) > 1:
                raise MeasurementError(f"{self.sources} holds measurements of several devices "
                                       f"({', '.join(self.devices)}); choose one with --device-name")
            return self.devices[0]
        for name in self.devices:
            if device_key(name) == device_key(requested):
                return name
        raise MeasurementError(f"{self.sources}: no rows for device {requested!r}; devices: {', '.join(self.devices)}")

    def of(self, device: str) -> list[Sample]:
        return [s for s in self.samples if device_key(s.device) == device_key(device)]


def read_measurements(paths: str | Path | Sequence[str | Path], default_device: str | None = None) -> MeasurementSet:
    """Every usable row of ``paths``, validated; rows without a ``device`` are ``default_device`` (or their
    file's stem)."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    samples, skipped = [], []
    for path in paths:
        file_samples, file_skipped = _read_file(path, default_device or path.stem)
        samples.extend(file_samples)
        skipped.extend(file_skipped)
    sources = ", ".join(map(str, paths))
    if not samples:
        raise MeasurementError(f"{sources}: no usable rows ({len(skipped)} skipped)")
    devices = list(dict.fromkeys(s.device for s in samples))
    return MeasurementSet(samples, skipped, devices, sources)


def _read_file(path: Path, default_device: str) -> tuple[list[Sample], list[str]]:
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
    samples, skipped = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}:{line}"
        latency = _number(where, "latency_ms", row["latency_ms"], float)
        resolution = _number(where, "resolution", row["resolution"], int)
        if latency <= 0 or resolution <= 0:
            bad = "latency_ms" if latency <= 0 else "resolution"
            raise MeasurementError(f"{where}: {bad} must be positive, got {row[bad]!r}")
        try:
            graph = check_graph((row.get("graph") or "").strip())
        except GraphError as exc:
            raise MeasurementError(f"{where}: {exc}") from None
        label = row.get("model") or row.get("timm_name") or "?"
        if row.get("batch_size") not in (None, "", "1"):
            skipped.append(f"{where}: measured at batch {row['batch_size']}; predictors are for batch 1")
            continue
        if (row.get("trust") or "").strip().upper() == UNTRUSTED:
            note = (row.get("notes") or "").strip()
            skipped.append(f"{where}: {label!r} is rated trust {UNTRUSTED} by its source notes"
                           + (f" ({note[:100]})" if note else ""))
            continue
        try:
            ref = _model_ref(row)
        except ModelRefError as exc:
            raise MeasurementError(f"{where}: {exc}") from None
        if ref is None:
            skipped.append(f"{where}: {label!r} names no buildable model (no timm_name; model is not a reference)")
            continue
        device = (row.get("device") or "").strip() or default_device
        samples.append(Sample(ref, resolution, latency, device, (row.get("family") or "").strip(), graph))
    return samples, skipped


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


def profiled_ref(model: str) -> str:
    """The reference whose graph *prices* ``model``: timm's port of a released SwiftFormer variant is priced as
    our family's model of that variant. They are one architecture with one function; the port writes its 1x1
    convolutions as linears on permuted tokens and keeps five BatchNorms our exporter folds, which priced the two
    far apart (experiments/RESULTS.md). Calibration still learns the shared costs from the graph the phone ran
    (``Sample.profile``: the official export, BatchNorms and all); a measured family's own line
    (``fitting.family_effects``) is fitted on the graph it is priced by (``Sample.priced_profile``), so it maps
    the graph we deploy onto what the phone measured of that family."""
    from swiftformer import VARIANTS

    ref = parse_model_ref(model)
    variant = ref.name.removeprefix("swiftformer_") if ref.kind == "timm" else None
    return f"swiftformer:{variant}" if variant in VARIANTS and ref.name.startswith("swiftformer_") else model


@lru_cache(maxsize=512)
def profile_ref(model: str, resolution: int, graph: str = DEFAULT_GRAPH) -> OpProfile:
    """The work of a model reference at ``resolution`` in ``graph`` (default: as deployed), once per process."""
    ref = parse_model_ref(model)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        built = ref.build(resolution=resolution)
        try:
            return profile_model(built, (1, ref.in_chans, resolution, resolution), graph)
        except GraphError as exc:
            raise MeasurementError(f"{model}: {exc}") from None
