"""How a job's trials are run, never what they score: the options every job shares (``--workers``, ``--backend``,
``--train-device``, ``--cpus-per-trial``, ``--gpus-per-trial``, ``--storage``, ``--timeout``).

A job's config (``SearchConfig``, ``AblationConfig``) is an ``Execution`` with its own fields added. None of these
fields is part of a study's identity: the same study may be resumed with more workers, on Ray, or on a GPU (the
precision check refuses a mix of precisions, see ``nas.trials.study.check_precision``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..tracking import check_tracker
from .storage import PATIENCE_S

BACKENDS = ("local", "ray")


@dataclass(kw_only=True)
class Execution:
    timeout_s: float | None = None  # stop starting trials after this long
    storage: str | None = None  # an RDB URL (``://``) or a journal file path; default: the job's, in its folder
    backend: str = "local"  # local: this process or ``workers`` processes; ray: Ray Tune trials
    ray_address: str | None = None
    workers: int = 1  # trainings at once (processes, or Ray trials)
    train_device: str = "auto"  # where trials train: auto, cpu, cuda, cuda:N, mps (local workers take GPU i mod count)
    cpus_per_trial: int | None = None  # threads of each worker / CPUs each Ray trial requests (default: shared out)
    gpus_per_trial: float = 0.0  # GPUs each Ray trial requests
    storage_patience_s: float = PATIENCE_S  # how long workers retry an unreachable database before they stop
    track: str | None = None  # tensorboard: the trials as event files in <out>/tensorboard (``nas.tracking``)

    def check_execution(self, error: Callable[[str], Exception]) -> None:
        """Refuse, with the job's ``error``, values no run could use."""
        if self.backend not in BACKENDS:
            raise error(f"unknown backend {self.backend!r}; accepted: {', '.join(BACKENDS)}")
        if self.workers < 1:
            raise error(f"--workers {self.workers} must be at least 1")
        if self.cpus_per_trial is not None and self.cpus_per_trial < 1:
            raise error(f"--cpus-per-trial {self.cpus_per_trial} must be at least 1")
        if self.gpus_per_trial < 0:
            raise error(f"--gpus-per-trial {self.gpus_per_trial:g} must not be negative")
        if self.storage_patience_s <= 0:
            raise error(f"--storage-patience {self.storage_patience_s:g} must be positive (seconds)")
        check_tracker(self.track)

    @property
    def threads(self) -> int:
        """Threads each worker trains with: the CPUs it was given, or this machine's shared out."""
        return self.cpus_per_trial or max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def parallel_writers(self) -> bool:
        """Whether several processes write the study at once (which SQLite does not survive)."""
        return self.workers > 1 or self.backend == "ray"

    def ray_cpus(self) -> int:
        """CPUs each Ray trial requests: ``--cpus-per-trial``, else this machine's shared out (1 on a cluster)."""
        return self.cpus_per_trial or (1 if self.ray_address else self.threads)

    def checked_storage(self, url: str, out: str | Path, error: Callable[[str], Exception]) -> str:
        """``url``, refused (with the way out) when it is SQLite and several processes would write it."""
        if url.startswith("sqlite") and self.parallel_writers:
            raise error(f"SQLite ({url}) does not survive parallel writers; use a journal file (--storage "
                        f"{Path(out).resolve() / 'study.journal'}) or an RDB URL (postgresql://..., mysql://...)")
        return url
