"""The search: the most accurate architectures of a space whose predicted latency fits a budget.

The Optuna study is the single source of truth. Every worker (this process, ``--workers`` processes, or Ray
Tune trials) runs the same step against it: ask a trial, let the space suggest an architecture, price it with
the device's per-block table, record an over-budget one as infeasible without training it, reuse the result of
an architecture already trained, otherwise proxy-train it and tell the study. Reference variants are enqueued
once. A running trial keeps a heartbeat in the study; one whose heartbeat stops (a killed run) is marked failed
and its architecture enqueued again, so running the same command resumes without losing finished work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import swiftformer._torchvision_fix  # noqa: F401

import optuna
import torch
from optuna.trial import TrialState

import search_spaces
from search_spaces import SearchSpace
from swiftformer import VARIANTS, SwiftFormerArch, count_macs, count_params

from .datasets import load_data
from .latency import LatencyPredictor
from .latency.predictor import resolve_predictor
from .latency.lut import LatencyTable, build_table
from .progress import progress
from .proxy import ProxyConfig, ProxyDiverged, ProxyTask
from .units import format_duration

SAMPLERS = ("tpe", "nsga2", "random", "evolution")
OBJECTIVES = ("constrained", "pareto")
HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0
MAX_REJECTED_IN_A_ROW = 2000
MAX_DUPLICATES_IN_A_ROW = 200
optuna.logging.set_verbosity(optuna.logging.WARNING)


class SearchError(ValueError):
    """A search that cannot start or go on; the message says what to change."""


@dataclass
class SearchConfig:
    budget_ms: float
    device: str | None = "iphone14"
    predictor: str | None = None  # a calibrated predictor file instead of a shipped device
    space: str = "swiftformer"
    data: str = "fashion-mnist"
    trials: int = 40  # architectures trained (over-budget rejections and reused duplicates are extra)
    timeout_s: float | None = None
    sampler: str = "tpe"
    objective: str = "constrained"
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    seed: int = 0
    out: str = ""
    study: str = ""
    storage: str | None = None
    backend: str = "local"
    ray_address: str | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}; accepted: {', '.join(SAMPLERS)}")
        if self.objective not in OBJECTIVES:
            raise SearchError(f"unknown objective {self.objective!r}; accepted: {', '.join(OBJECTIVES)}")
        if self.backend not in ("local", "ray"):
            raise SearchError(f"unknown backend {self.backend!r}; accepted: local, ray")
        if self.workers < 1 or self.trials < 1:
            raise SearchError("--workers and --trials must be at least 1")
        budget = f"{self.budget_ms:g}ms".replace(".", "p")
        self.study = self.study or f"{Path(self.space).stem}-{self.device or Path(self.predictor or 'custom').stem}-{budget}"
        self.out = self.out or str(Path("runs") / self.study)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["proxy"] = self.proxy.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchConfig":
        return cls(**{**data, "proxy": ProxyConfig(**data["proxy"])})


# --------------------------------------------------------------------------------------------------- context
class SearchContext:
    """What every worker needs, built once per process: space, table, data, proxy task."""

    def __init__(self, cfg: SearchConfig, predictor: LatencyPredictor, space: SearchSpace, table: LatencyTable,
                 task: ProxyTask):
        self.cfg, self.predictor, self.table, self.task = cfg, predictor, table, task
        self.space = space  # with the task's classes and channels: its architectures are the ones that ship


def build_context(cfg: SearchConfig, quiet: bool = False) -> SearchContext:
    predictor = resolve_predictor(cfg.device, cfg.predictor)
    data = load_data(cfg.data, image_size=max(cfg.proxy.resolution, 32))
    base = search_spaces.load_space(cfg.space)
    space = dataclasses.replace(base, num_classes=data.num_classes, in_chans=data.channels)
    table_path = Path(cfg.out) / "latency_table.json"
    key = _digest({"predictor": predictor.to_dict(), "space": space.to_dict()})
    table = None
    if table_path.exists():
        try:
            saved = LatencyTable.load(table_path)
            table = saved if saved.space == f"{space.name}:{key}" else None
        except (ValueError, KeyError, TypeError):  # truncated or foreign: price the space again
            table = None
    if table is None:
        table = build_table(space, predictor, None if quiet else progress("pricing the space's blocks"))
        table.space = f"{space.name}:{key}"  # the space and the digest of what it was priced from
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.save(table_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return SearchContext(cfg, predictor, space, table, ProxyTask(data, cfg.proxy, device))


def _task_arch(arch: SwiftFormerArch, space: SearchSpace) -> SwiftFormerArch:
    return arch.replace(num_classes=space.num_classes, in_chans=space.in_chans, distillation=space.distillation,
                        resolution=space.resolutions[0])


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------------- storage
def storage_url(cfg: SearchConfig) -> str:
    """The study's storage: ``--storage`` if given; else the one already in ``--out``; else SQLite for one
    local process, a journal file for several or for Ray. A URL with ``://`` is an RDB, anything else a journal
    file path."""
    out = Path(cfg.out).resolve()
    url = cfg.storage
    if url is None:
        if (out / "study.db").exists():
            url = f"sqlite:///{out / 'study.db'}"
        elif (out / "study.journal").exists() or cfg.workers > 1 or cfg.backend == "ray":
            url = str(out / "study.journal")
        else:
            url = f"sqlite:///{out / 'study.db'}"
    if url.startswith("sqlite") and (cfg.workers > 1 or cfg.backend == "ray"):
        raise SearchError(f"SQLite ({url}) does not survive parallel writers; use a journal file "
                          f"(--storage {out / 'study.journal'}) or an RDB URL (postgresql://..., mysql://...)")
    return url


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    if "://" in url:
        return url
    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def open_study(cfg: SearchConfig, worker: int = 0, storage=None) -> optuna.Study:
    directions = ["maximize"] if cfg.objective == "constrained" else ["maximize", "minimize"]
    seed = cfg.seed * 1000 + worker  # workers must not propose the same sequence
    if cfg.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=cfg.workers > 1,
                                             n_startup_trials=10)
    elif cfg.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, cfg.trials // 3)))
    else:  # random, and evolution (which proposes its children by enqueueing them; see _evolve)
        sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
              if cfg.objective == "constrained" else optuna.pruners.NopPruner())
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=cfg.study, storage=storage or make_storage(storage_url(cfg)), sampler=sampler,
                                pruner=pruner, directions=directions, load_if_exists=True)
    identity = _identity(cfg)
    stored = study.user_attrs.get("nas_identity")
    if stored is None:
        study.set_user_attr("nas_identity", identity)
        study.set_user_attr("nas_config", cfg.to_dict())
    elif stored != identity:
        changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise SearchError(f"study {cfg.study!r} in {cfg.out} was run with other settings ({', '.join(changed)}); "
                          "resume with the same ones, or choose another --study or --out")
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise SearchError(f"study {cfg.study!r} has another objective; choose another --study")
    return study


def _identity(cfg: SearchConfig) -> dict[str, Any]:
    """What must stay the same for results to be comparable, and so for a run to resume a study."""
    return {"budget_ms": cfg.budget_ms, "device": cfg.device, "predictor": cfg.predictor, "space": cfg.space,
            "data": cfg.data, "objective": cfg.objective, "proxy": cfg.proxy.to_dict()}


# ---------------------------------------------------------------------------------------------- trial states
def status_of(trial: optuna.trial.FrozenTrial) -> str:
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state == TrialState.FAIL:  # a failure records its reason; a killed run's trial has none
        return trial.user_attrs.get("status", "interrupted")
    return trial.user_attrs.get("status", "trained")


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that used training time (trained, pruned, failed while training), references excluded."""
    return sum(1 for t in trials if status_of(t) in ("trained", "pruned", "diverged", "out of memory")
               and "reference" not in t.user_attrs)


