"""``--backend ray``: the same worker loop, scheduled by Ray Tune on a local Ray or a cluster.

Ray only schedules: each Tune trial is one worker, placed by Ray on any node, that opens the study from the
shared storage and runs worker steps until the study has what it asked for, exactly as a local worker does, so
outputs and resuming are the same (one Tune trial per architecture would cost Tune's scheduling and bookkeeping
for every architecture: the cluster soak in experiments/RESULTS.md measured it). Each trial
requests ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs and trains with exactly that many threads (Ray
exposes the GPUs it granted as ``cuda:0..``). Every Ray worker imports this module, whose first import is the
torchvision fix (before timm).

Faults: a Tune trial whose node dies is restarted elsewhere by Tune (``FailureConfig``); the study trial it was
running stops beating, is failed as interrupted and its architecture queued again, and the next free worker
trains it. A driver killed takes its Tune trials with it; the same
command again reattaches to the study, recovers their trials and goes on.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import swiftformer._torchvision_fix  # noqa: F401  (first: Ray workers import timm through nas.training)

import optuna

from .config import SearchConfig
from .context import build_context
from ..console import configure
from ..trials.parallel import worker_context
from ..trials.ray import run_tune
from ..trials.storage import MAX_RETRIES
from ..trials.study import counted
from .worker import open_study, worker_loop

logger = logging.getLogger(__name__)


def _tune_trial(config: dict[str, Any]) -> None:
    configure()  # a Ray worker of a command: its messages as the command's
    from ray import tune

    cfg = SearchConfig.from_dict(config["search"])
    # (worker 0's device: the first of the GPUs Ray granted this trial)
    ctx = worker_context(("search", cfg.out, cfg.study), lambda: build_context(cfg, quiet=True))
    import ray

    worker = int(config.get("slot", 0)) + 1
    study = open_study(cfg, worker)
    node = ray.get_runtime_context().get_node_id()[:8]
    worker_loop(cfg, worker, ctx, deadline=config.get("deadline"), study=study, name=f"ray{worker}@{node}")
    tune.report({"trained": counted(study.get_trials(deepcopy=False))})


def trial_resources(cfg: SearchConfig) -> dict[str, float]:
    """What each Tune trial asks Ray for: the command line's CPUs (default: this machine's shared out between
    the workers, or 1 on a cluster) and GPUs."""
    return {"cpu": cfg.ray_cpus(), "gpu": cfg.gpus_per_trial}


def run_with_ray(cfg: SearchConfig, study: optuna.Study, storage_url: str, deadline: float | None = None) -> None:
    resources = trial_resources(cfg)
    relative = [p for p in (cfg.out, cfg.space, cfg.data.partition(":")[2]) if p and Path(p).exists()
                and not Path(p).expanduser().is_absolute()]
    if cfg.ray_address and relative:
        logger.info(f"note: {', '.join(relative)} relative to this directory: on a cluster every node must find them "
              "there; prefer absolute paths on a shared file system")
    # each trial trains with exactly the CPUs it requested
    run_cfg = SearchConfig.from_dict({**cfg.to_dict(), "cpus_per_trial": int(resources["cpu"])})
    for _ in range(1 + MAX_RETRIES):  # again while faults left places open (each round resumes the study)
        remaining = cfg.trials - counted(study.get_trials(deepcopy=False))
        queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if (remaining <= 0 and not queued) or (deadline and time.time() > deadline):
            return
        run_tune(_tune_trial, {"search": run_cfg.to_dict(), "deadline": deadline},
                 min(cfg.workers, max(remaining, 0) + queued), resources, cfg.workers, study, Path(cfg.out),
                 cfg.ray_address, storage_url)
