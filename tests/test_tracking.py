"""Tracking and analysis (issue 38, item 2): the study names its metrics, the search report adds Optuna's
importances and history (and the hypervolume history of a Pareto search), and ``--track tensorboard`` records
every trial and a retraining's curve as TensorBoard event files."""
from __future__ import annotations

import builtins
import json
import struct
from pathlib import Path

import optuna
import pytest

from nas.cli import main
from nas.search import load_run
from nas.search.analysis import importances

ARCH = {"resolution": 32, "num_classes": 10, "stages": [
    {"width": 8, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "attn", "mlp_ratio": 2}]}]}


def events(folder: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in a folder's event files (TFRecord framing, tensorboardX's protos)."""
    from tensorboardX.proto.event_pb2 import Event

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            size = struct.unpack("<Q", data[at:at + 8])[0]
            event = Event.FromString(data[at + 12:at + 12 + size])
            at += 12 + size + 4
            found += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return found


def search(out: Path, data: Path, space: Path, *extra: str) -> None:
    main(["search", "--latency-budget", "10ms", "--space", str(space), "--data", f"imagefolder:{data}", "--trials",
          "10", "--proxy-epochs", "1", "--proxy-downscale", "4", "--proxy-subset", "30", "--out", str(out), *extra])


def test_a_tracked_search_names_its_metric_records_every_trial_and_reports_what_mattered(
        tmp_path, tiny_imagefolder, tiny_space, capsys):
    out = tmp_path / "run"
    search(out, tiny_imagefolder, tiny_space, "--track", "tensorboard")
    _, study = load_run(out)
    assert study.metric_names == ["val_accuracy"]
    trained = [t for t in study.get_trials() if t.user_attrs.get("status") == "trained"]
    scalars = events(out / "tensorboard" / "search")
    accuracy = {step: value for tag, step, value in scalars if tag == "search/val_accuracy"}
    assert accuracy == pytest.approx({t.number: t.values[0] for t in trained})
    assert {tag for tag, _, _ in scalars} >= {"search/best_val_accuracy", "search/latency_ms"}
    assert len(list((out / "tensorboard" / "search").glob("number-*"))) == len(trained)  # one HParams run each
    report = (out / "report.md").read_text()
    assert "(history.png)" in report and (out / "history.png").stat().st_size > 0
    weights = importances(study)  # (PED-ANOVA needs a decision that varied across the trained trials)
    assert (out / "param_importances.png").exists() == ("(param_importances.png)" in report) == bool(weights)
    assert weights and all(f"| {name}" in report for name in weights)
    main(["report", str(out)])  # rewritten whole from the study: no trial twice
    assert sorted(step for tag, step, _ in events(out / "tensorboard" / "search") if tag == "search/val_accuracy") \
        == sorted(accuracy)


def test_a_pareto_search_names_both_metrics_and_draws_its_hypervolume(tmp_path, tiny_imagefolder, tiny_space):
    out = tmp_path / "run"
    search(out, tiny_imagefolder, tiny_space, "--objective", "pareto", "--sampler", "nsga2")
    _, study = load_run(out)
    assert study.metric_names == ["val_accuracy", "latency_ms"]
    assert (out / "hypervolume.png").is_file() and "(hypervolume.png)" in (out / "report.md").read_text()
    assert not (out / "tensorboard").exists()  # not asked


def test_a_tracked_retraining_records_its_curve(tmp_path, tiny_imagefolder):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    out = tmp_path / "run"
    main(["retrain", str(arch), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(out), "--epochs", "2",
          "--batch-size", "16", "--loader-workers", "0", "--export", "none", "--track", "tensorboard"])
    scalars = events(out / "tensorboard" / "training")
    assert sorted(step for tag, step, _ in scalars if tag == "training/val_top1") == [1, 2]
    assert {"training/train_loss", "training/ema_val_top1"} <= {tag for tag, _, _ in scalars}


def test_tracking_without_its_package_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def without_tensorboardx(name, *args, **kwargs):
        if name == "tensorboardX":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_tensorboardx)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--latency-budget", "1ms", "--track", "tensorboard", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "pip install 'swiftnas[track]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_metric_names_are_given_to_a_study_recorded_without_them(tmp_path):
    from nas.trials.study import open_study

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study = open_study("s", storage, {"a": 1}, ValueError)
    assert study.metric_names == ["val_accuracy"]


def test_an_ablations_runs_are_recorded_with_variant_and_seed(tmp_path):
    """What an ablation's outputs pass (its runs table): each run's val accuracy, and its variant and seed as
    HParams; a run not scored (NaN) is left out."""
    import pandas as pd

    from nas.tracking import log_runs

    runs = pd.DataFrame({"variant": ["base", "base", "no-attn", "no-attn"], "seed": [0, 1, 0, 1],
                         "val_accuracy": [0.8, 0.82, 0.78, float("nan")]})
    rows = runs.reset_index(drop=True).assign(run=lambda f: f.index).to_dict("records")
    folder = log_runs(tmp_path, "ablation", rows, "val_accuracy", "run", ["variant", "seed"])
    assert [step for tag, step, _ in events(folder) if tag == "ablation/val_accuracy"] == [0, 1, 2]
    assert len(list(folder.glob("run-*"))) == 3
