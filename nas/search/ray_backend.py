"""``--backend ray``: the same worker loop, scheduled by Ray Tune on a local Ray or a cluster.

Ray only schedules: each Tune trial is one worker, placed by Ray on any node, that opens the study from the
shared storage and runs worker steps until the study has what it asked for, exactly as a local worker does, so
outputs and resuming are the same. (One Tune trial per architecture costs Tune's scheduling and bookkeeping for
every architecture: with an evaluator that does not train, 145 trials took 604 s that way, 4 workers on 2 cores
that a training job shared; see the soak in experiments/RESULTS.md.) Each trial
requests ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs and trains with exactly that many threads (Ray
exposes the GPUs it granted as ``cuda:0..``). Every Ray worker imports this module, whose first import is the
torchvision fix (before timm).

Faults: a Tune trial whose node dies is restarted elsewhere by Tune (``FailureConfig``); the study trial it was
running stops beating, is failed as interrupted and its architecture queued again, and the next free worker
trains it. A driver killed takes its Tune trials with it; the same
command again reattaches to the study, recovers their trials and goes on.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import swiftformer._torchvision_fix  # noqa: F401  (first: Ray workers import timm through nas.training)

import optuna

from .config import SearchConfig, SearchError
from .context import SearchContext, build_context
from .storage import MAX_RETRIES
from .study import counted
from .worker import open_study, worker_loop

_CONTEXTS: dict[str, SearchContext] = {}  # per Ray worker process: data and tables are built once


def _tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    cfg = SearchConfig.from_dict(config["search"])
    key = cfg.out + cfg.study
    if key not in _CONTEXTS:
        _CONTEXTS[key] = build_context(cfg, quiet=True)  # worker 0: the first of the GPUs Ray granted this trial
    import ray

    worker = int(config.get("slot", 0)) + 1
    study = open_study(cfg, worker)
    node = ray.get_runtime_context().get_node_id()[:8]
    worker_loop(cfg, worker, _CONTEXTS[key], deadline=config.get("deadline"), study=study, name=f"ray{worker}@{node}")
    tune.report({"trained": counted(study.get_trials(deepcopy=False))})


def trial_resources(cfg: SearchConfig) -> dict[str, float]:
    """What each Tune trial asks Ray for: the command line's CPUs (default: this machine's shared out between
    the workers, or 1 on a cluster) and GPUs."""
    cpus = cfg.cpus_per_trial or (1 if cfg.ray_address else cfg.threads)
    return {"cpu": cpus, "gpu": cfg.gpus_per_trial}


def run_with_ray(cfg: SearchConfig, study: optuna.Study, storage_url: str, deadline: float | None = None) -> None:
    resources = trial_resources(cfg)
    relative = [p for p in (cfg.out, cfg.space, cfg.data.partition(":")[2]) if p and Path(p).exists()
                and not Path(p).expanduser().is_absolute()]
    if cfg.ray_address and relative:
        print(f"note: {', '.join(relative)} relative to this directory: on a cluster every node must find them "
              "there; prefer absolute paths on a shared file system", file=sys.stderr)
    # each trial trains with exactly the CPUs it requested
    run_cfg = SearchConfig.from_dict({**cfg.to_dict(), "cpus_per_trial": int(resources["cpu"])})
    for _ in range(1 + MAX_RETRIES):  # again while faults left places open (each round resumes the study)
        remaining = cfg.trials - counted(study.get_trials(deepcopy=False))
        queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if (remaining <= 0 and not queued) or (deadline and time.time() > deadline):
            return
        run_tune(_tune_trial, {"search": run_cfg.to_dict(), "deadline": deadline},
                 min(cfg.workers, max(remaining, 0) + queued), resources, cfg.workers, cfg.study, Path(cfg.out),
                 cfg.ray_address, storage_url)


def run_tune(trainable: Callable[[dict[str, Any]], None], config: dict[str, Any], slots: int,
             resources: dict[str, float], workers: int, name: str, out: Path, ray_address: str | None,
             storage_url: str) -> None:
    """Run ``trainable`` as ``slots`` Tune trials, ``workers`` at a time, each with ``resources``; every trial gets
    ``config`` plus its ``slot``. Jobs (the search, ablations) give a trainable that opens the shared study and
    runs its own worker step; Ray only schedules."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    if "://" not in storage_url and ray_address:
        print("note: on a cluster every node must see the journal file; prefer an RDB --storage URL", file=sys.stderr)
    init = {"address": ray_address} if ray_address else {
        "num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1", "include_dashboard": False}
    # Tune would run each trial in a directory of its own: paths on the command line are relative to this one
    keep_cwd = {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}
    ray.init(ignore_reinit_error=True, log_to_driver=True, logging_level="ERROR", runtime_env=keep_cwd, **init)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={**config, "slot": tune.grid_search(list(range(slots)))},
            # reused actors keep their context (data, tables): a trial then starts in milliseconds, not seconds
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(out.resolve() / "ray"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=MAX_RETRIES)))
        results = tuner.fit()
        if results.errors:
            last_line = str(results.errors[0]).strip().splitlines()[-1]  # the cause, under Ray's traceback
            raise SearchError(f"{len(results.errors)} Ray trial(s) failed (first: {last_line}); run the same "
                              "command again to resume")
    finally:
        ray.shutdown()
