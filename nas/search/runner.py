"""The search: the most accurate architectures of a space whose predicted latency fits a budget.

The runner prepares a study (storage, references, recovery of a killed run's trials), hands the work to one of
three ways of running workers (this process, ``--workers`` processes, Ray Tune), then writes the outputs, all
derived from the study. Running the same command again resumes it.
"""
from __future__ import annotations

import logging
import time

import optuna

from ..files import output_folder, write_json
from ..latency.predictor import SEARCHED_FAMILY
from .config import SearchConfig
from .context import build_context, check_priced_alike, check_same_precision
from ..trials.parallel import run_processes
from .report import write_outputs
from .step import enqueue_references
from ..trials.storage import refuse_lost_study
from ..trials.study import counted, make_storage, recover_interrupted
from .worker import open_study, spawned_worker, worker_loop

logger = logging.getLogger(__name__)


def run_search(cfg: SearchConfig) -> tuple[optuna.Study, str]:
    """Run (or resume) the whole search, then write its outputs; returns the study and the summary text."""
    out = output_folder(cfg.out)
    url = cfg.storage_url()
    refuse_lost_study(url, out / "trials.csv")
    storage = make_storage(url, cfg.storage_patience_s)
    ctx = build_context(cfg)  # validates data, space, predictor and training device before any worker starts
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    study = open_study(cfg, storage=storage)
    write_json(out / "search.json", {**cfg.to_dict(), "storage_url": url})
    check_priced_alike(study, ctx)
    check_same_precision(study, ctx)
    done = "trained"
    if ctx.task is not None:
        how = (f"{ctx.task.holdout.describe()}, selecting on val; training on {ctx.task.device} with "
               f"{cfg.threads} thread(s) per worker")
    else:
        latency = "measured" if cfg.latency_shots is None else \
            f"predicted, calibrated on {cfg.latency_shots} measured architectures"
        how, done = f"scored by its table ({cfg.score_name()[1]}); latency {latency}", "evaluated"
    logger.info(f"study {cfg.study!r} in {url}: {counted(study.get_trials(deepcopy=False))}/{cfg.trials} "
          f"{done} so far; budget {cfg.budget_ms:g} ms on {ctx.predictor.device}; space {ctx.space.name} "
          f"({ctx.space.size():,} architectures); data {cfg.data}: {how}")
    line = ctx.predictor.calibration.get("family_line") or {}
    if line.get("smallest_ms") and cfg.budget_ms < line["smallest_ms"]:
        logger.info(f"note: the budget ({cfg.budget_ms:g} ms) is below the fastest measured {SEARCHED_FAMILY} model on "
              f"{ctx.predictor.device} ({line['smallest_model']}, {line['smallest_ms']:g} ms): candidates under it are "
              f"priced by extrapolating the family's line in work (never below its fixed cost, "
              f"{ctx.predictor.intercept_ms:.3f} ms)")
    recover_interrupted(study)  # once, here: a killed run's trials are failed and queued again
    references = enqueue_references(study, ctx)
    if references:
        logger.info(f"references within the budget, evaluated with the same protocol: {', '.join(references)}")
    if cfg.backend == "ray":
        from .ray_backend import run_with_ray

        run_with_ray(cfg, study, url, deadline)
    elif cfg.workers == 1:
        worker_loop(cfg, 0, ctx, deadline, study=study)
    else:
        run_processes(spawned_worker, {"search": cfg.to_dict(), "deadline": deadline}, cfg.workers)
    return study, write_outputs(out, study, cfg)
