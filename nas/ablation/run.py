"""Running an ablation: one Optuna study of variants x seeds, every run enqueued, workers draining the queue.

The driver derives and prices the variants, records them in the study, and enqueues each (variant, seed) run
that is neither finished nor queued, seed by seed (a partial run compares every variant on seed 0 first). The
workers, in this process, ``--workers`` processes (``nas.trials.parallel``) or Ray Tune trials
(``nas.trials.ray.run_tune``), take queued runs until none is left and train each through the one evaluation of a
trial (``nas.trials.evaluate``). Storage, heartbeat and the recovery of a killed run's trials are every job's
(``nas.trials.study``). Running the same command again resumes.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import swiftformer._torchvision_fix  # noqa: F401  (first: Ray workers import timm through nas.training)

import optuna
import torch
from optuna.trial import TrialState

from swiftformer import SwiftFormerArch, count_macs, count_params

from ..console import configure
from ..files import output_folder, write_text
from ..data import ImageData, load_data
from ..latency.lut import PHONES, table_for_archs
from ..latency.predictor import resolve_predictor
from ..engine import Policy
from ..training import resolve_train_device
from ..trials.evaluate import TaskCache, TrainingEvaluator, evaluate_trial
from ..trials.parallel import run_at_start_line, run_processes, worker_context
from ..trials.storage import open_recorded, refuse_lost_study
from ..trials.study import (FINAL, Heartbeat, check_precision, make_storage, open_study, recover_interrupted,
                           take_queued)
from ..units import format_duration
from .config import AblationConfig, AblationError
from .report import write_outputs
from .runs import run_key, status_of
from .variants import Variant

logger = logging.getLogger(__name__)

@dataclass
class AblationContext:
    """What a worker needs: the variants as recorded in the study and the protocol's training (one prepared task at
    a time: runs go seed by seed)."""

    cfg: AblationConfig
    variants: dict[str, dict[str, Any]]  # name -> record (arch, digest, counts, latencies)
    training: TrainingEvaluator

    @property
    def device(self) -> torch.device:
        return self.training.tasks.device


def load_ablation_data(cfg: AblationConfig) -> ImageData:
    return load_data(cfg.data)  # at its stored size: each run resizes on its device


def variant_records(variants: list[Variant]) -> list[dict[str, Any]]:
    """Each variant with what it costs: params, MACs and predicted latency on both phones (deployed form)."""
    archs = [v.arch for v in variants]
    tables = {phone: table_for_archs(archs, resolve_predictor(phone, None), "ablation") for phone in PHONES}
    return [{"name": v.name, "aliases": list(v.aliases), "arch": v.arch.to_dict(), "digest": v.arch.digest(),
             "summary": v.arch.summary(), "params": count_params(v.arch), "macs": count_macs(v.arch),
             **{f"latency_{phone}_ms": tables[phone].predict(v.arch) for phone in PHONES}} for v in variants]


def open_ablation_study(cfg: AblationConfig, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    return open_study(cfg.study, storage or make_storage(cfg.storage_url(), cfg.storage_patience_s), cfg.identity(),
                      lambda changed: AblationError(f"study {cfg.study!r} in {cfg.out} was run with other settings "
                                                    f"({changed}); resume with the same ones, or choose another "
                                                    "--study or --out"), listing=Path(cfg.out) / "ablation.csv")


def load_ablation(out: str | Path) -> tuple[AblationConfig, optuna.Study]:
    return open_recorded(out, "ablation.json", AblationConfig.from_dict, AblationError, "nas ablate ...")


def reuse_sources(cfg: AblationConfig) -> list[tuple[AblationConfig, optuna.Study]]:
    """The ablations of ``--reuse``, refused (before anything is written) unless trained on the same data and
    protocol as this one."""
    sources, mine = [], cfg.identity()
    for folder in cfg.reuse:
        other_cfg, other = load_ablation(folder)
        theirs = other_cfg.identity()
        changed = [k for k in ("data", "protocol", "protocol_config") if theirs[k] != mine[k]]
        if changed:
            raise AblationError(f"--reuse {folder}: its runs were trained with another {' and '.join(changed)} "
                                f"({'; '.join(str(theirs[k]) for k in changed)}); only runs of the same data and "
                                "protocol can stand in for this ablation's")
        sources.append((other_cfg, other))
    return sources


def reuse_runs(study: optuna.Study, cfg: AblationConfig,
               sources: list[tuple[AblationConfig, optuna.Study]]) -> int:
    """Copy into this study the finished runs of other ablations (``--reuse DIR``) that are runs of this one.

    The same architecture (digest), seed, data and protocol make the same training, so a type ablation after a
    placement ablation does not train "as released" and "no attention" again. Each copy keeps its source's
    figures and names it (``reused_from``). Returns how many runs were copied.
    """
    ours = {r["digest"]: r["name"] for r in study.user_attrs["nas_variants"]}
    trials = study.get_trials(deepcopy=False)
    have = {run_key(t) for t in trials if t.state == TrialState.RUNNING or status_of(t) in FINAL}
    queued = {run_key(t): t for t in trials if t.state == TrialState.WAITING}
    copied = 0
    for other_cfg, other in sources:
        names = {r["name"]: ours.get(r["digest"]) for r in other.user_attrs.get("nas_variants", [])}
        for t in other.get_trials(deepcopy=False):
            key = (names.get(t.user_attrs.get("variant")), t.user_attrs.get("seed"))
            if key[0] is None or status_of(t) not in FINAL or key[1] >= cfg.seeds or key in have:
                continue
            attrs = {**t.user_attrs, "variant": key[0], "seed": key[1], "reused_from": f"{other_cfg.out}#{t.number}"}
            waiting = queued.pop(key, None)
            if waiting is None:
                study.add_trial(optuna.trial.create_trial(state=t.state, values=t.values, user_attrs=attrs))
            # (Optuna has no public call that takes one particular queued trial: the storage's, as ask() makes it)
            elif study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):  # noqa: SLF001
                claimed = optuna.Trial(study, waiting._trial_id)  # noqa: SLF001 (a queued run, taken like a worker)
                for name, value in attrs.items():
                    claimed.set_user_attr(name, value)
                study.tell(claimed, t.values, state=t.state)
            else:  # a worker took it first: it trains
                continue
            have.add(key)
            copied += 1
    return copied


def build_context(cfg: AblationConfig, study: optuna.Study, worker: int = 0,
                  data: ImageData | None = None) -> AblationContext:
    records = study.user_attrs.get("nas_variants")
    if records is None:
        raise AblationError(f"study {cfg.study!r} holds no variants yet; run the ablation command to start it")
    data = data or load_ablation_data(cfg)
    tasks = TaskCache(data, resolve_train_device(cfg.train_device, worker), max_tasks=1)
    return AblationContext(cfg, {r["name"]: r for r in records}, TrainingEvaluator(tasks, cfg.training_protocol()))


def enqueue_runs(study: optuna.Study, cfg: AblationConfig, names: list[str]) -> int:
    """Queue every (variant, seed) not finished, queued or running; seed-major. Returns how many."""
    present = {run_key(t) for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.WAITING, TrialState.RUNNING) or status_of(t) in FINAL}
    missing = [(name, seed) for seed in range(cfg.seeds) for name in names if (name, seed) not in present]
    for name, seed in missing:
        study.enqueue_trial({}, user_attrs={"variant": name, "seed": seed})
    return len(missing)


def run_one(study: optuna.Study, ctx: AblationContext, worker: str = "w0") -> optuna.trial.FrozenTrial | None:
    """Take one queued run and train it; None when the queue is empty."""
    trial = take_queued(study)
    if trial is None:
        return None
    name, seed = trial.user_attrs["variant"], trial.user_attrs["seed"]
    epochs = ctx.training.protocol.config.epochs
    trial.set_user_attr("worker", worker)

    def epoch_done(epoch: int, accuracy: float) -> None:  # a reference-protocol run takes minutes: a line each
        logger.info(f"  [{worker}] #{trial.number} {name} seed {seed}: epoch {epoch}/{epochs}, val {accuracy:.4f}")

    with Heartbeat(study, trial):
        _, finished = evaluate_trial(study, trial, ctx.training, SwiftFormerArch.from_dict(ctx.variants[name]["arch"]),
                                     seed, epoch_done, worker=worker)
    return finished


def worker_loop(cfg: AblationConfig, worker: int, ctx: AblationContext, study: optuna.Study,
                deadline: float | None = None, max_runs: int | None = None) -> None:
    """Train queued runs until none is left, the deadline passes, or ``max_runs`` were trained here."""
    torch.set_num_threads(cfg.threads)
    check_precision(study, Policy.for_device(ctx.device).precision, ctx.device, lambda detail: AblationError(
        f"ablation {cfg.study!r} {detail}: train on the same kind of device, or choose another --study or --out"))
    name, times = f"w{worker}", []
    while not (deadline and time.time() > deadline) and (max_runs is None or len(times) < max_runs):
        recover_interrupted(study, wait=False)
        t0 = time.perf_counter()
        trial = run_one(study, ctx, name)
        if trial is None:
            break
        times.append(time.perf_counter() - t0)
        _print_progress(study, cfg, trial, times, name)


def _print_progress(study: optuna.Study, cfg: AblationConfig, trial: optuna.trial.FrozenTrial,
                    times: list[float], worker: str) -> None:
    trials = study.get_trials(deepcopy=False)
    done = sum(status_of(t) in FINAL for t in trials)
    total = len(study.user_attrs["nas_variants"]) * cfg.seeds
    left = max(0, total - done) * sum(times) / len(times) / cfg.workers
    status = status_of(trial)
    test = trial.user_attrs.get("test_accuracy")
    score = (f"val {trial.values[0]:.4f}" + (f", test {test:.4f}" if test is not None else "")) \
        if trial.values else status
    logger.info(f"[{worker}] {done}/{total} runs ({cfg.protocol} protocol) | #{trial.number} {trial.user_attrs['variant']} "
          f"seed {trial.user_attrs['seed']}: {score} in {format_duration(times[-1])} | ETA {format_duration(left)}")


# ------------------------------------------------------------------------------------------ ways to run
def spawned_worker(payload: dict[str, Any], worker: int, start: threading.Barrier | None = None) -> None:
    """Entry point of a ``--workers`` process."""
    cfg = AblationConfig.from_dict(payload["ablation"])

    def prepare() -> tuple[AblationContext, optuna.Study]:
        study = open_ablation_study(cfg)
        return build_context(cfg, study, worker), study

    run_at_start_line(worker, start, prepare, lambda p: worker_loop(cfg, worker, p[0], p[1], payload["deadline"]))


def _tune_trial(config: dict[str, Any]) -> None:
    configure()  # a Ray worker of a command: its messages as the command's
    from ray import tune

    cfg = AblationConfig.from_dict(config["ablation"])

    def build() -> tuple[AblationContext, optuna.Study]:
        study = open_ablation_study(cfg)
        return build_context(cfg, study), study

    ctx, study = worker_context(("ablation", cfg.out, cfg.study), build)
    worker = int(config.get("slot", 0)) + 1
    worker_loop(cfg, worker, ctx, study, deadline=config.get("deadline"), max_runs=1)
    tune.report({"done": sum(status_of(t) in FINAL for t in study.get_trials(deepcopy=False))})


def run_ablation(cfg: AblationConfig) -> tuple[optuna.Study, str]:
    """Run (or resume) the whole ablation, then write its outputs; returns the study and the summary text."""

    cfg.variants()  # bad bases, kinds, grids and oversize ablations are refused before any data is read
    sources = reuse_sources(cfg)
    out = output_folder(cfg.out)
    url = cfg.storage_url()
    refuse_lost_study(url, out / "ablation.csv")
    study = open_ablation_study(cfg, make_storage(url, cfg.storage_patience_s))
    write_text(out / "ablation.json", json.dumps({**cfg.to_dict(), "storage_url": url}, indent=2) + "\n")
    data = load_ablation_data(cfg)
    variants = cfg.variants(data.num_classes, data.channels)
    if "nas_variants" not in study.user_attrs:
        logger.info(f"pricing {len(variants)} variants on {', '.join(PHONES)}")
        study.set_user_attr("nas_variants", variant_records(variants))
        base = cfg.base_arch(data.num_classes, data.channels).digest()
        study.set_user_attr("nas_base", next(v.name for v in variants if v.arch.digest() == base))
    ctx = build_context(cfg, study, data=data)
    protocol = cfg.training_protocol()
    logger.info(f"ablation {cfg.ablation} of {cfg.base} in {url}: {len(variants)} variants x {cfg.seeds} seeds "
          f"(the same seeds for every variant); data {cfg.data}; {protocol.name} protocol: "
          f"{protocol.config.describe()}; selecting on val{', test read once per run' if protocol.reads_test else ''}"
          f"; training on {ctx.device} with {cfg.threads} thread(s) per worker")
    recover_interrupted(study)  # once, here: a killed run's trials are failed and queued again
    reused = reuse_runs(study, cfg, sources)
    if sources:
        logger.info(f"{reused} finished run(s) reused from {', '.join(cfg.reuse)} (same architecture, seed, data and "
              "protocol)")
    queued = enqueue_runs(study, cfg, [v.name for v in variants])
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    logger.info(f"{waiting} run(s) to train ({queued} newly queued); finished runs are kept")
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    if waiting and cfg.backend == "ray":
        from ..trials.ray import run_tune

        cpus = cfg.ray_cpus()
        run_cfg = AblationConfig.from_dict({**cfg.to_dict(), "cpus_per_trial": cpus})
        run_tune(_tune_trial, {"ablation": run_cfg.to_dict(), "deadline": deadline}, waiting,
                 {"cpu": cpus, "gpu": cfg.gpus_per_trial}, cfg.workers, study, out, cfg.ray_address, url)
    elif waiting and cfg.workers == 1:
        worker_loop(cfg, 0, ctx, study, deadline)
    elif waiting:
        run_processes(spawned_worker, {"ablation": cfg.to_dict(), "deadline": deadline}, cfg.workers)
    return study, write_outputs(out, study, cfg)
