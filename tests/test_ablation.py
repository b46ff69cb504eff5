"""Ablations: variants derived from a base, grids, paired statistics, and the job end to end on tiny data."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest

from nas.ablation import AblationConfig, AblationError, GridError, VariantError, parse_grid
from nas.ablation import stats
from nas.ablation.grid import grid_variants
from nas.ablation.variants import placement_variants, type_variants
from nas.cli import main
from swiftformer import VARIANTS, SwiftFormerArch

TINY_BASE = {"stem_width": 4, "resolution": 64, "num_classes": 3, "distillation": False,
             "stages": [{"width": 8, "blocks": ["conv", "attn"]}, {"width": 16, "blocks": ["conv", "attn"]}]}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def tiny_base(tmp_path):
    path = tmp_path / "tiny_base.json"
    path.write_text(json.dumps(TINY_BASE))
    return path


def ablate_args(what, out, data, base, *extra, seeds=2, epochs=1, subset=60):
    return ["ablate", what, "--base", str(base), "--data", f"imagefolder:{data}", "--seeds", str(seeds),
            "--proxy-epochs", str(epochs), "--proxy-downscale", "4", "--proxy-subset", str(subset),
            "--out", str(out), *extra]


# ------------------------------------------------------------------------------------------------ variants
def test_xs_placement_variants_are_exactly_these_and_deduplicated():
    variants = placement_variants(VARIANTS["xs"])
    labels = {v.name: v.aliases for v in variants}
    assert labels == {
        "released": ("all", "s1-one", "s2-one", "s3-one", "s4-one", "s1-last", "s2-last", "s3-last", "s4-last"),
        "none": (), "only-s1": (), "only-s2": (), "only-s3": (), "only-s4": ("from-s4",), "from-s2": (),
        "from-s3": (), "s1-two": (), "s2-two": (), "s3-two": (), "s4-two": (), "s1-first": (), "s2-first": (),
        "s3-first": (), "s4-first": ()}
    summaries = {v.name: v.arch.summary() for v in variants}
    assert summaries["released"] == VARIANTS["xs"].summary()
    assert summaries["none"] == "s24-48:CCC-56:CCC-112:CCCCCC-220:CCCC"
    assert summaries["from-s3"] == "s24-48:CCC-56:CCC-112:CCCCCA-220:CCCA"
    assert summaries["s3-two"] == "s24-48:CCA-56:CCA-112:CCCCAA-220:CCCA"
    assert summaries["s4-first"] == "s24-48:CCA-56:CCA-112:CCCCCA-220:ACCC"
    assert len({v.arch.digest() for v in variants}) == len(variants) == 16


def test_one_block_stages_get_no_two_or_first_variants():
    base = SwiftFormerArch.from_dict({**TINY_BASE, "stages": [{"width": 8, "blocks": ["attn"]},
                                                             {"width": 16, "blocks": ["conv", "conv", "conv"]}]})
    names = {v.name for v in placement_variants(base)} | {a for v in placement_variants(base) for a in v.aliases}
    assert not {"s1-two", "s1-first", "s1-one"} & names
    only_s2 = next(v for v in placement_variants(base) if v.name == "only-s2")
    assert only_s2.arch.summary() == "s4-8:C-16:CCA@64"  # a stage without attention gets one, last


def test_type_variants_fill_the_attention_positions_with_each_kind():
    variants = type_variants(VARIANTS["xs"])
    assert [(v.name, v.aliases) for v in variants] == [("attn", ("released",)), ("mhsa", ()), ("conv", ())]
    assert variants[1].arch.summary() == "s24-48:CCM-56:CCM-112:CCCCCM-220:CCCM"
    assert variants[2].arch.summary() == "s24-48:CCC-56:CCC-112:CCCCCC-220:CCCC"
    # a base whose attention is already MHSA: the additive variant is derived from it, MHSA is the base
    mhsa_base = variants[1].arch
    again = type_variants(mhsa_base, ["attn", "mhsa"])
    assert [(v.name, v.aliases) for v in again] == [("attn", ()), ("mhsa", ("released",))]
    assert again[0].arch == VARIANTS["xs"]
    with pytest.raises(VariantError, match=r"block kind 'lstm' is unknown; accepted: conv, attn, mhsa"):
        type_variants(VARIANTS["xs"], ["attn", "lstm"])
    no_attention = SwiftFormerArch.standard([1, 1], [8, 16], attn_blocks=0)
    with pytest.raises(VariantError, match="no attention block"):
        type_variants(no_attention)


# -------------------------------------------------------------------------------------------------- grids
def test_grid_cells_are_the_product_of_factors_with_the_base_first():
    grid = parse_grid({"base": "swiftformer:xs", "factors": {"s2.attn": [0, 1], "s4.attn": [0, 1, 2],
                                                             "s3.position": ["last"]}})
    assert grid.cells == 6
    variants = grid_variants(grid, VARIANTS["xs"])
    assert variants[0].name == "base" and variants[0].aliases == ("s2.attn=1,s4.attn=1,s3.position=last",)
    assert len(variants) == 6
    cell = next(v for v in variants if v.name == "s2.attn=0,s4.attn=2,s3.position=last")
    assert cell.arch.summary() == "s24-48:CCA-56:CCC-112:CCCCCA-220:CCAA"
    deeper = grid_variants(parse_grid({"factors": {"s3.depth": [8], "s1.kind": ["conv"], "s2.position": ["first"],
                                                   "s4.mlp_ratio": [2]}}), VARIANTS["xs"])
    assert deeper[1].arch.summary() == "s24-48:CCC-56:ACC-112:CCCCCCCA-220:C2C2C2A2"


@pytest.mark.parametrize("data, message", [
    ([1, 2], "a grid must be a mapping"),
    ({"factors": {"s2.attn": [0]}, "seeds": 3}, "unknown key 'seeds'"),
    ({"factors": {}}, "'factors' must be a non-empty mapping"),
    ({"factors": {"stage2.attn": [0]}}, "factor 'stage2.attn' is not sK.FIELD"),
    ({"factors": {"s2.heads": [0]}}, "factor 's2.heads' is not sK.FIELD"),
    ({"factors": {"s2.attn": []}}, "needs a non-empty list"),
    ({"factors": {"s2.attn": [1, 1]}}, "lists a value twice"),
    ({"factors": {"s2.attn": [-1]}}, "value -1 is not an integer >= 0"),
    ({"factors": {"s2.kind": ["lstm"]}}, "value 'lstm' is not one of conv, attn"),
    ({"factors": {"s2.position": ["middle"]}}, "value 'middle' is not first or last"),
    ({"factors": {f"s{k}.width": [8, 16, 24, 32] for k in range(1, 10)}}, "262,144 cells"),
])
def test_bad_grids_are_refused_with_the_reason(data, message):
    with pytest.raises(GridError, match=message):
        parse_grid(data)


def test_grid_cells_must_fit_the_base():
    with pytest.raises(GridError, match="factor 's5.attn': the base has 4 stages"):
        grid_variants(parse_grid({"factors": {"s5.attn": [0]}}), VARIANTS["xs"])
    with pytest.raises(GridError, match="cell s2.attn=4 cannot be built: a stage of depth 3 cannot hold 4"):
        grid_variants(parse_grid({"factors": {"s2.attn": [4]}}), VARIANTS["xs"])


def test_an_oversize_ablation_is_refused_with_its_size(tmp_path):
    with pytest.raises(AblationError, match=r"16 variants x 10 seeds = 160 runs, more than --max-runs 100"):
        AblationConfig("placement", seeds=10, out=str(tmp_path / "o")).variants()
    AblationConfig("placement", seeds=10, max_runs=160).variants()  # exactly as asked: accepted


# ------------------------------------------------------------------------------------------------ statistics
def test_a_known_effect_is_detected_and_a_null_one_is_flagged_as_noise():
    rng = np.random.default_rng(0)
    base = {s: 0.70 + rng.normal(0, 0.01) for s in range(8)}
    better = {s: v + 0.05 + rng.normal(0, 0.002) for s, v in base.items()}
    same = {s: v + rng.normal(0, 0.01) for s, v in base.items()}
    effect = stats.paired(better, base)
    assert effect["pairs"] == 8 and effect["diff"] == pytest.approx(0.05, abs=0.003)
    assert effect["diff_ci_low"] > 0 and not effect["within_seed_noise"]
    assert effect["p_value"] == pytest.approx(2 / 2 ** 8)  # every difference positive: the exact floor
    null = stats.paired(same, base)
    assert null["diff_ci_low"] < 0 < null["diff_ci_high"] and null["within_seed_noise"] and null["p_value"] > 0.05
    assert stats.paired({0: 0.5}, {0: 0.4})["within_seed_noise"]  # one pair: no interval, nothing resolved


def test_sign_flip_p_values_and_their_floor():
    assert stats.sign_flip_pvalue(np.array([0.01, 0.02, 0.03])) == pytest.approx(0.25)
    assert stats.sign_flip_pvalue(np.array([0.02, -0.01, 0.03])) == pytest.approx(0.5)  # patterns >= 0.04/3
    assert stats.smallest_p(3) == 0.25 and stats.smallest_p(6) == pytest.approx(0.03125)


def test_t_interval_matches_a_hand_computation_and_is_wider_than_the_bootstrap_at_three_seeds():
    d = np.array([-1.79, -1.05, -0.30])  # the end-to-end benchmark's winner - XS, 3 seeds
    low, high = stats.t_interval(d)
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-4)
    boot_low, boot_high = stats.bootstrap_ci(d)
    assert low < boot_low and high > boot_high
    assert all(math.isnan(v) for v in stats.t_interval(np.array([0.5])))


def test_the_paired_interval_keeps_its_coverage_at_three_seeds():
    """Why differences get Student's t: at 3 seeds a percentile bootstrap covers far less than its 95 %."""
    draws = np.random.default_rng(0).normal(0.0, 0.01, size=(300, 3))  # paired differences whose true mean is 0
    t_cover = np.mean([low <= 0 <= high for low, high in map(stats.t_interval, draws)])
    boot_cover = np.mean([low <= 0 <= high for low, high in (stats.bootstrap_ci(d, resamples=500) for d in draws)])
    assert 0.91 <= t_cover <= 0.99 and boot_cover < 0.85
    d = draws[0]
    result = stats.paired(dict(enumerate(d + 0.5)), dict(enumerate([0.5] * 3)))
    assert (result["diff_ci_low"], result["diff_ci_high"]) == pytest.approx(stats.t_interval(d))


