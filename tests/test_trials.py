"""The one evaluation of a trial (nas.trials.evaluate): its outcomes, its task cache, and every job going on past a
training that diverged or ran out of memory."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import torch
from optuna.storages import InMemoryStorage

from nas.cli import main
from nas.data import load_data
from nas.engine import Diverged
from nas.fidelity import benchmark
from nas.identity import ProxyConfig
from nas.proving.scores import compute
from nas.supernet import SupernetError
from nas.training.protocols import Protocol
from nas.training.proxy import ProxyResult, ProxyTask
from nas.trials.evaluate import (EvaluationError, Scored, TaskCache, TrainingEvaluator, evaluate, evaluate_trial)
from nas.trials.study import status_of
from swiftformer import VARIANTS

TINY = ProxyConfig(epochs=1, downscale=4, subset=60)
OOM_CPU = "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"


def raising(exc: BaseException):
    def evaluator(arch, seed, report=None):
        raise exc
    return evaluator


@pytest.mark.parametrize("exc, status, reason", [
    (optuna.TrialPruned("below the median"), "pruned", "below the median"),
    (SupernetError("stage 3 is wider"), "not scorable", "not representable in the supernet: stage 3 is wider"),
    (Diverged("loss became nan at epoch 1"), "diverged", "loss became nan at epoch 1"),
    (torch.OutOfMemoryError("CUDA out of memory"), "out of memory", "out of memory: CUDA out of memory"),
    (RuntimeError(OOM_CPU), "out of memory", f"out of memory: {OOM_CPU}"),
])
def test_an_evaluation_ends_in_one_of_the_named_outcomes(exc, status, reason):
    outcome = evaluate(raising(exc), "arch")
    assert (outcome.status, outcome.reason, outcome.value) == (status, reason, None)
    assert outcome.state.name == {"pruned": "PRUNED"}.get(status, "FAIL")
    scored = evaluate(lambda arch, seed, report: Scored(0.75, {"seconds": 1.5}), "arch")
    assert (scored.status, scored.value, scored.attrs, scored.state.name) == ("trained", 0.75, {"seconds": 1.5},
                                                                              "COMPLETE")
    with pytest.raises(KeyboardInterrupt):  # an interrupt is never an outcome: the trial is retried on resume
        evaluate(raising(KeyboardInterrupt()), "arch")


def test_an_unexpected_error_is_recorded_as_error_and_raised_unchanged():
    study = optuna.create_study(storage=InMemoryStorage())
    trial = study.ask()
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate_trial(study, trial, raising(ValueError("shape mismatch\nmore detail")), "arch")
    failed = study.get_trials()[0]
    assert status_of(failed) == "error" and failed.user_attrs["fail_reason"] == "ValueError: shape mismatch"
    with pytest.raises(EvaluationError, match="ValueError: shape mismatch"):
        evaluate(raising(ValueError("shape mismatch")), "arch")


def test_the_task_cache_keeps_at_most_its_bound(tiny_imagefolder):
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
    cache = TaskCache(data, max_tasks=2)
    training = TrainingEvaluator(cache, Protocol("proxy", TINY))
    first = training.task(0)
    assert training.task(0) is first and len(cache) == 1  # (protocol, seed) prepared once
    second = training.task(1)
    assert training.task(0) is first  # the most recently used stays
    training.task(2)
    assert len(cache) == 2 and training.task(1) is not second and training.task(1).config.seed == 1
    with pytest.raises(ValueError, match="max_tasks 0: at least 1"):
        TaskCache(data, max_tasks=0)


@pytest.fixture
def failing_trainings(monkeypatch):
    """Trainings replaced by a script: the first diverges, the second runs out of memory, the rest score 0.5 at
    once (each job's logic, not its learning)."""
    script = iter([Diverged("loss became nan at epoch 1, step 3"), RuntimeError(OOM_CPU)])

    def train(self, arch, report=None, keep_model=False, space=None):
        failure = next(script, None)
        if failure is not None:
            raise failure
        return ProxyResult(0.5, 1, 0.01, 0.01, 1.25, 16, None, 1.25)

    monkeypatch.setattr(ProxyTask, "train", train)


def test_an_ablation_records_a_diverged_and_an_out_of_memory_run_and_goes_on(tmp_path, tiny_imagefolder,
                                                                             failing_trainings, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"stem_width": 4, "resolution": 64, "num_classes": 3, "distillation": False,
                                "stages": [{"width": 8, "blocks": ["conv", "attn"]}]}))
    args = ["ablate", "placement", "--base", str(base), "--data", f"imagefolder:{tiny_imagefolder}", "--seeds", "1",
            "--proxy-epochs", "1", "--proxy-downscale", "4", "--proxy-subset", "60", "--out", str(tmp_path / "run")]
    main(args)
    from nas.ablation import load_ablation

    _, study = load_ablation(tmp_path / "run")
    statuses = sorted(status_of(t) for t in study.get_trials())
    assert statuses.count("diverged") == 1 and statuses.count("out of memory") == 1
    assert statuses.count("trained") == len(statuses) - 2 >= 1
    runs = pd.read_csv(tmp_path / "run" / "ablation.csv")
    assert len(runs) == len(statuses) - 1  # the diverged run is a result; the one out of memory is not
    assert runs["code"].notna().all() and runs["data"].notna().all()  # recorded before training, failed or not
    main(args)  # resumed: the run out of memory is trained again, the diverged one is final
    _, study = load_ablation(tmp_path / "run")
    assert sum(status_of(t) == "trained" for t in study.get_trials()) == len(statuses) - 1


