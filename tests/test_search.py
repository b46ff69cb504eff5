"""The search end to end, on a tiny generated dataset and space so that each run takes seconds."""
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import torch

from nas.cli import main
from nas.latency import load_device
from swiftnas_testing.cli import run_nas_here
from nas.training import ProxyConfig, ProxyDiverged
from nas.search import load_run
from nas.search import SearchConfig, SearchError, build_context, open_study, run_step, status_of, worker_loop
from swiftformer import SwiftFormerArch

BUDGET = "0.4777ms"  # about half of the tiny space is over it on iphone14


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def search_args(out, data, space, *extra, trials=4, epochs=1, subset=60):
    return ["search", "--latency-budget", BUDGET, "--space", str(space), "--data", f"imagefolder:{data}",
            "--trials", str(trials), "--proxy-epochs", str(epochs), "--proxy-downscale", "4",
            "--proxy-subset", str(subset), "--out", str(out), *extra]


def trials_of(out):
    return pd.read_csv(out / "trials.csv")


def test_search_writes_every_output_and_never_trains_over_budget(tmp_path, tiny_imagefolder, tiny_space, capsys):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, trials=5))
    printed = capsys.readouterr()
    for name in ("trials.csv", "trials.parquet", "pareto.json", "best_arch.json", "accuracy_vs_latency.png",
                 "report.md", "study.db"):
        assert (out / name).exists(), name
    df = trials_of(out)
    assert (df["status"] == "trained").sum() + (df["status"] == "pruned").sum() == 5
    rejected = df[df["status"] == "rejected"]
    assert len(rejected) > 0 and (rejected["latency_ms"] > 0.4777).all() and rejected["train_seconds"].isna().all()
    assert (df.loc[df["status"] == "trained", "latency_ms"] <= 0.4777).all()
    assert f"over budget, rejected before training: {len(rejected)}" in printed.out
    assert "reference XS is outside space 'tiny'" in printed.err and "trained |" in printed.err
    best = SwiftFormerArch.load(out / "best_arch.json")
    assert best.num_classes == 3 and best.resolution == 64
    assert pd.read_parquet(out / "trials.parquet").shape == df.shape
    front = json.loads((out / "pareto.json").read_text())
    assert front and [p["latency_ms"] for p in front] == sorted(p["latency_ms"] for p in front)
    assert "Pareto front" in (out / "report.md").read_text()


def test_rerun_resumes_and_more_trials_continue(tmp_path, tiny_imagefolder, tiny_space, capsys):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, trials=3))
    first = trials_of(out)
    main(search_args(out, tiny_imagefolder, tiny_space, trials=3))  # nothing left to do
    assert len(trials_of(out)) == len(first)
    main(search_args(out, tiny_imagefolder, tiny_space, trials=5))
    again = trials_of(out)
    assert again["status"].isin(["trained", "pruned"]).sum() == 5
    pd.testing.assert_frame_equal(again.iloc[:len(first)][["number", "architecture", "val_accuracy"]],
                                  first[["number", "architecture", "val_accuracy"]])


def test_a_resumed_search_proposes_new_architectures_not_its_old_sequence(tmp_path, tiny_imagefolder):
    """With a fresh study's seed, a resumed run would replay every proposal it already has (a duplicate row each) and
    past 200 of them stop as if the space were exhausted."""
    space = tmp_path / "wide.yaml"  # ~10^4 architectures: 8 random draws repeat one only by replaying
    space.write_text("name: wide\nresolution: [64]\nstages:\n"
                     "  - {depth: [1, 2, 3], width: [8, 16, 24], mlp_ratio: [2, 3, 4], attention: mask}\n"
                     "  - {depth: [1, 2, 3], width: [16, 24, 32], mlp_ratio: [2, 3, 4], attention: mask}\n")
    out = tmp_path / "run"
    for trials in (4, 8):
        main(["search", "--latency-budget", "10ms", "--space", str(space), "--data", f"imagefolder:{tiny_imagefolder}",
              "--trials", str(trials), "--proxy-epochs", "1", "--proxy-downscale", "4", "--proxy-subset", "30",
              "--sampler", "random", "--out", str(out)])
    df = trials_of(out)
    assert (df["status"] == "trained").sum() == 8 and (df["status"] == "duplicate").sum() == 0


