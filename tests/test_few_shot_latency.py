"""Few-shot latency calibration on the benchmark tables (``nas.benchmarks.few_shot``) and its commands."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from swiftnas_testing.cli import run_nas_here

import nas.benchmarks.few_shot as few_shot
from nas.benchmarks import latency_table
from nas.benchmarks.few_shot import (MetaBasis, calibrate_few_shot, fit_blend, live_edges, predict_linear, ridge_loo,
                                     score_few_shot)

SMALL = ("silver_4210r", "samsung_a50", "1080ti_32")  # three of HELP's known devices: a basis built in a second


@pytest.fixture
def small_basis(monkeypatch):
    """The commands' basis, shrunk to three known devices of 300 rows each (the whole basis takes ~10 s)."""
    cache = {}

    def basis(space_name, device=None):
        if space_name not in cache:
            cache[space_name] = MetaBasis(space_name, SMALL, rows=300)
        return cache[space_name]

    monkeypatch.setattr(few_shot, "meta_basis", basis)
    return basis


def test_live_edges_follow_paths_from_the_cell_input_to_its_output():
    # only 1<-0 (conv) and 3<-2 (skip) compute, but node 2 is never reached: no path
    assert live_edges(["nor_conv_3x3", "none", "none", "none", "none", "skip_connect"]) == ([False] * 6, False)
    # 3<-0 alone: a path; 1<-0 leads nowhere
    assert live_edges(["avg_pool_3x3", "none", "none", "skip_connect", "none", "none"]) == \
        ([False, False, False, True, False, False], True)
    # 0 -> 1 -> 2 -> 3: every edge of the chain is live
    assert live_edges(["nor_conv_1x1", "none", "skip_connect", "none", "none", "nor_conv_3x3"]) == \
        ([True, False, True, False, False, True], True)


@pytest.mark.parametrize("log", [False, True])
def test_ridge_leave_one_out_error_equals_refitting_without_each_row(log):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    y = np.exp(x @ np.array([0.3, -0.2, 0.1, 0.0]) + 1.0 + rng.normal(scale=0.05, size=30))
    coef, strength, error = ridge_loo(x, y, log=log, strengths=(0.1,))
    errors = []
    for i in range(30):
        keep = np.arange(30) != i
        fitted, _, _ = ridge_loo(x[keep], y[keep], log=log, strengths=(0.1 * 30 / 29,))  # same penalty per row
        # the closed form standardises with all 30 rows; refitting re-standardises, so compare loosely
        predicted = x[i] @ fitted[:-1] + fitted[-1]
        errors.append(abs((np.exp(predicted) if log else predicted) / y[i] - 1))
    assert error == pytest.approx(np.mean(errors), rel=0.05)  # in-sample error is 17-19 % lower: it would fail
    predicted = x @ coef[:-1] + coef[-1]
    assert np.mean(np.abs((np.exp(predicted) if log else predicted) / y - 1)) < error  # in-sample beats held out


def test_a_blend_of_devices_recovers_non_negative_weights_and_the_intercept():
    rng = np.random.default_rng(1)
    basis = rng.uniform(1, 10, size=(12, 3))
    y = basis @ np.array([0.5, 0.0, 2.0]) + 0.7
    coef = fit_blend(basis, y)
    assert coef == pytest.approx([0.5, 0.0, 2.0, 0.7], abs=1e-6)
    assert predict_linear(coef, basis) == pytest.approx(y)


def test_ten_shots_of_an_unseen_device_rank_the_rest_of_the_table(small_basis):
    basis = small_basis("nb201")
    calibration = calibrate_few_shot("nb201", "gold_6226", 10, seed=0, basis=basis)
    scores = score_few_shot(calibration, "nb201")
    assert len(calibration.archs) == 10 and calibration.form == "devices"
    assert scores["spearman"] > 0.95 and scores["mape"] < 0.10  # the whole basis: 0.982, 4.6 % (RESULTS)
    # the work-only form needs no basis and ranks worse on this Xeon
    alone = calibrate_few_shot("nb201", "gold_6226", 10, seed=0, basis=basis, forms=("work",))
    assert score_few_shot(alone, "nb201")["spearman"] < scores["spearman"]
    # the forms are tried by leave-one-out on the shots only: the choice is the one of least error
    both = calibrate_few_shot("nb201", "gold_6226", 10, seed=0, basis=basis, forms=("devices", "work"))
    assert both.form == min(both.loo_mape, key=both.loo_mape.get)
    key = latency_table("nb201").index[5]
    assert calibration.predict(few_shot.benchmark_space("nb201").parse(key)) == calibration.predicted[key]


def test_a_device_of_the_basis_is_not_calibrated_on_itself(small_basis):
    with pytest.raises(few_shot.BenchmarkError, match="would predict itself"):
        calibrate_few_shot("nb201", "silver_4210r", 10, 0, basis=small_basis("nb201"))


def test_calibrate_and_evaluate_on_a_table_from_the_command_line(tmp_path, capsys, small_basis):
    out = tmp_path / "pred.csv"
    result = run_nas_here(capsys, "latency", "calibrate", "--table", "nb201", "--device-name", "fpga", "--shots",
                          "10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Spearman" in result.stdout
    frame = pd.read_csv(out, index_col=0)
    assert len(frame) == 15625 and frame.calibrated_on.sum() == 10
    bad = run_nas_here(capsys, "latency", "calibrate", "--table", "nb201", "--device-name", "iphone99", "--out",
                       str(tmp_path / "x.csv"))
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "iphone99" in bad.stderr
    assert not (tmp_path / "x.csv").exists()
    bad = run_nas_here(capsys, "latency", "calibrate", "--table", "nb201", "--device-name", "fpga", "--out",
                       str(tmp_path / "missing" / "x.csv"))
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "cannot write" in bad.stderr
    folder = tmp_path / "eval"
    result = run_nas_here(capsys, "latency", "evaluate", "--table", "nb201", "--devices", "fpga,eyeriss", "--shots",
                          "10,20", "--draws", "2", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    assert "| fpga | 10 |" in result.stdout and "| mean | 20 |" in result.stdout
    assert {p.name for p in folder.iterdir()} >= {"few_shot_nb201.csv", "few_shot_nb201.md", "few_shot_nb201.png"}
    assert len(pd.read_csv(folder / "few_shot_nb201.csv")) == 2 * 2 * 2
    bad = run_nas_here(capsys, "latency", "evaluate", "--table", "nb201", "--shots", "ten")
    assert bad.returncode != 0 and "--shots" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
