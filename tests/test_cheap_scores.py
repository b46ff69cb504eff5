"""Cheap scores against NAS-Bench-201's 200-epoch truth (``nas.proving.scores``): computing, resuming, judging."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nas.benchmarks import nb201_accuracies
from nas.identity import ProxyConfig
from nas.proving.run import ProvingError
from nas.proving.score_report import write_report
from nas.proving.scores import DATASET, compute, correlation, sample, standard_ranks

TINY = ProxyConfig(epochs=1, downscale=1.0, subset=None, val_subset=None, batch_size=16, bn_images=16)


def test_the_sample_is_a_fixed_permutation_that_larger_samples_extend():
    assert sample(5) == sample(50)[:5] and len(set(sample(300))) == 300
    with pytest.raises(ProvingError, match="sample size 0"):
        sample(0)


def test_scores_are_computed_resumably_and_a_cut_line_is_scored_again(tmp_path, tiny_imagefolder):
    data = f"imagefolder:{tiny_imagefolder}"
    assert compute("zero-cost", tmp_path, data, n=3, log=lambda _: None) == (3, 3)
    path = tmp_path / "zero_cost.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["arch"] for r in records] == sample(3)
    assert all(set(r) >= {"synflow", "jacob_cov", "snip", "grad_norm", "seconds"} for r in records)
    text = path.read_text()
    path.write_text(text[:-40])  # a kill mid-write: the last line is cut
    assert compute("zero-cost", tmp_path, data, n=3, log=lambda _: None) == (3, 3)
    again = [json.loads(line) for line in path.read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in again] == [strip(r) for r in records]  # deterministic: the same scores again

    assert compute("proxy", tmp_path, data, n=1, protocol=TINY, log=lambda _: None) == (1, 1)
    trained = json.loads((tmp_path / "proxy.jsonl").read_text())
    assert trained["status"] == "done" and 0 <= trained["val_accuracy"] <= 1 and trained["loss_sum"] > 0
    with pytest.raises(ProvingError, match="another protocol"):
        compute("proxy", tmp_path, data, n=2, protocol=ProxyConfig(downscale=1.0, epochs=2), log=lambda _: None)
    with pytest.raises(ProvingError, match="--part 2/2"):
        compute("zero-cost", tmp_path, data, n=3, part=(2, 2), log=lambda _: None)


def test_correlations_and_their_intervals():
    truth = np.arange(50.0)
    perfect = correlation(truth * 2, truth, resamples=50)
    assert perfect.spearman == pytest.approx(1.0) and perfect.spearman_ci == pytest.approx((1.0, 1.0))
    assert perfect.kendall == pytest.approx(1.0)
    assert correlation(-truth, truth, resamples=50).spearman == pytest.approx(-1.0)
    # a score that could not be computed (a diverged training, a disconnected cell) ranks lowest
    score = truth.copy()
    score[0] = np.nan
    assert correlation(score, truth, resamples=10).spearman == pytest.approx(1.0)
    assert standard_ranks(np.array([3.0, np.nan, 1.0])).tolist() == [1.0, 0.0, 0.5]


def test_the_report_judges_what_the_folder_holds(tmp_path):
    """A folder whose synflow is the truth itself and whose jacob_cov is its negative: the report must say so."""
    table = nb201_accuracies()
    rng = np.random.default_rng(0)
    with (tmp_path / "zero_cost.jsonl").open("w") as handle:
        for key in sample(40):
            truth = float(table.at[key, DATASET.final])
            handle.write(json.dumps({"arch": key, "protocol": {"seed": 0}, "synflow": truth, "jacob_cov": -truth,
                                     "snip": float(rng.normal()), "grad_norm": float(rng.normal()),
                                     "seconds": {"synflow": 0.1}}) + "\n")
    report = write_report(tmp_path, resamples=20).read_text()
    assert "| synflow | 40 | 1.000 [1.000, 1.000]" in report
    assert "| jacob_cov | 40 | -1.000 [-1.000, -1.000]" in report
    assert "synflow + jacob_cov" in report and "our proxy not run" in report
    assert "| 12-epoch | 0.823" in report  # the whole space's figure, as SOURCES.md records it
    assert (tmp_path / "scores.png").stat().st_size > 0
    assert not math.isnan(float(report.split("| params | 40 | ")[1].split(" ")[0]))