def test_changed_settings_do_not_mix_into_a_study(tmp_path, tiny_imagefolder, tiny_space):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, "--study", "s", trials=1))
    args = search_args(out, tiny_imagefolder, tiny_space, "--study", "s", trials=1)
    args[args.index("--proxy-epochs") + 1] = "2"
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "was run with other settings (proxy)" in result.stderr


def test_a_recalibrated_predictor_does_not_mix_into_a_study(tmp_path, tiny_imagefolder, tiny_space, capsys):
    predictor = tmp_path / "phone.json"
    shipped = load_device("iphone14").to_dict()
    predictor.write_text(json.dumps(shipped))
    out = tmp_path / "run"
    args = search_args(out, tiny_imagefolder, tiny_space, "--predictor", str(predictor), trials=1)
    assert run_nas_here(capsys, *args).returncode == 0
    shipped["costs"] = {k: 2 * v for k, v in shipped["costs"].items()}  # the same phone, recalibrated
    predictor.write_text(json.dumps(shipped))
    result = run_nas_here(capsys, *args)
    assert result.returncode == 2 and "was priced by another iphone14 predictor" in result.stderr
    assert "Traceback" not in result.stderr


def test_killed_mid_trial_resumes_and_retries_the_architecture(tmp_path, tiny_imagefolder, tiny_space):
    out = tmp_path / "run"
    # a trial trains ~100 epochs (a few seconds); it is killed in its first 20, so it cannot finish in between
    args = search_args(out, tiny_imagefolder, tiny_space, trials=4, epochs=100, subset=120)
    process = subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    storage = f"sqlite:///{out.resolve() / 'study.db'}"
    deadline, running = time.time() + 180, None
    while time.time() < deadline and running is None:
        time.sleep(0.1)
        try:
            study = optuna.load_study(study_name="tiny-iphone14-0p4777ms", storage=storage)
            trials = study.get_trials()
        except Exception:  # noqa: BLE001 (the study may not exist yet)
            continue
        done = [t for t in trials if status_of(t) in ("trained", "pruned")]
        running = next((t for t in trials if done and t.state.name == "RUNNING"
                        and 1 <= len(t.intermediate_values) <= 20), None)
    assert running is not None, "no trial was caught early in its training"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert study._storage.get_trial(running._trial_id).state.name == "RUNNING", "the trial finished before the kill"
    finished_before = {t.number: t.values for t in study.get_trials() if status_of(t) in ("trained", "pruned")}
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"trial(s) #{running.number} were interrupted" in result.stderr
    df = trials_of(out)
    killed = df[df["number"] == running.number].iloc[0]
    assert killed["status"] == "interrupted"
    retry = df[df["retry_of"] == running.number]
    assert len(retry) == 1 and retry.iloc[0]["architecture"] == running.user_attrs["summary"]
    assert retry.iloc[0]["status"] in ("trained", "pruned")
    study = optuna.load_study(study_name="tiny-iphone14-0p4777ms", storage=storage)
    assert {n: study.trials[n].values for n in finished_before} == finished_before  # finished work kept
    assert df["status"].isin(["trained", "pruned"]).sum() == 4


def test_parallel_workers_share_one_journal_without_duplicate_work(tmp_path, tiny_imagefolder, tiny_space):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, "--workers", "2", trials=6))
    assert (out / "study.journal").exists() and not (out / "study.db").exists()
    df = trials_of(out)
    worked = df[df["status"].isin(["trained", "pruned"])]
    assert 6 <= len(worked) <= 7  # a worker may start one more while the other finishes the last
    assert worked["digest"].is_unique and set(worked["worker"]) == {"w0", "w1"}


def test_sqlite_refuses_parallel_writers(tmp_path, tiny_imagefolder, tiny_space):
    args = search_args(tmp_path / "run", tiny_imagefolder, tiny_space, "--workers", "2", "--storage",
                       f"sqlite:///{tmp_path / 'x.db'}")
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "does not survive parallel writers" in result.stderr


