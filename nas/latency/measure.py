"""Measured latency on real runtimes: PyTorch and onnxruntime on this CPU, CoreML on a Mac.

Each measures the deployed model (fused, eval, batch 1): warm-up runs, then repeated timed runs; the result
is the median with the 10th-90th percentile spread. Rows append to a CSV in the calibration schema, so a user
with a Mac can measure their own models and calibrate a predictor for their phone's runtime.
"""
from __future__ import annotations

import csv
import datetime
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from swiftformer.export import deployable, export_coreml, export_onnx

from ..models import parse_model_ref
from .measurements import MeasurementError

BACKENDS = ("torch-cpu", "onnxruntime-cpu", "coreml")
CSV_COLUMNS = ("model", "timm_name", "device", "backend", "resolution", "batch_size", "latency_ms", "p10_ms",
               "p90_ms", "runs", "threads", "date", "source")


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message says what it needs."""


@dataclass
class Measurement:
    model: str
    backend: str
    resolution: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    device: str

    def as_row(self) -> dict:
        ref = parse_model_ref(self.model)
        return {"model": self.model, "timm_name": ref.name if ref.kind == "timm" else "", "device": self.device,
                "backend": self.backend, "resolution": self.resolution, "batch_size": 1,
                "latency_ms": f"{self.median_ms:.4f}", "p10_ms": f"{self.p10_ms:.4f}",
                "p90_ms": f"{self.p90_ms:.4f}", "runs": self.runs, "threads": torch.get_num_threads(),
                "date": datetime.date.today().isoformat(), "source": "nas latency measure"}


def _time(run: Callable[[], object], warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(model_ref: str, backend: str, resolution: int | None = None, warmup: int = 10, runs: int = 50,
            device: str | None = None) -> Measurement:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if backend == "coreml" and platform.system() != "Darwin":
        raise BackendUnavailable("the coreml backend runs models with Apple's CoreML runtime, which needs macOS; "
                                 "on this machine use --backend torch-cpu or onnxruntime-cpu")
    ref = parse_model_ref(model_ref)
    resolution = resolution or ref.default_resolution()
    model = ref.build(resolution=resolution).eval()
    x = torch.randn(1, ref.in_chans, resolution, resolution)
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "torch-cpu":
            deployed = deployable(model)
            with torch.inference_mode():
                times = _time(lambda: deployed(x), warmup, runs)
        elif backend == "onnxruntime-cpu":
            import onnxruntime as ort

            path = export_onnx(model, Path(tmp) / "model.onnx", resolution=resolution).path
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feed = {"image": x.numpy()}
            times = _time(lambda: session.run(None, feed), warmup, runs)
        else:
            import coremltools as ct

            path = export_coreml(model, Path(tmp) / "model.mlpackage", resolution=resolution).path
            mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
            feed = {"image": x.numpy().astype(np.float32)}
            times = _time(lambda: mlmodel.predict(feed), warmup, runs)
    p10, p90 = np.percentile(times, [10, 90])
    name = device or f"{platform.node() or 'host'} {platform.machine()} ({backend})"
    return Measurement(model_ref, backend, resolution, statistics.median(times), float(p10), float(p90), runs, name)


def csv_header(path: str | Path) -> list[str] | None:
    """The header of an existing calibration CSV (None for a new file); checked before anything is measured."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if {"latency_ms", "resolution"} - set(header) or not ({"model", "timm_name"} & set(header)):
        raise MeasurementError(f"{path} does not have the calibration columns (model or timm_name, resolution, "
                               "latency_ms); write to a new file")
    return header


def append_csv(path: str | Path, measurement: Measurement) -> None:
    """Append one row; a new file gets the header, an existing one keeps its own columns."""
    path = Path(path)
    row = measurement.as_row()
    header = csv_header(path)
    if header is not None:
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header, extrasaction="ignore").writerow(row)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerow(row)