def test_the_fidelity_benchmark_records_a_diverged_and_an_out_of_memory_run_and_goes_on(tmp_path, tiny_imagefolder,
                                                                                        failing_trainings):
    tiny = {"tiny": Protocol("tiny", ProxyConfig(epochs=1, downscale=14, subset=None, val_subset=None))}
    archs = [(n, VARIANTS[n].replace(num_classes=3)) for n in ("xs", "s", "l1")]
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
    journal, work, lines = tmp_path / "b.journal", [("tiny", 0, n) for n, _ in archs], []
    assert benchmark.run_benchmark(archs, data, journal, work, log=lines.append, protocols=tiny) == 3
    assert any("xs: diverged (loss became nan" in line for line in lines)
    assert any("s: out of memory (out of memory: " in line for line in lines)
    assert list(benchmark.results_frame(journal)["name"]) == ["l1"]
    assert benchmark.run_benchmark(archs, data, journal, work, log=lines.append, protocols=tiny) == 1  # s again
    assert list(benchmark.results_frame(journal)["name"]) == ["l1", "s"]


def test_the_proving_grounds_proxy_scores_record_a_diverged_and_an_out_of_memory_training(tmp_path, tiny_imagefolder,
                                                                                         failing_trainings):
    data = f"imagefolder:{tiny_imagefolder}"
    assert compute("proxy", tmp_path, data, n=3, protocol=ProxyConfig(downscale=1.0, epochs=1, subset=60),
                   log=lambda _: None) == (3, 3)
    records = [json.loads(line) for line in (tmp_path / "proxy.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["diverged", "out of memory", "done"]
    assert records[2]["val_accuracy"] == 0.5 and records[2]["loss_sum"] == 1.25


def test_a_search_trial_recorded_before_the_trial_path_reports_as_before():
    """Trials that named their training time ``train_seconds`` (before 2026-12-08) keep their column."""
    from nas.search.report import trials_frame

    study = optuna.create_study(storage=InMemoryStorage())
    for attrs in ({"train_seconds": 12.5, "train_cpu_seconds": 20.0}, {"seconds": 7.5, "cpu_seconds": 9.0}):
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"status": "trained", **attrs}))
    frame = trials_frame(study)
    assert list(frame["train_seconds"]) == [12.5, 7.5] and list(frame["train_cpu_seconds"]) == [20.0, 9.0]


def test_an_interrupt_settles_its_own_trial_so_the_next_run_retries_it_at_once(tmp_path):
    """Ctrl-C (or SIGTERM, made the same interrupt) inside a running trial: failed as interrupted and queued again
    by the process itself; the next run's recovery has nothing left to wait for."""
    import os
    import signal
    import time

    from nas.trials.storage import make_storage
    from nas.trials.study import Heartbeat, recover_interrupted, retry_of, settle_on_sigterm

    study = optuna.create_study(study_name="s", storage=make_storage(str(tmp_path / "study.journal")))
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    with pytest.raises(KeyboardInterrupt):
        with Heartbeat(study, trial):
            raise KeyboardInterrupt
    first, retry = study.get_trials()
    assert status_of(first) == "interrupted" and retry.state.name == "WAITING" and retry.params == first.params
    assert retry_of(retry) == first.number
    started = time.perf_counter()
    assert recover_interrupted(study) == [] and time.perf_counter() - started < 1.0  # no heartbeat to wait out
    previous = signal.getsignal(signal.SIGTERM)
    try:
        settle_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # (the handler raises at once)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupted_ray_run_stops_its_workers_and_settles_only_their_trials(tmp_path, monkeypatch):
    """Ctrl-C reaches the driver (not Tune's handler): it stops the workers it started, then fails and queues again
    the trials they were running, which a stopped worker cannot settle itself; another run's trial is left alone.
    Ray and Tune are replaced by stand-ins that do what a worker would: the logic, without a cluster."""
    import os

    import ray
    from ray import tune

    from nas.trials import ray as dispatch
    from nas.trials.storage import make_storage
    from nas.trials.study import RUN_ENV, Heartbeat

    url = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="s", storage=make_storage(url))
    space = {"x": optuna.distributions.IntDistribution(0, 9)}
    env, events = {}, []

    def start_worker(run: str) -> optuna.Trial:  # a worker's trial, then the worker stops without settling it
        monkeypatch.setenv(RUN_ENV, run)
        trial = study.ask(space)
        beat = Heartbeat(study, trial).__enter__()
        beat.stop.set()
        beat.thread.join()
        return trial

    class Tuner:
        def __init__(self, trainable, **kwargs):
            pass

        def fit(self):
            events.append(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER"))
            start_worker(env[RUN_ENV])
            raise KeyboardInterrupt

    other = start_worker("another-driver")
    monkeypatch.setattr(ray, "init", lambda **kwargs: env.update(kwargs["runtime_env"]["env_vars"]))
    monkeypatch.setattr(ray, "shutdown", lambda: events.append("stopped"))
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    with pytest.raises(KeyboardInterrupt):
        dispatch.run_tune(lambda config: None, {}, 1, {"cpu": 1}, 1, study, tmp_path, None, url)
    assert events[:2] == ["1", "stopped"] and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    states = {t.number: status_of(t) for t in study.get_trials()}
    assert states[other.number] == "running"
    assert states[1] == "interrupted" and study.get_trials()[2].state.name == "WAITING"