def best_feasible(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    done = [t for t in trials if status_of(t) in ("trained", "reference")]
    return max(done, key=lambda t: t.values[0], default=None)


def recover_interrupted(study: optuna.Study, wait: bool = True) -> list[int]:
    """Fail the running trials whose heartbeat stopped and enqueue their architectures again."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    now = time.time()
    beats = {t.number: t.system_attrs.get("nas:heartbeat", t.datetime_start.timestamp()) for t in running}
    if wait:
        freshest = max(beats.values())
        if now - freshest < STALE_AFTER_S:
            print(f"{len(running)} trial(s) marked running; waiting {STALE_AFTER_S - (now - freshest):.0f}s to see "
                  "whether another process is still working on them", file=sys.stderr)
            time.sleep(STALE_AFTER_S - (now - freshest))
            return recover_interrupted(study, wait=False)
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get("nas:heartbeat", trial.datetime_start.timestamp())
        if time.time() - beat < STALE_AFTER_S:
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile, or another process recovered it first
        keep = {k: v for k, v in trial.user_attrs.items() if k == "reference"}
        study.enqueue_trial(trial.params, user_attrs={**keep, "retry_of": trial.number})
        retried.append(trial.number)
    if retried:
        print(f"trial(s) {', '.join(f'#{n}' for n in retried)} were interrupted; their architectures are queued "
              "again", file=sys.stderr)
    return retried


class _Heartbeat:
    def __init__(self, study: optuna.Study, trial: optuna.Trial):
        self.storage, self.trial_id = study._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.storage.set_trial_system_attr(self.trial_id, "nas:heartbeat", time.time())
            except Exception:  # noqa: BLE001 (a missed beat is harmless; the trial goes on)
                pass

    def __enter__(self) -> "_Heartbeat":
        self.storage.set_trial_system_attr(self.trial_id, "nas:heartbeat", time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# ------------------------------------------------------------------------------------------------ one trial
def enqueue_references(study: optuna.Study, ctx: SearchContext) -> list[str]:
    """Queue the released variants that fit the budget, once per study; returns their names."""
    if study.user_attrs.get("nas_references_queued"):
        return list(study.user_attrs.get("nas_references", []))
    names = []
    for name, arch in VARIANTS.items():
        task_arch = _task_arch(arch, ctx.space)
        if task_arch not in ctx.space:
            print(f"reference {name.upper()} is outside space {ctx.space.name!r}; not evaluated", file=sys.stderr)
            continue
        if ctx.table.predict(task_arch) <= ctx.cfg.budget_ms:
            study.enqueue_trial(ctx.space.trial_params(task_arch), user_attrs={"reference": name.upper()})
            names.append(name.upper())
    study.set_user_attr("nas_references", names)
    study.set_user_attr("nas_references_queued", True)
    return names


def run_step(study: optuna.Study, ctx: SearchContext, worker: str = "w0") -> tuple[str, optuna.trial.FrozenTrial]:
    """Ask one trial and carry it to its end; returns its status and the finished trial."""
    cfg = ctx.cfg
    if cfg.sampler == "evolution":
        _evolve(study, ctx)
    trial = study.ask()
    arch = ctx.space.suggest(trial)
    latency = ctx.table.predict(arch)
    for key, value in {"arch": arch.to_dict(), "summary": arch.summary(), "digest": arch.digest(),
                       "params": count_params(arch), "macs": count_macs(arch), "latency_ms": latency,
                       "worker": worker}.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("latency", latency - cfg.budget_ms)

    def tell(status: str, values: list[float] | None,
             state: TrialState = TrialState.COMPLETE) -> tuple[str, optuna.trial.FrozenTrial]:
        try:
            trial.set_user_attr("status", status)
            return status, study.tell(trial, values, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # another process judged this trial stale (a heartbeat arrived late) and queued it again
            print(f"[{worker}] trial #{trial.number} was recovered by another process; its result is dropped",
                  file=sys.stderr)
            return "recovered elsewhere", study._storage.get_trial(trial._trial_id)

    if latency > cfg.budget_ms:  # never trained: the table rejects it before any training
        return tell("rejected", [0.0] if cfg.objective == "constrained" else [0.0, latency])
    reference = trial.user_attrs.get("reference")
    twin = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.user_attrs.get("digest") == arch.digest() and status_of(t) in ("trained", "reference")),
                None)
    if twin is not None and reference is None:
        trial.set_user_attr("duplicate_of", twin.number)
        return tell("duplicate", list(twin.values))

    def report(epoch: int, accuracy: float) -> None:
        if cfg.objective != "constrained":
            return  # Optuna cannot prune (or record intermediate values of) multi-objective trials
        trial.report(accuracy, epoch)
        if reference is None and epoch < cfg.proxy.epochs and trial.should_prune():
            raise optuna.TrialPruned(f"accuracy {accuracy:.3f} after epoch {epoch} is below the median")

    failure: tuple[str, str] | None = None
    with _Heartbeat(study, trial):
        try:
            result = ctx.task.train(arch, report)
        except optuna.TrialPruned:
            failure = ("pruned", "")
        except ProxyDiverged as exc:
            failure = ("diverged", str(exc))
        except Exception as exc:  # (an interrupt is not caught: that trial is retried on resume)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not _is_out_of_memory(exc):  # a crash: record why (so it is not retried), then surface it
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {message}")
                tell("error", None, TrialState.FAIL)
                raise
            failure = ("out of memory", f"out of memory: {message}")
    if failure is not None:
        status, reason = failure
        if status == "pruned":
            return tell("pruned", None, TrialState.PRUNED)
        trial.set_user_attr("fail_reason", reason)
        return tell(status, None, TrialState.FAIL)
    trial.set_user_attr("train_seconds", result.seconds)
    return tell("reference" if reference else "trained",
                [result.accuracy] if cfg.objective == "constrained" else [result.accuracy, latency])


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError saying it cannot allocate."""
    text = str(exc)
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "can't allocate memory" in text \
        or "out of memory" in text


def _evolve(study: optuna.Study, ctx: SearchContext, population: int = 20, sample: int = 5,
            warmup: int = 10) -> None:
    """Regularised evolution: the child of a tournament among the latest feasible trials, enqueued for ask().

    Until ``warmup`` architectures are trained, the random sampler proposes them.
    """
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return  # something is queued already (references, retries)
    pool = [t for t in study.get_trials(deepcopy=False) if status_of(t) in ("trained", "reference")]
    if len(pool) < warmup:
        return
    rng = random.Random(ctx.cfg.seed * 7919 + len(pool))
    recent = pool[-population:]
    parent = max(rng.sample(recent, min(sample, len(recent))), key=lambda t: t.values[0])
    arch = SwiftFormerArch.from_dict(parent.user_attrs["arch"])  # recorded as the task architecture it was
    if rng.random() < 0.3:
        other = max(rng.sample(recent, min(sample, len(recent))), key=lambda t: t.values[0])
        arch = ctx.space.crossover(arch, SwiftFormerArch.from_dict(other.user_attrs["arch"]), rng)
    child = ctx.space.mutate(arch, rng)
    study.enqueue_trial(ctx.space.trial_params(child), user_attrs={"parent": parent.number})


# ------------------------------------------------------------------------------------------------ the loop
def worker_loop(cfg: SearchConfig, worker: int = 0, ctx: SearchContext | None = None, deadline: float | None = None,
                max_trained: int | None = None) -> None:
    """Run steps until ``cfg.trials`` trials have used training time (trained, pruned or failed while
    training) and nothing is queued; or until the deadline, ``max_trained`` steps of this worker, or a long run
    of proposals that were all trained already (a space smaller than the trial count)."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    ctx = ctx or build_context(cfg, quiet=worker > 0)
    study = open_study(cfg, worker)
    name = f"w{worker}"
    started, trained_here, rejected_in_a_row, duplicates_in_a_row = time.perf_counter(), 0, 0, 0
    times: list[float] = []
    while True:
        trials = study.get_trials(deepcopy=False)
        done = counted(trials)
        queued = any(t.state == TrialState.WAITING for t in trials)
        if (done >= cfg.trials and not queued) or (deadline and time.time() > deadline):
            break
        if max_trained is not None and trained_here >= max_trained:
            break
        recover_interrupted(study, wait=False)
        t0 = time.perf_counter()
        status, trial = run_step(study, ctx, name)
        if status == "rejected":
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                smallest = min(t.user_attrs["latency_ms"] for t in study.get_trials(deepcopy=False)
                               if "latency_ms" in t.user_attrs)
                raise SearchError(f"{rejected_in_a_row} architectures in a row exceed the {cfg.budget_ms:g} ms "
                                  f"budget (smallest predicted: {smallest:.3f} ms); raise the budget or use a space "
                                  "with smaller architectures")
            continue
        rejected_in_a_row = 0
        if status == "duplicate":
            duplicates_in_a_row += 1
            if duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
                print(f"[{name}] the last {duplicates_in_a_row} proposals were all trained already: the space "
                      f"({ctx.space.size():,} architectures) looks exhausted; stopping", file=sys.stderr)
                break
            continue
        duplicates_in_a_row = 0
        trained_here += 1
        times.append(time.perf_counter() - t0)
        _print_progress(study, cfg, status, trial, times, name)
    if worker == 0:
        print(f"{name}: finished after {format_duration(time.perf_counter() - started)}", file=sys.stderr)


def _print_progress(study: optuna.Study, cfg: SearchConfig, status: str, trial: optuna.trial.FrozenTrial,
                    times: list[float], worker: str) -> None:
    trials = study.get_trials(deepcopy=False)
    done = counted(trials)
    rejected = sum(status_of(t) == "rejected" for t in trials)
    best = best_feasible(trials)
    per_trial = sum(times) / len(times)
    left = max(0, cfg.trials - done) * per_trial / cfg.workers
    score = f"acc {trial.values[0]:.3f}" if trial.values else status
    label = f"{trial.user_attrs.get('reference')} (reference)" if trial.user_attrs.get("reference") else status
    best_text = f"best feasible {best.values[0]:.3f} (#{best.number})" if best else "no feasible result yet"
    print(f"[{worker}] {done}/{cfg.trials} trained | #{trial.number} {label}: {score}, "
          f"{trial.user_attrs['latency_ms']:.3f} ms, {trial.user_attrs['summary']} | {best_text} | "
          f"{rejected} rejected over budget | ETA {format_duration(left)}", file=sys.stderr, flush=True)


def _spawned_worker(cfg_dict: dict[str, Any], worker: int, deadline: float | None) -> None:
    try:
        worker_loop(SearchConfig.from_dict(cfg_dict), worker, deadline=deadline)
    except ValueError as exc:  # the project's user-facing errors (SearchError, DatasetError, ...) are ValueErrors
        print(f"nas: error: worker {worker}: {exc}", file=sys.stderr)
        sys.exit(2)


def run_search(cfg: SearchConfig) -> tuple[optuna.Study, str]:
    """Run (or resume) the whole search, then write its outputs; returns the study and the summary text."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    url = storage_url(cfg)
    storage = make_storage(url)
    (out / "search.json").write_text(json.dumps({**cfg.to_dict(), "storage_url": url}, indent=2) + "\n")
    ctx = build_context(cfg)  # validates data, space and predictor before any worker starts
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    study = open_study(cfg, storage=storage)
    print(f"study {cfg.study!r} in {url}: {counted(study.get_trials(deepcopy=False))}/{cfg.trials} "
          f"trained so far; budget {cfg.budget_ms:g} ms on {ctx.predictor.device}; space {ctx.space.name} "
          f"({ctx.space.size():,} architectures); data {cfg.data}", file=sys.stderr)
    recover_interrupted(study)  # once, here: a killed run's trials are failed and queued again
    references = enqueue_references(study, ctx)
    if references:
        print(f"references within the budget, evaluated with the same protocol: {', '.join(references)}",
              file=sys.stderr)
    if cfg.backend == "ray":
        from .ray_backend import run_with_ray

        run_with_ray(cfg, study, url, deadline)
    elif cfg.workers == 1:
        worker_loop(cfg, 0, ctx, deadline)
    else:
        import multiprocessing as mp

        context = mp.get_context("spawn")
        processes = [context.Process(target=_spawned_worker, args=(cfg.to_dict(), i, deadline))
                     for i in range(cfg.workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        if any(p.exitcode for p in processes):
            raise SearchError(f"{sum(bool(p.exitcode) for p in processes)} worker process(es) failed; "
                              "run the same command again to resume")
    from .report import write_outputs

    return study, write_outputs(out, study, cfg)