def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 4*0.01, 3*0.03, max(0.09, 2*0.04), max(0.09, 0.2)
    assert stats.holm([0.04, 0.01, 0.2, 0.03]) == pytest.approx([0.09, 0.04, 0.2, 0.09])
    assert stats.holm([0.5, math.nan, 0.6]) == pytest.approx([1.0, math.nan, 1.0], nan_ok=True)


def test_the_omnibus_test_finds_a_real_spread_and_not_a_noise_one():
    rng = np.random.default_rng(0)
    noise = {f"v{i}": {s: 0.55 + rng.normal(0, 0.01) for s in range(3)} for i in range(16)}
    spread = {f"v{i}": {s: 0.50 + 0.02 * i + rng.normal(0, 0.005) for s in range(5)} for i in range(4)}
    assert stats.omnibus(noise)["p_value"] > 0.05 and stats.omnibus(noise)["seeds"] == 3
    result = stats.omnibus(spread)
    # every seed ranks the four variants alike: chi2 = 12 / (n k (k + 1)) sum R^2 - 3 n (k + 1) = 15 for n 5, k 4
    assert result["statistic"] == pytest.approx(15.0) and result["p_value"] < 0.01
    assert stats.omnibus({"a": {0: 0.5, 1: 0.5}, "b": {0: 0.5, 1: 0.5}, "c": {0: 0.5, 1: 0.5}})["p_value"] == 1.0
    partway = stats.omnibus({"a": {0: 0.5, 1: 0.6}, "b": {0: 0.5}, "c": {0: 0.4, 1: 0.7}})  # 1 shared seed
    assert math.isnan(partway["p_value"]) and partway["seeds"] == 1
    assert math.isnan(stats.omnibus({"a": {0: 0.5, 1: 0.6}, "b": {0: 0.4, 1: 0.7}})["p_value"])  # 2 variants


