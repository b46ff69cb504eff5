"""The fidelity benchmark: its statistics on known answers, its table, and a tiny resumable run."""
import dataclasses
import math

import numpy as np
import optuna
import pandas as pd
import pytest

from nas.data import load_data
from nas.fidelity import benchmark
from nas.fidelity.report import score_report, scorer_table
from nas.fidelity.scoring import agreement, best_found, latency_bins, tau_b, tau_within_bins, top_k_overlap


def test_tau_b_bins_and_top_k_on_known_answers():
    x = np.arange(10.0)
    assert tau_b(x, x) == pytest.approx(1) and tau_b(x, -x) == pytest.approx(-1)
    assert tau_b(np.array([1, 1, 2, 3.0]), np.array([1, 2, 3, 4.0])) == pytest.approx(0.9128709)  # tau-b with a tie
    assert latency_bins(np.array([0.5, 0.55, 0.61, 0.75])).tolist() == [0, 0, 1, 2]
    # within each bin the order agrees; across bins it is reversed
    latency = np.array([0.50, 0.51, 0.52, 0.53, 1.00, 1.01, 1.02, 1.03])
    score = np.array([5, 6, 7, 8, 1, 2, 3, 4.0])
    truth = np.array([1, 2, 3, 4, 5, 6, 7, 8.0])
    assert tau_within_bins(score, truth, latency_bins(latency)) == pytest.approx(1)
    assert tau_b(score, truth) < 0
    assert top_k_overlap(score, truth, 2) == 0 and top_k_overlap(truth, truth, 5) == 1
    assert math.isnan(top_k_overlap(score[:3], truth[:3], 5))
    # the reference's best three are 8, 7, 6 (positions 7, 6, 5); the score's best five are positions 3, 2, 1, 0, 7
    assert best_found(score, truth) == 1 and best_found(truth, truth) == 3 and best_found(-truth, truth) == 0
    assert agreement("s", score, truth, latency, n_boot=0).top3_in_top5 == 1


def test_agreement_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    noisy = truth + rng.normal(scale=0.7, size=40)
    a = agreement("noisy", noisy, truth, rng.uniform(0.5, 1.5, size=40), n_boot=500)
    assert a.n == 40 and a.tau_ci[0] < a.tau < a.tau_ci[1] and 0.2 < a.tau < 0.9


def synthetic_results(n=30):
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.4, 0.7, n)
    rows = []
    for i in range(n):
        base = {"name": f"a{i:02d}", "params": int(1e6 * (1 + i)), "macs": int(1e8 * (1 + (i * 7) % n)),
                "latency_iphone14_ms": 0.5 + i / n, "cpu_seconds": 10.0}
        rows.append({**base, "protocol": "reference", "seed": 0, "val_accuracy": truth[i], "test_accuracy": truth[i]})
        if i % 3 == 0:
            rows.append({**base, "protocol": "reference", "seed": 1, "val_accuracy": truth[i] + rng.normal(0, 0.01),
                         "test_accuracy": truth[i]})
        rows.append({**base, "protocol": "proxy-good", "seed": 0, "val_accuracy": truth[i] / 2, "test_accuracy": None})
        rows.append({**base, "protocol": "proxy-random", "seed": 0, "val_accuracy": rng.random(), "test_accuracy": None})
    return pd.DataFrame(rows)


def test_scorer_table_ranks_scorers_against_the_reference(tmp_path):
    table = scorer_table(synthetic_results(), n_boot=200).set_index("scorer")
    assert table.loc["proxy-good", "tau"] == pytest.approx(1) and table.loc["proxy-good", "top5_overlap"] == 1
    assert abs(table.loc["proxy-random", "tau"]) < 0.4
    assert table.loc["reference seed 1 (noise ceiling)", "n"] == 10
    assert {"#params", "MACs"} <= set(table.index)
    results = tmp_path / "results.csv"
    synthetic_results().to_csv(results, index=False)
    scores = tmp_path / "mine.csv"
    pd.DataFrame({"name": [f"a{i:02d}" for i in range(30)], "score": range(30)}).to_csv(scores, index=False)
    text = score_report(results, scores, n_boot=100)
    assert "| mine " in text and "noise ceiling" in text
    pd.DataFrame({"arch": ["a00"], "score": [1]}).to_csv(scores, index=False)
    with pytest.raises(ValueError, match="missing column"):
        score_report(results, scores, n_boot=100)


