"""A long training's folder, kept in one place: ``last.pth`` (the checkpoint, ``nas.engine.checkpoint``),
``log.csv`` and ``curve.png`` (a row per epoch, rewritten whole so a resumed run never repeats one), and a progress
line per epoch with its ETA. ``nas retrain`` and ``nas supernet train`` both keep theirs through it; a proxy trial
is too short to need one.

Under torchrun only the main process writes; every process meets at the barrier after each save, so none runs
ahead of a checkpoint another may still be writing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from ..files import replacing
from ..tracking import log_curve
from ..units import format_duration
from .checkpoint import STATE_FILE, CheckpointMismatch, load_checkpoint, restore_checkpoint, save_checkpoint
from .loop import LoopState
from .step import Training


class Processes(Protocol):
    """What the folder needs of the run's processes (``nas.training.processes.Processes``)."""

    main: bool
    world: int

    def barrier(self) -> None: ...


def plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Training loss and val top-1 (model and EMA) per epoch."""
    from matplotlib.figure import Figure  # (no pyplot: a caller's backend and figures are left alone)
    import pandas as pd

    frame = pd.DataFrame(rows)
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(frame["epoch"], frame["train_loss"], marker=".")
    left.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for column, label in (("val_top1", "model"), ("ema_val_top1", "EMA")):
        if column in frame:
            points = frame.dropna(subset=[column])
            right.plot(points["epoch"], points[column], marker=".", label=label)
    right.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation accuracy (val split)")
    if right.lines:
        right.legend()
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110)


def write_log(out: Path, rows: list[dict[str, Any]]) -> None:
    """``log.csv`` (one row per epoch; rewritten whole, so a resumed run never duplicates rows) and the curve."""
    import pandas as pd

    with replacing(out / "log.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    plot_curve(rows, out / "curve.png")


class RunFolder:
    """The folder ``out`` of one training whose settings are ``identity`` (a checkpoint of other settings there is
    refused with ``error``, naming what differs); ``what`` names the training in messages."""

    def __init__(self, out: Path, identity: dict[str, Any], what: str = "training",
                 error: Callable[[str], Exception] = CheckpointMismatch, track: str | None = None):
        self.out, self.identity, self.what, self.error, self.track = Path(out), identity, what, error, track

    @property
    def checkpoint_path(self) -> Path:
        return self.out / STATE_FILE

    def load(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None for a fresh run."""
        return load_checkpoint(self.checkpoint_path, self.identity, self.error, self.what)

    def resume(self, payload: dict[str, Any], training: Training, epochs: int) -> tuple[LoopState, str]:
        """``training`` restored from ``payload``; its loop state and the line that says where it resumes."""
        state = restore_checkpoint(payload, training)
        steps = training.source.steps_per_epoch
        where = f"after epoch {state.epoch}/{epochs}" + (f", step {state.step}/{steps} of the next"
                                                         if state.step else "")
        return state, f"resuming {self.out} {where}"

    @staticmethod
    def rows(state: LoopState, world: int) -> list[dict[str, Any]]:
        """The log's rows with the throughput of every process together."""
        return [dict(row, images_per_s=row["images_per_s"] * world) for row in state.log]

    def saver(self, training: Training, procs: Processes, epochs: int, say: Callable[[str], None],
              describe: Callable[[dict[str, Any]], str],
              extra: Callable[[], dict[str, Any]] | None = None) -> Callable[[LoopState], None]:
        """The loop's ``checkpoint``: save (with ``extra()``, e.g. an EMA's weights) and rewrite the log; after a
        whole epoch, one line: ``epoch E/N: describe(row), images/s | ETA``."""

        def checkpoint(state: LoopState) -> None:
            if procs.main:
                save_checkpoint(self.checkpoint_path, self.identity, training, state, extra() if extra else None)
                if state.log:
                    write_log(self.out, self.rows(state, procs.world))
                    if self.track:  # (nas.tracking: TensorBoard's files, rewritten from the log)
                        log_curve(self.out, self.rows(state, procs.world))
            procs.barrier()
            if state.step == 0 and state.log:
                row = state.log[-1]
                left = (epochs - state.epoch) * row["seconds"] / state.epoch
                say(f"epoch {state.epoch}/{epochs}: {describe(row)}, {row['images_per_s'] * procs.world:.0f} img/s "
                    f"| ETA {format_duration(left)}")

        return checkpoint

    def stopped(self, state: LoopState, epochs: int) -> str | None:
        """The line for a call that stopped before the last epoch (a chunk's end); None when it finished."""
        if state.epoch >= epochs:
            return None
        where = f"epoch {state.epoch}/{epochs}" + (f" and step {state.step} of the next" if state.step else "")
        return f"stopped after {where}; run the same command again to continue"