def test_seeds_needed_reaches_the_power_it_promises():
    """The plan holds for the paired t-test it is for, checked by simulating that test; the normal formula's plan
    (8 pairs for a difference of one SD) reaches about 0.74, not the 0.80 it promised."""
    from scipy.stats import ttest_1samp

    def simulated_power(n: int, d: float, sd: float, runs: int = 20_000) -> float:
        rng = np.random.default_rng(0)
        samples = rng.normal(d, sd, size=(runs, n))
        return float(np.mean(ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05))

    n = stats.seeds_needed(0.01, 0.01)
    normal = math.ceil(((1.959964 + 0.841621) * 0.01 / 0.01) ** 2)  # the normal formula's plan: 8 pairs
    assert n == 10 and simulated_power(int(n), 0.01, 0.01) >= 0.79
    assert simulated_power(normal, 0.01, 0.01) < 0.76  # what the old plan promised as 0.80
    assert stats.seeds_needed(-0.01, 0.01) == n
    assert stats.seeds_needed(0.05, 0.001) == 6  # tiny noise: the fewest pairs an exact test can resolve with
    assert stats.seeds_needed(0.0, 0.02) == math.inf
    # an SD estimated from 4 pairs (3 degrees of freedom) is planned at its 80 % upper bound: more pairs
    assert stats.seeds_needed(0.01, 0.01, sd_df=3) > n
    # what a design detects is the inverse of the plan
    assert stats.paired_t_power(10, stats.detectable(10, 0.01), 0.01) == pytest.approx(0.8, abs=1e-6)