@pytest.mark.slow
def test_ray_backend_trains_on_a_local_ray(tmp_path, tiny_imagefolder, tiny_space):
    """With paths relative to where the command runs, as a user types them (Tune runs each trial elsewhere)."""
    out = tmp_path / "run"
    args = search_args("run", os.path.relpath(tiny_imagefolder, tmp_path), tiny_space.name, "--backend", "ray",
                       trials=2)
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                                               "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-3000:]
    df = trials_of(out)
    assert df["status"].isin(["trained", "pruned"]).sum() == 2 and (out / "best_arch.json").exists()
    assert (out / "study.journal").exists()  # (resuming on Ray: tests/test_ray_cluster.py)


def test_diverged_and_out_of_memory_trials_fail_with_their_reason(tmp_path, tiny_imagefolder, tiny_space,
                                                                   monkeypatch):
    cfg = SearchConfig(budget_ms=0.4777, space=str(tiny_space), data=f"imagefolder:{tiny_imagefolder}", trials=4,
                       proxy=ProxyConfig(epochs=1, downscale=4, subset=60), out=str(tmp_path / "run"))
    ctx = build_context(cfg, quiet=True)
    study = open_study(cfg)
    real_train = ctx.task.train
    failures = iter([ProxyDiverged("loss became nan at epoch 1, step 3"), torch.OutOfMemoryError("CUDA out of memory"),
                     RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")])

    def failing(arch, report=None, **_):
        raise next(failures)

    monkeypatch.setattr(ctx.task, "train", failing)
    statuses = []
    while len(statuses) < 3:
        status, trial = run_step(study, ctx)
        if status in ("diverged", "out of memory"):
            statuses.append((status, trial.user_attrs["fail_reason"], trial.state.name))
    assert statuses == [("diverged", "loss became nan at epoch 1, step 3", "FAIL"),
                        ("out of memory", "out of memory: CUDA out of memory", "FAIL"),
                        ("out of memory", "out of memory: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                          "can't allocate memory", "FAIL")]
    monkeypatch.setattr(ctx.task, "train", real_train)
    worker_loop(cfg, 0, ctx)  # the search goes on past them
    trained = [t for t in study.get_trials() if status_of(t) in ("trained", "pruned")]
    assert len(trained) >= 1


@pytest.mark.parametrize("objective, sampler", [("pareto", "nsga2"), ("pareto", "tpe"), ("constrained", "evolution"),
                                                ("constrained", "random")])
def test_objectives_and_samplers(tmp_path, tiny_imagefolder, tiny_space, objective, sampler):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, "--objective", objective, "--sampler", sampler,
                     trials=3 if sampler != "evolution" else 12))
    cfg, study = load_run(out)
    assert len(study.directions) == (2 if objective == "pareto" else 1) and cfg.sampler == sampler
    df = trials_of(out)
    assert df["status"].isin(["trained", "pruned"]).sum() >= 3
    if sampler == "evolution":
        assert study.get_trials()[-1].user_attrs.get("parent") is not None or len(df) > 12


def test_report_command_redraws(tmp_path, tiny_imagefolder, tiny_space, capsys):
    out = tmp_path / "run"
    main(search_args(out, tiny_imagefolder, tiny_space, trials=2))
    (out / "accuracy_vs_latency.png").unlink()
    capsys.readouterr()
    main(["report", str(out)])
    assert "over budget, rejected before training" in capsys.readouterr().out
    assert (out / "accuracy_vs_latency.png").exists()


@pytest.mark.parametrize("args, message", [
    (["search", "--latency-budget", "fast"], "latency budget 'fast' is not a positive number"),
    (["search", "--latency-budget", "-1ms"], "latency budget '-1ms' is not a positive number"),
    (["search", "--latency-budget", "0"], "latency budget '0' has no unit"),
    (["search", "--latency-budget", "1kg"], "latency budget '1kg' has unit 'kg'"),
    (["search", "--latency-budget", "1ms", "--data", "imagefolder:/nonexistent"], "no such directory"),
    (["search", "--latency-budget", "1ms", "--space", "nope"], "unknown space 'nope'"),
    (["search", "--latency-budget", "1ms", "--timeout", "soon"], "duration 'soon'"),
    (["report", "/nonexistent/run"], "holds no search"),
    (["search", "--latency-budget", "1ms", "--train-device", "tpu"], "unknown training device 'tpu'"),
    (["search", "--latency-budget", "1ms", "--proxy-downscale", "0.5"], "expected a number of at least 1"),
    (["search", "--latency-budget", "1ms", "--val-fraction", "1.5"], "expected a fraction between 0 and 1"),
    (["search", "--latency-budget", "1ms", "--latency-margin", "wide"], "invalid choice: 'wide'"),
])
def test_bad_search_input_is_one_line(tmp_path, args, message, capsys):
    result = run_nas_here(capsys, *args, *(["--out", str(tmp_path / "o")] if args[0] == "search" else []))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_an_exhausted_space_stops_instead_of_spinning(tmp_path, tiny_imagefolder, capsys):
    space = tmp_path / "one.yaml"
    space.write_text("name: one\nresolution: [64]\nstages:\n  - {depth: [1], width: [8], attn_blocks: [0]}\n"
                     "  - {depth: [1], width: [16], attn_blocks: [0]}\n")
    main(["search", "--latency-budget", "10ms", "--space", str(space), "--data", f"imagefolder:{tiny_imagefolder}",
          "--trials", "3", "--proxy-epochs", "1", "--proxy-downscale", "4", "--proxy-subset", "60",
          "--out", str(tmp_path / "run")])
    assert "looks exhausted; stopping" in capsys.readouterr().err
    df = trials_of(tmp_path / "run")
    assert (df["status"] == "trained").sum() == 1 and (df["status"] == "duplicate").sum() >= 200


def test_a_crashing_trial_is_recorded_and_not_retried(tmp_path, tiny_imagefolder, tiny_space, monkeypatch):
    from nas.search import recover_interrupted

    cfg = SearchConfig(budget_ms=0.4777, space=str(tiny_space), data=f"imagefolder:{tiny_imagefolder}", trials=2,
                       proxy=ProxyConfig(epochs=1, downscale=4, subset=60), out=str(tmp_path / "run"))
    ctx = build_context(cfg, quiet=True)
    study = open_study(cfg)

    def crash(arch, report=None, **_):
        raise ValueError("shape mismatch somewhere")

    monkeypatch.setattr(ctx.task, "train", crash)
    with pytest.raises(ValueError, match="shape mismatch"):
        while True:
            run_step(study, ctx)
    crashed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(crashed) == 1 and status_of(crashed[0]) == "error"
    assert crashed[0].user_attrs["fail_reason"] == "ValueError: shape mismatch somewhere"
    assert recover_interrupted(study, wait=False) == [] and not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_report_of_an_empty_study(tmp_path):
    from nas.search import write_outputs

    cfg = SearchConfig(budget_ms=1.0, out=str(tmp_path))
    study = optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'study.db'}")
    summary = write_outputs(tmp_path, study, cfg)
    assert "over budget, rejected before training: 0" in summary and (tmp_path / "trials.csv").exists()


def test_the_band_is_described_as_what_it_is():
    """The searched family's band is the released variants' held-out errors (4 points, coverage at most 60 %), not
    a band "measured on unseen families"."""
    from nas.search.report import _band_text

    text = _band_text(SearchConfig(budget_ms=1.0))
    assert "within family swiftformer" in text and "(n-1)/(n+1) = 60%" in text and "unseen" not in text


def test_a_study_trains_in_one_precision(tiny_imagefolder, tmp_path):
    """A process that would train in another precision than the study's (bf16 on a GPU, fp32 on a CPU) is refused
    with one line, before it trains anything."""
    import optuna
    from optuna.storages import InMemoryStorage

    from nas.search.context import check_same_precision
    from nas.trials.study import other_precision

    study = optuna.create_study(storage=InMemoryStorage(), direction="maximize")
    assert other_precision(study, "bf16") is None and study.user_attrs["nas_precision"] == "bf16"
    assert other_precision(study, "bf16") is None and other_precision(study, "fp32") == "bf16"
    cfg = SearchConfig(budget_ms=1.0, data=f"imagefolder:{tiny_imagefolder}", out=str(tmp_path / "s"))
    ctx = build_context(cfg, quiet=True)  # trains on the CPU: fp32
    with pytest.raises(SearchError, match="trains in bf16; this process would train in fp32"):
        check_same_precision(study, ctx)
