"""Experiment tracking (``--track tensorboard``): a job's trials, ablation runs and training curves as TensorBoard
event files in ``<out>/tensorboard``, for the tools people already run (``tensorboard --logdir``, and every
tracker that reads TensorBoard's files: W&B's ``sync_tensorboard``, MLflow's, Ray's).

TensorBoard, not MLflow or W&B, because its files are local: no server and no account, so it works on a cluster's
nodes and on a lent GPU that reaches nothing. The files are written with ``tensorboardX`` (the ``track`` extra:
``pip install 'swiftnas[track]'``; Ray Tune installs it too), which needs neither TensorFlow nor TensorBoard itself.

The study stays the single source of truth: the event files are derived from it (and from a training's
``log.csv``) and rewritten whole whenever the job writes its outputs, so a resumed run never logs a trial twice.
Each trial of a search or run of an ablation is also an HParams run (its decisions, or variant and seed, against
its val accuracy): TensorBoard's HParams tab then sorts and filters them.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

TRACKERS = ("tensorboard",)
FOLDER = "tensorboard"


class TrackingError(ValueError):
    """A tracker that is not known or not installed; the message says what to install."""


def check_tracker(track: str | None) -> None:
    """Refuse an unknown tracker, or one whose package is missing, before any work starts."""
    if track is None:
        return
    if track not in TRACKERS:
        raise TrackingError(f"--track {track!r} is not supported; accepted: {', '.join(TRACKERS)}")
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise TrackingError("--track tensorboard needs tensorboardX, which is not installed: "
                            "pip install 'swiftnas[track]'") from None


def log_runs(out: Path, job: str, runs: Iterable[Mapping[str, Any]], metric: str = "val_accuracy",
             step: str = "number", hparams: Iterable[str] = (), scalars: Iterable[str] = ()) -> Path:
    """A job's trials or runs (dicts, e.g. rows of ``trials.csv``): ``metric`` and ``scalars`` against ``step``
    under ``job/``, the best ``metric`` so far, and one HParams run per row with its ``hparams`` columns. The
    folder is rewritten whole."""
    from tensorboardX import SummaryWriter

    rows = sorted((dict(r) for r in runs), key=lambda r: r[step])
    hparams, scalars = list(hparams), list(scalars)
    target = Path(out) / FOLDER / job
    with _rewritten(target) as folder:
        with SummaryWriter(str(folder)) as writer:
            best = None
            for row in rows:
                value = row.get(metric)
                if value is None or value != value:  # NaN: not scored
                    continue
                best = value if best is None else max(best, value)
                writer.add_scalar(f"{job}/{metric}", value, int(row[step]))
                writer.add_scalar(f"{job}/best_{metric}", best, int(row[step]))
                for name in scalars:
                    if row.get(name) is not None and row[name] == row[name]:
                        writer.add_scalar(f"{job}/{name}", float(row[name]), int(row[step]))
                if hparams:
                    writer.add_hparams({k: _hparam(row.get(k)) for k in hparams}, {f"hparam/{metric}": value},
                                       name=f"{step}-{row[step]}")
    return target


def log_curve(out: Path, rows: Iterable[Mapping[str, Any]], job: str = "training") -> Path:
    """A training's rows of ``log.csv`` (one per epoch): every numeric column against the epoch."""
    from tensorboardX import SummaryWriter

    target = Path(out) / FOLDER / job
    with _rewritten(target) as folder:
        with SummaryWriter(str(folder)) as writer:
            for row in rows:
                for name, value in row.items():
                    if name != "epoch" and isinstance(value, (int, float)) and value == value:
                        writer.add_scalar(f"{job}/{name}", float(value), int(row["epoch"]))
    return target


class _rewritten:
    """A folder written beside ``target`` and swapped in whole: TensorBoard never reads half of one."""

    def __init__(self, target: Path):
        self.target = target
        self.partial = target.with_name(f".{target.name}.{time.time_ns()}.partial")

    def __enter__(self) -> Path:
        self.partial.mkdir(parents=True)
        return self.partial

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            return
        old = self.target.with_name(f".{self.target.name}.{time.time_ns()}.old")
        if self.target.exists():
            self.target.rename(old)
        self.partial.rename(self.target)
        shutil.rmtree(old, ignore_errors=True)


def _hparam(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return "none"
    return value if isinstance(value, (int, float, str, bool)) else str(value)