# ------------------------------------------------------------------------------------------------ end to end
def test_placement_end_to_end_pairs_seeds_and_resumes(tmp_path, tiny_imagefolder, tiny_base, capsys):
    out = tmp_path / "run"
    main(ablate_args("placement", out, tiny_imagefolder, tiny_base))
    printed = capsys.readouterr()
    for name in ("ablation.csv", "ablation.parquet", "summary.csv", "report.md", "accuracy_vs_latency.png",
                 "attention_by_stage.png", "study.journal", "ablation.json"):
        assert (out / name).exists(), name
    runs = pd.read_csv(out / "ablation.csv")
    assert len(runs) == 16 and runs["variant"].nunique() == 8
    seeds = {v: sorted(group["seed"]) for v, group in runs.groupby("variant")}
    assert all(s == [0, 1] for s in seeds.values())  # the same seeds for every variant
    assert (runs["protocol"] == "proxy").all() and runs["test_accuracy"].isna().all()  # the proxy never reads test
    assert (runs["latency_iphone14_ms"] > 0).all() and (runs["latency_iphone12_ms"] > 0).all()
    assert runs.loc[runs["variant"] == "released", "labels"].iloc[0].split() == \
        ["released", "all", "s1-one", "s2-one", "s1-last", "s2-last"]
    assert pd.read_parquet(out / "ablation.parquet").shape == runs.shape
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[summary["variant"] == "released", "diff"].isna().all()
    assert summary.loc[summary["variant"] != "released", "pairs"].eq(2).all()
    report = (out / "report.md").read_text()
    assert "val accuracy" in report and "proxy protocol" in report and "smallest p a paired test of 2 pairs" in report
    assert "do the variants differ at all: Friedman chi2" in printed.out
    assert "over 8 variants x 2 shared seeds" in report
    assert "nested leave-one-model-out within family swiftformer error band" in report  # how far to trust the latency
    assert runs["code"].nunique() == 1 and runs["data"].nunique() == 1 and len(runs["data"].iloc[0]) == 16
    assert f"`{runs['code'].iloc[0]}` (16 runs)" in report  # which code made the table, under Provenance
    assert "16/16 runs (proxy protocol)" in printed.err and "ETA" in printed.err
    assert "seed 1: epoch 1/" in printed.err  # progress inside a run, not only after it
    main(ablate_args("placement", out, tiny_imagefolder, tiny_base))  # finished: nothing trains again
    again = capsys.readouterr()
    assert "runs (proxy protocol)" not in again.err and len(pd.read_csv(out / "ablation.csv")) == 16
    (out / "report.md").unlink()
    main(["ablate", "report", str(out)])
    assert (out / "report.md").exists()


