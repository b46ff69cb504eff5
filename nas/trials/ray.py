"""Ray Tune as a job's dispatcher: each Tune trial is one worker of the job, which opens the shared study and runs
the job's own worker loop; Ray only schedules (places workers on nodes, grants CPUs and GPUs, restarts a worker
whose node died). The search (``nas.search.ray_backend``) and ablations run through it alike.

Every Ray worker process keeps the contexts it built (data decoded, tables priced) in
``nas.trials.parallel.worker_context``'s cache, so with reused actors a trial starts in milliseconds, not seconds.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import optuna

from .errors import RunError
from .storage import MAX_RETRIES
from .study import RUN_ENV, settle_run

logger = logging.getLogger(__name__)


def run_tune(trainable: Callable[[dict[str, Any]], None], config: dict[str, Any], slots: int,
             resources: dict[str, float], workers: int, study: optuna.Study, out: Path, ray_address: str | None,
             storage_url: str) -> None:
    """Run ``trainable`` as ``slots`` Tune trials, ``workers`` at a time, each with ``resources``; every trial gets
    ``config`` plus its ``slot``. Jobs (the search, ablations) give a trainable that opens the shared study and
    runs its own worker step; Ray only schedules.

    Ctrl-C (or SIGTERM, made one by the command line) reaches this driver, not Tune's own handler: it stops the
    workers it started (their actors end with it) and then settles the trials they were running
    (``nas.trials.study.settle_run``), so the next run need not wait for their heartbeats to go stale."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    run = uuid.uuid4().hex[:12]
    sigint = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # (Tune would stop on its own and return, not raise)

    if "://" not in storage_url and ray_address:
        logger.info("note: on a cluster every node must see the journal file; prefer an RDB --storage URL")
    init = {"address": ray_address} if ray_address else {
        "num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1", "include_dashboard": False}
    # Tune would run each trial in a directory of its own: paths on the command line are relative to this one
    keep_cwd = {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", RUN_ENV: run}}
    ray.init(ignore_reinit_error=True, log_to_driver=True, logging_level="ERROR", runtime_env=keep_cwd, **init)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={**config, "slot": tune.grid_search(list(range(slots)))},
            # reused actors keep their context (data, tables): a trial then starts in milliseconds, not seconds
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name=study.study_name, storage_path=str(out.resolve() / "ray"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=MAX_RETRIES)))
        results = tuner.fit()
        if results.errors:
            last_line = str(results.errors[0]).strip().splitlines()[-1]  # the cause, under Ray's traceback
            raise RunError(f"{len(results.errors)} Ray trial(s) failed (first: {last_line}); run the same "
                              "command again to resume")
    except KeyboardInterrupt:
        ray.shutdown()  # its workers stop with it
        settle_run(study, run)
        raise
    finally:
        ray.shutdown()
        if sigint is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = sigint
