"""A worker: steps against the shared study until the search has what it asked for.

The same loop runs in this process, in ``--workers`` processes and inside Ray Tune trials.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from ..units import format_duration
from .config import SearchConfig, SearchError
from .context import SearchContext, build_context, check_same_precision
from .evolution import enqueue_unseen
from ..trials.parallel import run_at_start_line
from .pruning import SearchedMedianPruner
from .step import run_step
from ..trials.study import (best_feasible, counted, index_of, make_storage, open_study as open_job_study,
                           recover_interrupted, status_of, tally)

logger = logging.getLogger(__name__)

MAX_REJECTED_IN_A_ROW = 2000
MAX_DUPLICATES_IN_A_ROW = 200
EXPLORE_AFTER_DUPLICATES = 20  # known proposals in a row after which an unseen architecture is queued instead
POLL_S = 1.0  # how often a worker with nothing left to start looks at the trials others are training
RECOVER_EVERY_S = 5.0  # how often a worker looks for trials whose process stopped beating (stale after 10 s)


def open_study(cfg: SearchConfig, worker: int = 0, storage: optuna.storages.BaseStorage | None = None,
               storage_url: str | None = None) -> optuna.Study:
    """The search's study with this worker's sampler.

    Workers must not propose the same sequence, and neither may a resumed run repeat the one it resumes: with the
    seed of a fresh study it would propose every architecture it already has (each a duplicate row), and past a few
    hundred it would stop as if the space were exhausted. So the seed also counts the trials the study holds."""
    directions = ["maximize"] if cfg.objective == "constrained" else ["maximize", "minimize"]
    pruner = SearchedMedianPruner() if cfg.objective == "constrained" else optuna.pruners.NopPruner()
    storage = storage or make_storage(storage_url or cfg.storage_url(), cfg.storage_patience_s)

    def refuse(changed: str) -> SearchError:
        if changed == "objective":
            return SearchError(f"study {cfg.study!r} has another objective; choose another --study")
        return SearchError(f"study {cfg.study!r} in {cfg.out} was run with other settings ({changed}); resume with "
                           "the same ones, or choose another --study or --out")

    study = open_job_study(cfg.study, storage, cfg.identity(), refuse, directions, pruner,
                           first={"nas_config": cfg.to_dict()}, listing=Path(cfg.out) / "trials.csv",
                           metrics=["val_accuracy"] if cfg.objective == "constrained" else
                           ["val_accuracy", "latency_ms"])
    held = len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(cfg, seed=(cfg.seed * 1000 + worker + 7919 * held) % 2**32)  # a fresh study: seed*1000+w
    return study


def _sampler(cfg: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=cfg.workers > 1,
                                          n_startup_trials=10)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, cfg.trials // 3)))
    if cfg.sampler == "gp":  # Gaussian-process Bayesian optimisation: for few, costly trials (cubic in their number)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    return optuna.samplers.RandomSampler(seed=seed)  # random, and evolution (whose children are enqueued)


def worker_loop(cfg: SearchConfig, worker: int = 0, ctx: SearchContext | None = None, deadline: float | None = None,
                max_trained: int | None = None, study: optuna.Study | None = None, name: str | None = None,
                quiet: bool = False) -> None:
    """Run steps until ``cfg.trials`` searched trials have used training time and nothing is queued; or until
    the deadline, ``max_trained`` steps of this worker, or a long run of proposals that were all known already
    when no unseen architecture within the budget can be found (a space smaller than the trial count). After
    ``EXPLORE_AFTER_DUPLICATES`` known proposals in a row an unseen architecture is queued, so a sampler stuck on
    known ones does not end the search early. ``quiet``: no progress lines (a benchmark runs thousands of searches).

    ``cfg.trials`` counts the whole study, whichever process trains: when the places left are all being trained
    by other workers (of this run, or of another ``nas search`` on the same study), this one waits for them instead
    of overshooting; if one of them dies, its trial is failed, its architecture queued again and trained here."""
    torch.set_num_threads(cfg.threads)
    ctx = ctx or build_context(cfg, quiet=worker > 0, worker=worker)
    study = study or open_study(cfg, worker)
    check_same_precision(study, ctx)  # (each worker: a Ray node or a process may sit on another kind of device)
    name = name or f"w{worker}"
    started, trained_here, rejected_in_a_row, duplicates_in_a_row = time.perf_counter(), 0, 0, 0
    unscorable_in_a_row, recovered_at = 0, time.monotonic()  # (the runner recovered just before the workers started)
    times: list[float] = []
    while True:
        done, flying, queued = tally(study.get_trials(deepcopy=False), index=index_of(study))
        if (done >= cfg.trials and not queued) or (deadline and time.time() > deadline):
            break
        if max_trained is not None and trained_here >= max_trained:
            break
        if time.monotonic() - recovered_at >= RECOVER_EVERY_S:
            recover_interrupted(study, wait=False)
            recovered_at = time.monotonic()
        if not queued and done + flying >= cfg.trials:
            time.sleep(POLL_S)  # the places left are being trained elsewhere: wait for their outcome
            continue
        t0 = time.perf_counter()
        status, trial = run_step(study, ctx, name)
        if status == "rejected":
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                smallest = min(ctx.checked_ms(t.user_attrs["latency_ms"]) for t in study.get_trials(deepcopy=False)
                               if "latency_ms" in t.user_attrs)
                what = "upper band edge" if cfg.latency_margin == "band" else "predicted"
                raise SearchError(f"{rejected_in_a_row} architectures in a row exceed the {cfg.budget_ms:g} ms "
                                  f"budget (smallest {what}: {smallest:.3f} ms); raise the budget or use a space "
                                  "with smaller architectures")
            continue
        rejected_in_a_row = 0
        if status == "not scorable":
            unscorable_in_a_row += 1
            if unscorable_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
                raise SearchError(f"the last {unscorable_in_a_row} proposals do not fit the supernet of "
                                  f"--evaluator {cfg.evaluator} (e.g. {trial.user_attrs.get('fail_reason')}); "
                                  "train a supernet over this space")
            continue
        unscorable_in_a_row = 0
        if status == "surplus":
            continue  # the places left are being trained elsewhere; the loop waits for their outcome
        if status in ("duplicate", "claimed elsewhere"):
            duplicates_in_a_row += 1
            if duplicates_in_a_row % EXPLORE_AFTER_DUPLICATES == 0 and duplicates_in_a_row < MAX_DUPLICATES_IN_A_ROW \
                    and enqueue_unseen(study, ctx):
                continue
            if duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
                if not quiet:
                        logger.info(f"[{name}] the last {duplicates_in_a_row} proposals were all known already: the space "
                          f"({ctx.space.size():,} architectures) looks exhausted; stopping")
                break
            continue
        duplicates_in_a_row = 0
        trained_here += 1
        times.append(time.perf_counter() - t0)
        if not quiet:
            _print_progress(study, cfg, trial, times, name, deadline)
    if worker == 0 and not quiet:
        logger.info(f"{name}: finished after {format_duration(time.perf_counter() - started)}")


def _print_progress(study: optuna.Study, cfg: SearchConfig, trial: optuna.trial.FrozenTrial, times: list[float],
                    worker: str, deadline: float | None = None) -> None:
    trials = study.get_trials(deepcopy=False)
    done = counted(trials)
    rejected = sum(status_of(t) == "rejected" for t in trials)
    best = best_feasible(trials)
    left = max(0, cfg.trials - done) * sum(times) / len(times) / cfg.workers
    if deadline:  # a --timeout ends the run first when the trial count is out of reach
        left = min(left, max(0.0, deadline - time.time()))
    status = status_of(trial)
    score = f"val {trial.values[0]:.3f}" if trial.values else status
    label = f"{trial.user_attrs.get('reference')} (reference)" if trial.user_attrs.get("reference") else status
    best_text = f"best feasible val {best.values[0]:.3f} (#{best.number})" if best else "no feasible result yet"
    logger.info(f"[{worker}] {done}/{cfg.trials} trained | #{trial.number} {label}: {score}, "
          f"{trial.user_attrs['latency_ms']:.3f} ms, {trial.user_attrs['summary']} | {best_text} | "
          f"{rejected} rejected over budget | ETA {format_duration(left)}")


def spawned_worker(payload: dict[str, Any], worker: int, start: threading.Barrier | None = None) -> None:
    """Entry point of a ``--workers`` process; ``payload`` holds the search's settings and deadline."""
    cfg = SearchConfig.from_dict(payload["search"])

    def prepare() -> tuple[SearchContext, optuna.Study]:
        return build_context(cfg, quiet=worker > 0, worker=worker), open_study(cfg, worker)

    def loop(prepared: tuple[SearchContext, optuna.Study]) -> None:
        worker_loop(cfg, worker, prepared[0], deadline=payload["deadline"], study=prepared[1])

    run_at_start_line(worker, start, prepare, loop)