def test_reference_protocol_reads_test_reuses_runs_and_grids_run_in_parallel_workers(tmp_path, tiny_imagefolder,
                                                                                      tiny_base, capsys):
    out = tmp_path / "type"
    main(["ablate", "type", "--base", str(tiny_base), "--data", f"imagefolder:{tiny_imagefolder}", "--seeds", "1",
          "--protocol", "reference", "--kinds", "attn,conv", "--out", str(out)])
    runs = pd.read_csv(out / "ablation.csv")
    assert sorted(runs["variant"]) == ["attn", "conv"] and (runs["protocol"] == "reference").all()
    assert runs["test_accuracy"].notna().all()
    assert "Test accuracy (reference protocol" in (out / "report.md").read_text()
    summary = pd.read_csv(out / "summary.csv").set_index("variant")  # the base is attn (alias released)
    assert summary.loc["conv", "pairs"] == 1 and math.isnan(summary.loc["attn", "diff"])
    type_args = ["ablate", "type", "--base", str(tiny_base), "--data", f"imagefolder:{tiny_imagefolder}", "--seeds",
                 "1", "--protocol", "reference", "--out", str(tmp_path / "all-kinds"), "--reuse", str(out)]
    main(type_args)  # every kind; attn and conv were trained above: only mhsa trains
    printed = capsys.readouterr()
    assert "2 finished run(s) reused from" in printed.err and "1/3 runs" not in printed.err
    again = pd.read_csv(tmp_path / "all-kinds" / "ablation.csv").set_index("variant")
    assert set(again.index) == {"attn", "mhsa", "conv"} and pd.isna(again.loc["mhsa", "reused_from"])
    for kind in ("attn", "conv"):
        source = runs.set_index("variant").loc[kind]
        assert again.loc[kind, "reused_from"] == f"{out}#{source['number']}"
        assert (again.loc[kind, "val_accuracy"], again.loc[kind, "test_accuracy"]) == \
            (source["val_accuracy"], source["test_accuracy"])
    assert "2 run(s) trained by the ablation in" in (tmp_path / "all-kinds" / "report.md").read_text()
    with pytest.raises(SystemExit):  # other protocol: refused in one line, before anything is written
        main([*type_args[:9], "proxy", "--out", str(tmp_path / "proxy"), "--reuse", str(out)])
    err = capsys.readouterr().err
    assert f"--reuse {out}: its runs were trained with another protocol and protocol_config" in err
    assert err.count("\n") == 1 and not (tmp_path / "proxy").exists()
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nfactors:\n  s1.attn: [0, 1]\n  s2.attn: [0, 2]\n")
    out = tmp_path / "grid"
    main(ablate_args(str(grid), out, tiny_imagefolder, tiny_base, "--workers", "2", seeds=1))
    runs = pd.read_csv(out / "ablation.csv")
    assert len(runs) == 5 and runs["digest"].is_unique and set(runs["worker"]) <= {"w0", "w1"}  # 4 cells + base
    assert "base" in set(runs["variant"]) and (out / "study.journal").exists()
    main(ablate_args(str(grid), out, tiny_imagefolder, tiny_base, seeds=2))  # a second seed adds 5 runs
    runs = pd.read_csv(out / "ablation.csv")
    assert len(runs) == 10 and sorted(runs["seed"].value_counts()) == [5, 5]


