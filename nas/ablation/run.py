"""Running an ablation: one Optuna study of variants x seeds, every run enqueued, workers draining the queue.

The driver derives and prices the variants, records them in the study, and enqueues each (variant, seed) run
that is neither finished nor queued, seed by seed (a partial run compares every variant on seed 0 first). The
workers, in this process, ``--workers`` processes (``nas.search.parallel``) or Ray Tune trials
(``nas.search.ray_backend.run_tune``), take queued runs until none is left. Storage, heartbeat and the recovery
of a killed run's trials are the search's (``nas.search.study``). Running the same command again resumes.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import swiftformer._torchvision_fix  # noqa: F401  (first: Ray workers import timm through nas.training)

import optuna
import torch
from optuna.trial import TrialState

from swiftformer import SwiftFormerArch, count_macs, count_params

from ..data import ImageData, load_data
from ..latency.lut import PHONES, table_for_archs
from ..latency.predictor import resolve_predictor
from ..provenance import code_version
from ..search.parallel import run_at_start_line, run_processes
from ..search.step import is_out_of_memory
from ..search.storage import open_recorded
from ..search.study import Heartbeat, make_storage, other_precision, recover_interrupted
from ..engine import Policy
from ..training import ProxyDiverged, ProxyTask, resolve_train_device
from ..training.protocols import train_and_evaluate
from ..units import format_duration
from .config import AblationConfig, AblationError
from .report import write_outputs
from .runs import FINAL, run_key, status_of
from .variants import Variant

@dataclass
class AblationContext:
    """What a worker needs: the variants as recorded in the study, the data, one prepared task at a time."""

    cfg: AblationConfig
    variants: dict[str, dict[str, Any]]  # name -> record (arch, digest, counts, latencies)
    data: ImageData
    device: torch.device
    data_fingerprint: str = ""  # recorded with every run, beside the code's version (nas.provenance)
    _task: tuple[int, ProxyTask] | None = field(default=None, repr=False)

    def task(self, seed: int) -> ProxyTask:
        """The protocol's task for ``seed`` (its training subset and order); one kept, as runs go seed by seed
        and a task holds the prepared images."""
        if self._task is None or self._task[0] != seed:
            self._task = None  # free the previous seed's images first
            self._task = (seed, ProxyTask(self.data, self.cfg.training_protocol().with_seed(seed).config,
                                          self.device))
        return self._task[1]


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
    study = optuna.create_study(study_name=cfg.study, storage=storage or make_storage(cfg.storage_url()),
                                direction="maximize", load_if_exists=True)
    identity = cfg.identity()
    stored = study.user_attrs.get("nas_identity")
    if stored is None:
        study.set_user_attr("nas_identity", identity)
    elif stored != identity:
        changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise AblationError(f"study {cfg.study!r} in {cfg.out} was run with other settings ({', '.join(changed)}); "
                            "resume with the same ones, or choose another --study or --out")
    return study


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
    return AblationContext(cfg, {r["name"]: r for r in records}, data, resolve_train_device(cfg.train_device, worker),
                           data.fingerprint())


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
    trial_id = study._pop_waiting_trial_id()  # noqa: SLF001 (ask() would sample a new trial on an empty queue)
    if trial_id is None:
        return None
    trial = optuna.Trial(study, trial_id)
    name, seed = trial.user_attrs["variant"], trial.user_attrs["seed"]
    record = ctx.variants[name]
    arch = SwiftFormerArch.from_dict(record["arch"])
    protocol = ctx.cfg.training_protocol()
    task = ctx.task(seed)
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("threads", torch.get_num_threads())
    trial.set_user_attr("device", str(task.device))
    trial.set_user_attr("precision", task.policy.precision)
    trial.set_user_attr("code", code_version())
    trial.set_user_attr("data", ctx.data_fingerprint)

    def fail(status: str, reason: str) -> optuna.trial.FrozenTrial:
        trial.set_user_attr("status", status)
        trial.set_user_attr("fail_reason", reason)
        return study.tell(trial, None, state=TrialState.FAIL)

    def epoch_done(epoch: int, accuracy: float) -> None:  # a reference-protocol run takes minutes: a line each
        print(f"  [{worker}] #{trial.number} {name} seed {seed}: epoch {epoch}/{protocol.config.epochs}, val "
              f"{accuracy:.4f}", file=sys.stderr, flush=True)

    with Heartbeat(study, trial):
        try:
            result = train_and_evaluate(task, arch, protocol.reads_test, epoch_done)
        except ProxyDiverged as exc:
            return fail("diverged", str(exc))
        except Exception as exc:  # (an interrupt is not caught: that run is retried on resume)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if is_out_of_memory(exc):
                return fail("out of memory", f"out of memory: {message}")
            fail("error", f"{type(exc).__name__}: {message}")
            raise
    for key, value in {"seconds": result.seconds, "cpu_seconds": result.cpu_seconds,
                       "resolution": result.resolution, "test_accuracy": result.test_accuracy}.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("status", "trained")
    return study.tell(trial, result.val_accuracy)


def worker_loop(cfg: AblationConfig, worker: int, ctx: AblationContext, study: optuna.Study,
                deadline: float | None = None, max_runs: int | None = None) -> None:
    """Train queued runs until none is left, the deadline passes, or ``max_runs`` were trained here."""
    torch.set_num_threads(cfg.threads)
    mine = Policy.for_device(ctx.device).precision
    recorded = other_precision(study, mine)
    if recorded is not None:
        raise AblationError(f"ablation {cfg.study!r} trains in {recorded}; this process would train in {mine} (on "
                            f"{ctx.device}): train on the same kind of device, or choose another --study or --out")
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
    print(f"[{worker}] {done}/{total} runs ({cfg.protocol} protocol) | #{trial.number} {trial.user_attrs['variant']} "
          f"seed {trial.user_attrs['seed']}: {score} in {format_duration(times[-1])} | ETA {format_duration(left)}",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ ways to run
def spawned_worker(payload: dict[str, Any], worker: int, start: threading.Barrier | None = None) -> None:
    """Entry point of a ``--workers`` process."""
    cfg = AblationConfig.from_dict(payload["ablation"])

    def prepare() -> tuple[AblationContext, optuna.Study]:
        study = open_ablation_study(cfg)
        return build_context(cfg, study, worker), study

    run_at_start_line(worker, start, prepare, lambda p: worker_loop(cfg, worker, p[0], p[1], payload["deadline"]))


_CONTEXTS: dict[str, tuple[AblationContext, optuna.Study]] = {}  # per Ray worker process: data decoded once


def _tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    cfg = AblationConfig.from_dict(config["ablation"])
    key = cfg.out + cfg.study
    if key not in _CONTEXTS:
        study = open_ablation_study(cfg)
        _CONTEXTS[key] = (build_context(cfg, study), study)
    ctx, study = _CONTEXTS[key]
    worker = int(config.get("slot", 0)) + 1
    worker_loop(cfg, worker, ctx, study, deadline=config.get("deadline"), max_runs=1)
    tune.report({"done": sum(status_of(t) in FINAL for t in study.get_trials(deepcopy=False))})


def run_ablation(cfg: AblationConfig) -> tuple[optuna.Study, str]:
    """Run (or resume) the whole ablation, then write its outputs; returns the study and the summary text."""

    cfg.variants()  # bad bases, kinds, grids and oversize ablations are refused before any data is read
    sources = reuse_sources(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    url = cfg.storage_url()
    study = open_ablation_study(cfg, make_storage(url))
    (out / "ablation.json").write_text(json.dumps({**cfg.to_dict(), "storage_url": url}, indent=2) + "\n")
    data = load_ablation_data(cfg)
    variants = cfg.variants(data.num_classes, data.channels)
    if "nas_variants" not in study.user_attrs:
        print(f"pricing {len(variants)} variants on {', '.join(PHONES)}", file=sys.stderr)
        study.set_user_attr("nas_variants", variant_records(variants))
        base = cfg.base_arch(data.num_classes, data.channels).digest()
        study.set_user_attr("nas_base", next(v.name for v in variants if v.arch.digest() == base))
    ctx = build_context(cfg, study, data=data)
    protocol = cfg.training_protocol()
    print(f"ablation {cfg.ablation} of {cfg.base} in {url}: {len(variants)} variants x {cfg.seeds} seeds "
          f"(the same seeds for every variant); data {cfg.data}; {protocol.name} protocol: "
          f"{protocol.config.describe()}; selecting on val{', test read once per run' if protocol.reads_test else ''}"
          f"; training on {ctx.device} with {cfg.threads} thread(s) per worker", file=sys.stderr)
    recover_interrupted(study)  # once, here: a killed run's trials are failed and queued again
    reused = reuse_runs(study, cfg, sources)
    if sources:
        print(f"{reused} finished run(s) reused from {', '.join(cfg.reuse)} (same architecture, seed, data and "
              "protocol)", file=sys.stderr)
    queued = enqueue_runs(study, cfg, [v.name for v in variants])
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    print(f"{waiting} run(s) to train ({queued} newly queued); finished runs are kept", file=sys.stderr)
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    if waiting and cfg.backend == "ray":
        from ..search.ray_backend import run_tune

        cpus = cfg.cpus_per_trial or (1 if cfg.ray_address else cfg.threads)
        run_cfg = AblationConfig.from_dict({**cfg.to_dict(), "cpus_per_trial": cpus})
        run_tune(_tune_trial, {"ablation": run_cfg.to_dict(), "deadline": deadline}, waiting,
                 {"cpu": cpus, "gpu": cfg.gpus_per_trial}, cfg.workers, cfg.study, out, cfg.ray_address, url)
    elif waiting and cfg.workers == 1:
        worker_loop(cfg, 0, ctx, study, deadline)
    elif waiting:
        run_processes(spawned_worker, {"ablation": cfg.to_dict(), "deadline": deadline}, cfg.workers)
    return study, write_outputs(out, study, cfg)
