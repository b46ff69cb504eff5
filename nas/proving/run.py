"""Running a proving-ground plan: every search is our own search (``worker_loop`` on an in-memory Optuna study,
the sampler, evolution, de-duplication and budget checks exactly as ``nas search`` runs them), scored from the
table; what it picked after each query is appended to ``runs.jsonl``, one line per finished search.

Resumable and chunked: a run skips the searches ``runs.jsonl`` already holds; ``minutes`` stops starting new ones
after that long; a line cut by a kill is dropped (and said) on the next run, never a finished one. Several
processes (``workers``) run searches at once; only this process writes the file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from datetime import datetime, timezone
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from optuna.storages import InMemoryStorage

from ..files import StateError, append_line, json_lines, read_json, read_text, write_text
from ..benchmarks import nb201_accuracies
from ..provenance import code_version
from ..search.config import SearchConfig, SearchError
from ..search.context import build_context
from ..trials.study import status_of
from ..search.worker import open_study, worker_loop
from ..trials.parallel import worker_context
from ..units import format_duration
from .plan import SETTINGS, UNCONSTRAINED_DEVICE, Plan, RunSpec

logger = logging.getLogger(__name__)

RESULTS = "runs.jsonl"
PLAN = "plan.json"
COMMANDS = "commands.log"  # every run: when, on what machine, with which code, what command


class ProvingError(ValueError):
    """A proving-ground folder or plan that cannot be used; the message says the way out."""


def search_config(spec: RunSpec) -> SearchConfig:
    setting = SETTINGS[spec.setting]
    return SearchConfig(budget_ms=setting.budget_ms, device=setting.device or UNCONSTRAINED_DEVICE, space="nb201",
                        data=f"nb201:{setting.dataset}", trials=spec.queries, sampler=spec.sampler, seed=spec.repeat,
                        table_score=spec.score, latency_shots=spec.shots, out=os.devnull)


def run_search_spec(spec: RunSpec) -> dict[str, Any]:
    """One search; returns its record: the picks (query number, NAS-Bench-201 index) each time the best score so
    far changed, and what the search spent."""
    cfg = search_config(spec)
    key = (spec.setting, spec.shots, spec.score, spec.repeat if spec.shots is not None else None)
    started = time.perf_counter()
    try:  # per process: a measured setting's context serves every repeat (a predicted latency is calibrated on a
        # draw of the repeat's seed, so each repeat has its own)
        context = worker_context(("proving", *key), lambda: build_context(cfg), keep=64)
    except SearchError as exc:  # a few-shot predictor can price every architecture over the budget
        return {"key": spec.key, "setting": spec.setting, "latency": spec.shots, "sampler": spec.sampler,
                "score": spec.score, "repeat": spec.repeat, "planned": spec.queries, "queries": 0, "picks": [],
                "trials": 0, "statuses": {}, "seconds": round(time.perf_counter() - started, 3),
                "no_search": str(exc)}
    ctx = dataclasses.replace(context, cfg=cfg)  # the table and prices shared; the search's own settings
    storage = InMemoryStorage()
    with contextlib.redirect_stderr(io.StringIO()):  # (a search's own notes; the record says what happened)
        if spec.workers == 1:
            study = open_study(cfg, storage=storage)
            worker_loop(cfg, 0, ctx, study=study, quiet=True)
        else:
            study = _parallel_search(cfg, ctx, storage, spec.workers)
    index = nb201_accuracies()["index"]
    picks, best, statuses = [], None, {}
    queries = 0
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        status = status_of(trial)
        statuses[status] = statuses.get(status, 0) + 1
        if status != "trained":
            continue
        queries += 1
        if best is None or trial.values[0] > best:
            best = trial.values[0]
            picks.append([queries, int(index.at[trial.user_attrs["digest"]])])
    return {"key": spec.key, "setting": spec.setting, "latency": spec.shots, "sampler": spec.sampler,
            "score": spec.score, "repeat": spec.repeat, "planned": spec.queries, "queries": queries, "picks": picks,
            "trials": sum(statuses.values()), "statuses": statuses,
            "seconds": round(time.perf_counter() - started, 3), **({"workers": spec.workers} if spec.workers > 1
                                                                  else {})}


EVALUATION_S = 0.2  # a table read's stand-in for a training's wall time when several workers search at once


class _Slow:
    """An evaluator that takes ``seconds``: several workers' trials then overlap, as trainings do, so each worker's
    sampler proposes while the others' trials run (the table's answer alone takes microseconds)."""

    def __init__(self, evaluator: Any, seconds: float):
        self.evaluator, self.seconds = evaluator, seconds

    def __call__(self, arch: Any, seed: int, report: Any = None) -> Any:
        time.sleep(self.seconds)
        return self.evaluator(arch, seed, report)


def _parallel_search(cfg: SearchConfig, ctx: Any, storage: InMemoryStorage, workers: int) -> Any:
    """The search as ``--workers N`` runs it (every worker its own sampler on the shared study, TPE with its
    constant liar), in threads of this process over an in-memory study, each evaluation ``EVALUATION_S`` long."""
    cfg = dataclasses.replace(cfg, workers=workers)
    slow = dataclasses.replace(ctx, cfg=cfg, evaluator=_Slow(ctx.evaluator, EVALUATION_S))
    studies = [open_study(cfg, worker, storage=storage) for worker in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        running = [pool.submit(worker_loop, cfg, worker, slow, study=studies[worker], quiet=True)
                   for worker in range(workers)]
        for future in running:
            future.result()
    return studies[0]


def load_results(out: Path) -> dict[str, dict[str, Any]]:
    """The finished searches of ``out/runs.jsonl`` by key (``read_records``)."""
    return read_records(out / RESULTS, "key", "proving-ground record", "every search in it then runs again")


def read_records(path: Path, key: str, what: str, consequence: str) -> dict[Any, dict[str, Any]]:
    """The records of a JSON-lines file by their ``key`` field (``nas.files.json_lines``); a last line cut by a
    kill is dropped (and the file rewritten without it: its work runs again), a damaged line elsewhere is an error
    naming it."""
    if not path.exists():
        return {}
    way_out = f"restore the file or move it aside ({consequence})"
    records, cut = json_lines(path, what, way_out)
    if cut:
        logger.info(f"{path}: the last line was cut off (a killed run); its work runs again")
        text = read_text(path, what, way_out)
        write_text(path, text[:text.rfind("\n") + 1])
    try:
        return {record[key]: record for record in records}
    except (KeyError, TypeError):
        raise StateError(f"{path} holds a {what} without its {key!r}; {way_out}") from None


def recorded_plan(out: Path) -> Plan:
    """The plan ``out`` was started with (``plan.json``); a one-line error when it is damaged."""
    way_out = "restore it, or choose another --out"
    try:
        return Plan.from_dict(read_json(out / PLAN, "proving-ground plan", way_out))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ProvingError(f"{out / PLAN} is not a plan this version reads ({exc}); {way_out}") from None


def check_plan(out: Path, plan: Plan) -> None:
    """Record the plan in ``out``, or refuse one other than the plan recorded there."""
    path = out / PLAN
    if path.exists():
        recorded = recorded_plan(out)
        if recorded != plan:
            changed = sorted(k for k, v in plan.to_dict().items() if recorded.to_dict().get(k) != v)
            raise ProvingError(f"{out} holds plan {recorded.name!r} with other settings ({', '.join(changed)}); "
                               "resume it with the same options, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(plan.to_dict(), indent=2) + "\n")


def append_record(path: Path, record: dict[str, Any]) -> None:
    append_line(path, json.dumps(record, separators=(",", ":")))


def log_command(out: Path) -> str:
    """Append when, on what machine, with which code and what command to ``out/commands.log``; the machine."""
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"
    with (out / COMMANDS).open("a") as handle:
        handle.write(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {machine} | code {code_version()} | "
                     f"{' '.join(sys.argv)}\n")
    return machine


def init_worker() -> None:
    import torch

    from ..console import configure

    configure()  # a worker process of a command: its messages as the command's, Optuna's per-trial lines quiet
    torch.set_num_threads(1)


def run_plan(plan: Plan, out: str | Path, minutes: float | None = None, workers: int = 1,
             log=None) -> tuple[int, int]:
    """Run the searches of ``plan`` that ``out`` does not hold yet; returns (held now, planned)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ProvingError(f"--out {out} is a file; choose a folder")
    check_plan(out, plan)
    log = log or (lambda text: logger.info(text))
    done = load_results(out)
    todo = [spec for spec in plan.runs() if spec.key not in done]
    planned = len(done) + len(todo)
    deadline = time.time() + 60 * minutes if minutes else None
    machine = log_command(out)
    log(f"proving ground {plan.name!r} in {out}: {len(done)}/{planned} searches held; running {len(todo)} with "
        f"{workers} worker(s) on {machine}" + (f", for {minutes:g} min" if minutes else ""))
    if not todo:
        return len(done), planned
    path = out / RESULTS
    started, finished, spent = time.time(), 0, 0.0

    def record(result: dict[str, Any]) -> None:
        nonlocal finished, spent
        append_record(path, result)
        finished += 1
        spent += result["seconds"]
        if finished % max(1, len(todo) // 40) == 0 or finished == len(todo):
            rate = (time.time() - started) / finished
            log(f"  {len(done) + finished}/{planned} searches | last {result['key']}: {result['queries']} queries "
                f"in {result['seconds']:.1f}s | ETA {format_duration(rate * (len(todo) - finished))}")

    def failed(spec: RunSpec, exc: BaseException) -> ProvingError:
        message = str(exc).splitlines()[0] if str(exc) else ""
        return ProvingError(f"search {spec.key} failed ({type(exc).__name__}: {message}); the {len(done) + finished} "
                            f"finished searches are kept in {path}; run the same command again to resume")

    if workers == 1:
        init_worker()
        for spec in todo:
            if deadline and time.time() > deadline:
                break
            try:
                result = run_search_spec(spec)
            except Exception as exc:  # noqa: BLE001 (said in one line; what finished is kept)
                raise failed(spec, exc) from None
            record(result)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker) as pool:
            pending: dict[Future, RunSpec] = {}
            queue = iter(todo)
            for spec in queue:
                pending[pool.submit(run_search_spec, spec)] = spec
                if len(pending) >= 2 * workers:
                    break
            while pending:
                finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished_now:
                    spec = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001
                        for other in pending:
                            other.cancel()
                        raise failed(spec, exc) from None
                    record(result)
                if not (deadline and time.time() > deadline):
                    for spec in queue:
                        pending[pool.submit(run_search_spec, spec)] = spec
                        if len(pending) >= 2 * workers:
                            break
    held = len(done) + finished
    log(f"proving ground: {held}/{planned} searches held ({finished} this run, "
        f"{format_duration(time.time() - started)} wall, {format_duration(spent)} of search time)")
    return held, planned