def test_killed_mid_run_resumes_without_redoing_finished_runs(tmp_path, tiny_imagefolder, tiny_base):
    out = tmp_path / "run"
    args = ablate_args("type", out, tiny_imagefolder, tiny_base, "--kinds", "attn,mhsa", seeds=2, epochs=8,
                       subset=120)  # MHSA trains, is priced and counted like any kind
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    deadline, running, study = time.time() + 120, None, None
    while time.time() < deadline and running is None:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name="ablate-type-tiny_base-proxy", storage=storage)
            trials = study.get_trials()
        except Exception:  # noqa: BLE001 (the study may not exist yet)
            continue
        if any(t.state.name == "COMPLETE" for t in trials):
            running = next((t for t in trials if t.state.name == "RUNNING"), None)
    assert running is not None, "no run started in time"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {t.number: t.values for t in study.get_trials() if t.state.name == "COMPLETE"}
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"trial(s) #{running.number} were interrupted" in result.stderr
    study = optuna.load_study(study_name="ablate-type-tiny_base-proxy", storage=storage)
    assert {n: study.trials[n].values for n in finished} == finished  # finished runs kept, not redone
    runs = pd.read_csv(out / "ablation.csv")
    assert len(runs) == 4 and not runs.duplicated(["variant", "seed"]).any()
    retried = runs[(runs["variant"] == running.user_attrs["variant"]) & (runs["seed"] == running.user_attrs["seed"])]
    assert len(retried) == 1 and retried.iloc[0]["number"] > running.number


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, message", [
    (["ablate", "placement", "--base", "swiftformer:xxl"], "unknown SwiftFormer variant 'xxl'"),
    (["ablate", "placement", "--base", "timm:resnet18"], "is not of the SwiftFormer family"),
    (["ablate", "shuffle"], "unknown ablation 'shuffle'"),
    (["ablate", "type", "--kinds", "attn,lstm"], "block kind 'lstm' is unknown; accepted: conv, attn, mhsa"),
    (["ablate", "placement", "--kinds", "conv"], "--kinds belongs to the type ablation"),
    (["ablate", "placement", "--seeds", "20"], "16 variants x 20 seeds = 320 runs, more than --max-runs 100"),
    (["ablate", "placement", "--protocol", "reference", "--proxy-epochs", "3"], "--proxy-epochs sets the proxy"),
    (["ablate", "placement", "--protocol", "56px-20ep-crop", "--proxy-subset", "3"],
     "--proxy-subset sets the proxy protocol; the 56px-20ep-crop protocol is fixed"),
    (["ablate", "report"], "needs the ablation's folder"),
    (["ablate", "report", "/nonexistent/abl"], "holds no ablation"),
    (["ablate", "/nonexistent/grid.yaml"], "cannot read grid"),
])
def test_bad_ablation_input_is_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *(["--out", str(tmp_path / "o")] if args[1] != "report" else [])])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "argument --seeds: expected a positive integer, got '0'"),
    (["--protocol", "full"], "argument --protocol: invalid choice: 'full'"),
])
def test_bad_ablation_options_are_refused_by_the_parser(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "placement", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_version2_candidate_reference_is_an_ablation_protocol():
    """`--protocol NAME` trains every run as fidelity version 2's candidate NAME does, reading test once."""
    from nas.ablation import AblationConfig
    from nas.fidelity.benchmark import PILOT_PROTOCOLS

    cfg = AblationConfig(ablation="placement", protocol="56px-20ep-crop", out="unused")
    protocol = cfg.training_protocol()
    assert protocol.config == PILOT_PROTOCOLS["56px-20ep-crop"].config and protocol.reads_test
    assert protocol.config.epochs == 20 and protocol.config.augment == "crop" and protocol.config.subset is None
    assert cfg.identity()["protocol"] == "56px-20ep-crop" and cfg.study == "ablate-placement-xs-56px-20ep-crop"


def test_a_bad_grid_file_is_one_line(tmp_path, capsys):
    grid = tmp_path / "bad.yaml"
    grid.write_text("factors:\n  s2.attn: [0, 9]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(grid), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "cell s2.attn=9 cannot be built" in err and err.count("\n") == 1