def test_every_scorer_is_compared_with_the_default_proxy_on_the_same_resamples():
    from nas.fidelity.report import DEFAULT

    results = synthetic_results().replace({"protocol": {"proxy-good": DEFAULT}})
    table = scorer_table(results, n_boot=300).set_index("scorer")
    assert table.loc[DEFAULT, "vs_default"] == 0 and table.loc[DEFAULT, "vs_default_hi"] == 0
    worse = table.loc["proxy-random"]
    assert worse.vs_default == pytest.approx(worse.tau - 1) and worse.vs_default_hi < 0  # resolved: it is worse
    assert pd.isna(table.loc["reference seed 1 (noise ceiling)", "vs_default"])  # other architectures: not paired


def test_selection_is_stratified_over_latency_and_holds_the_released_variants():
    # the family's line on iPhone 14 prices the default space from about 0.55 ms; XS 0.69 ms and S 0.83 ms
    archs = benchmark.select_architectures(n_bins=4, per_bin=2, pool=3000, lo_ms=0.6)
    names = [n for n, _ in archs]
    assert len(archs) == 8 and {"xs", "s"} <= set(names)  # both predicted within 0.6-1.5 ms on iPhone 14
    assert len({a.digest() for _, a in archs}) == 8


def test_a_tiny_benchmark_runs_resumes_and_recovers_an_interrupted_trial(tmp_path, tiny_imagefolder, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    tiny = {"reference": benchmark.Protocol("reference", benchmark.ProxyConfig(
                epochs=1, downscale=14, subset=None, val_subset=None), reads_test=True),
            "proxy": benchmark.Protocol("proxy", benchmark.ProxyConfig(epochs=1, downscale=14, subset=30))}
    monkeypatch.setattr(benchmark, "PROTOCOLS", tiny)
    monkeypatch.setattr(benchmark, "REFERENCE", tiny["reference"])
    from swiftformer import VARIANTS

    archs = [("xs", VARIANTS["xs"].replace(num_classes=3)), ("s", VARIANTS["s"].replace(num_classes=3))]
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
    journal = tmp_path / "studies.journal"
    work = benchmark.default_work(archs, second_seed_every=2)
    assert work[:2] == [("reference", 0, work[0][2]), ("proxy", 0, work[0][2])] and len(work) == 5
    # a trial left running by a killed process, whose heartbeat stopped long ago
    storage = benchmark.make_storage(str(journal))
    study = optuna.create_study(study_name="reference-seed0", storage=storage, direction="maximize")
    study.enqueue_trial(benchmark.search_spaces.load_space("swiftformer").trial_params(
        dataclasses.replace(archs[0][1], num_classes=1000)), user_attrs={"name": work[0][2]})
    killed = study.ask()
    study._storage.set_trial_system_attr(killed._trial_id, "nas:heartbeat", 0.0)
    lines: list[str] = []
    assert benchmark.run_benchmark(archs, data, journal, work, log=lines.append) == 5
    assert sum("epoch 1/" in line for line in lines) == 5 and sum(line.startswith("[") for line in lines) == 5
    assert benchmark.run_benchmark(archs, data, journal, work, log=lambda s: None) == 0  # all finished
    frame = benchmark.results_frame(journal)
    assert len(frame) == 5 and frame.groupby(["protocol", "seed", "name"]).size().max() == 1
    ref = frame[frame["protocol"] == "reference"]
    assert ref["test_accuracy"].notna().all() and frame[frame["protocol"] == "proxy"]["test_accuracy"].isna().all()
    assert (frame["resolution"] == 16).all() and (frame["latency_iphone14_ms"] > 0).all()
    reloaded = optuna.load_study(study_name="reference-seed0", storage=storage)
    assert reloaded.trials[killed.number].state == optuna.trial.TrialState.FAIL
