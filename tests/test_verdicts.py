"""The verdict plans (issue 28): plans are checked in one line, the runner resumes in chunks and marks only what
ended on its own, the noise sets the ablation's seeds, and the report reads paired verdicts, at toy sizes."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas.ablation import stats
import yaml

from nas.training.recipe import Recipe
from nas.verdicts import load_plan, run_plan, write_report
from nas.verdicts.report import family_table, search_table, words
from nas.verdicts.runner import Chunk
from nas.verdicts.steps import Step, ablation_seeds, add_model, is_done, marker, released, released_within
from swiftformer import VARIANTS, SwiftFormerArch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_verdicts  # noqa: E402

TINY_ARCH = {"resolution": 64, "num_classes": 10, "stages": [
    {"width": 8, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "conv", "mlp_ratio": 2}, {"type": "attn", "mlp_ratio": 2}]}]}
TINY_RECIPE = {"epochs": 1, "resolution": 32, "batch_size": 16, "loader_workers": 0, "warmup_epochs": 0,
               "auto_augment": None, "mixup": 0.0, "cutmix": 0.0, "aug_repeats": 1, "model_ema_decay": 0.9}


def write_plan(folder: Path, **changes) -> Path:
    plan = {"name": "toy", "data": "cifar10:x.tar.gz", "recipe": "recipe.yaml", "seeds": 2, **changes}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"seeds": 1}, "plan value seeds: 1 is not accepted; expected at least 2"),
    ({"search": {"budgets": ["fast"]}}, "plan value search.budgets: 'fast' is not a latency"),
    ({"ablation": {"protocol": "long"}}, "plan value ablation.protocol: 'long' is not accepted; expected proxy, "
                                         "reference, 56px-10ep-flip"),
    ({"family": {"references": ["xxl"]}}, "plan value family.references: 'xxl' is not accepted"),
    ({"family": {"sizes": 3}}, "plan section family: unknown setting 'sizes'"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"recipe": None}, "has no 'recipe'"),
    ({"ablation": {"first_seeds": 5, "max_seeds": 3}}, "plan value max_seeds: 3 is not accepted; expected at least "
                                                       "first_seeds (5)"),
])
def test_bad_plans_get_one_line(tmp_path, capsys, changes, message):
    code = bench_verdicts.main(["status", "--plan", str(write_plan(tmp_path, **changes))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_a_missing_plan_and_a_bad_chunk_are_one_line(tmp_path, capsys):
    assert bench_verdicts.main(["status", "--plan", str(tmp_path / "none.yaml")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert bench_verdicts.main(["run", "--plan", str(write_plan(tmp_path)), "--minutes", "0"]) == 2
    assert "--minutes 0 is not accepted" in capsys.readouterr().err


def test_the_shipped_plans_load_with_recipes_that_resolve():
    for name in ("gpu", "cpu"):
        plan = load_plan(ROOT / f"experiments/verdicts/{name}.yaml")
        assert plan.root == ROOT / "experiments/verdicts" / name and plan.seeds >= 5
        recipe = yaml.safe_load((ROOT / plan.recipe).read_text())
        assert Recipe(**{k: v for k, v in recipe.items() if k != "loader_workers"}).resolution == 64
        assert (ROOT / plan.search.oneshot_space).is_file()
    gpu = load_plan(ROOT / "experiments/verdicts/gpu.yaml")
    assert gpu.search.budgets == (0.8, 1.0) and gpu.family.budget == 1.5 and gpu.family.references == ("xs", "s", "l1")
    # the released variants within each budget, as the corrected iPhone 14 predictor prices them
    assert released_within(gpu, 0.8) == ["xs"] and released_within(gpu, 1.0) == ["xs", "s"]


def test_paired_words_say_better_worse_or_what_cannot_be_told():
    assert words({"pairs": 1}) == "not yet (1 pair)"
    row = {"pairs": 5, "diff": 1.0, "diff_ci_low": 0.2, "diff_ci_high": 1.8, "detectable": 1.6, "decided": True,
           "t_p_holm": 0.01}
    assert words(row).startswith("better: +1.00 points [+0.20, +1.80], 5 pairs, Holm p 0.01")
    assert words({**row, "diff": -1.0, "diff_ci_low": -1.8, "diff_ci_high": -0.2}).startswith("worse")
    assert words({**row, "decided": False, "t_p_holm": 0.2}) == (  # the interval alone no longer decides
        "cannot tell: +1.00 points [+0.20, +1.80], 5 pairs, Holm p 0.2; these pairs detect 1.60 points at 80 % power")


def test_a_tables_comparisons_are_decided_together_by_holm():
    """Ten comparisons, each with an unadjusted p of 0.01 to 0.03: alone each interval excludes 0; over the table,
    Holm keeps only what survives the family (before, every one would read 'better')."""
    rows = [{"t_p_value": p} for p in (0.001, 0.01, 0.02, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03)]
    stats.holm_decisions(rows)
    assert [r["decided"] for r in rows] == [True] + [False] * 9
    assert rows[0]["t_p_holm"] == pytest.approx(0.01)
    d = np.array([0.4, 0.6, 0.5, 0.55, 0.45])
    from scipy.stats import ttest_1samp

    assert stats.paired_t_pvalue(d) == pytest.approx(ttest_1samp(d, 0.0).pvalue)


def fake_retrain(root: Path, name: str, tops: list[float]) -> None:
    for seed, top in enumerate(tops):
        folder = root / "retrain" / f"{name}-seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"test_top1": top, "val_top1": top}))


def test_the_report_pairs_winners_with_the_released_variants_and_finds_dominance(tmp_path):
    plan = load_plan(write_plan(tmp_path, search={"budgets": ["1ms"]}, family={"references": ["xs", "s"]}))
    root = plan.root
    winner = SwiftFormerArch.from_dict(TINY_ARCH)
    assert released(root, "xs") == "xs" and released(root, "s") == "s"  # the released variants come first
    assert add_model(root, "search-1ms", winner, "the default search's winner") == "search-1ms"
    # the one-shot search found XS itself: it is retrained once, under XS's name
    assert add_model(root, "oneshot-1ms", VARIANTS["xs"].replace(num_classes=10), "one-shot") == "xs"
    assert add_model(root, "front-1", winner, "front member") == "search-1ms"  # same network: one retraining
    models = json.loads((root / "models.json").read_text())
    assert models["oneshot-1ms"]["same_as"] == "xs" and models["front-1"]["same_as"] == "search-1ms"
    assert (root / "models/search-1ms.json").is_file() and models["xs"]["ref"] == "swiftformer:xs"
    fake_retrain(root, "search-1ms", [70.0, 71.0, 70.5])
    fake_retrain(root, "xs", [68.0, 69.2, 68.1])
    fake_retrain(root, "s", [69.0, 71.5, 70.2])
    table = search_table(plan, root)
    row = table[(table.search == "search") & (table.reference == "xs")].iloc[0]
    assert row.pairs == 3 and row.verdict.startswith("better: +2.07")
    assert table[(table.search == "oneshot") & (table.reference == "xs")].iloc[0].verdict == "the winner is XS itself"
    assert table[(table.search == "search") & (table.reference == "s")].iloc[0].verdict.startswith("cannot tell")
    members, pairs = family_table(plan, root)
    assert list(members.model) == ["front-1", "xs", "s"]
    assert (members.latency_low_ms < members.latency_ms).all() and (members.latency_ms < members.latency_high_ms).all()
    dominated = pairs.set_index("reference").dominates.to_dict()
    assert dominated == {"xs": True, "s": False}
    text = write_report(plan)
    assert "better: +2.07 points" in text and "-> dominates" in text and (root / "family.png").stat().st_size > 0
    assert "No ablation has finished yet." in text


def test_the_measured_noise_sets_the_ablations_seeds(tmp_path):
    plan = load_plan(write_plan(tmp_path, ablation={"first_seeds": 3, "max_seeds": 20, "resolve": 0.5}))
    assert ablation_seeds(plan.root, plan) is None  # nothing measured yet
    (plan.root / "ablation-placement").mkdir(parents=True)
    pd.DataFrame({"variant": ["released", "none", "only-s4"], "pairs": [math.nan, 3, 3],
                  "diff_sd": [math.nan, 0.004, 0.006]}).to_csv(plan.root / "ablation-placement/summary.csv")
    noise = ablation_seeds(plan.root, plan)
    pooled = math.sqrt((0.004 ** 2 + 0.006 ** 2) / 2)  # 0.51 points
    assert noise["pooled_paired_sd_points"] == pytest.approx(100 * pooled, abs=1e-3)
    # a paired t-test at 80 % power with the SD (4 degrees of freedom) at its 80 % upper bound: 22 pairs, capped at
    # max_seeds; the normal formula with the SD as estimated planned 9, about 0.73 power even were the SD exact
    assert noise["sd_degrees_of_freedom"] == 4 and noise["seeds_needed"] == 22 and noise["seeds"] == 20
    assert stats.paired_t_power(22, 0.005, stats.planning_sd(pooled, 4)) >= 0.8 > \
        stats.paired_t_power(21, 0.005, stats.planning_sd(pooled, 4))
    assert stats.paired_t_power(9, 0.005, pooled) < 0.75
    assert noise["capped"] and json.loads((plan.root / "noise.json").read_text()) == noise


def test_a_command_cut_by_the_chunk_is_not_marked_done(tmp_path, monkeypatch):
    plan = load_plan(write_plan(tmp_path))
    plan.root.mkdir(parents=True)
    step = Step("toy/sleep", ("unused",), "timeout")
    chunk = Chunk(plan, minutes=0.02, train_device="cpu", say=lambda _: None)  # 1.2 s
    monkeypatch.setattr(chunk, "command", lambda s: ([sys.executable, "-c", "import time; time.sleep(3)"], 1.2))
    from nas.verdicts.runner import Phase

    assert not chunk.run_phase(Phase("search", [step])) and not is_done(plan.root, step)
    chunk = Chunk(plan, minutes=None, train_device="cpu", say=lambda _: None)
    monkeypatch.setattr(chunk, "command", lambda s: ([sys.executable, "-c", "pass"], None))
    assert chunk.run_phase(Phase("search", [step])) and is_done(plan.root, step)
    record = json.loads(marker(plan.root, step.key).read_text())
    assert record["step"] == "toy/sleep" and "training on cpu" in record["machine"] and record["finished"]
    argv, _ = Chunk(plan, minutes=5, train_device="cpu").command(Step("a", ("search",), "timeout"))
    assert argv[-2] == "--timeout" and 290 <= int(argv[-1][:-1]) <= 300
    argv, _ = Chunk(plan, minutes=5, train_device="cpu").command(Step("b", ("retrain",), "minutes"))
    assert argv[-2] == "--minutes" and 4.9 < float(argv[-1]) <= 5


@pytest.mark.slow
def test_a_toy_plan_runs_every_verdict_in_chunks_and_resumes(tmp_path, tiny_imagefolder, tiny_space, monkeypatch):
    """Every step kind of the three verdicts at toy sizes: searches, supernet, one-shot searches, retrainings,
    ablations with the measured noise, the Pareto front; a first short chunk, then the rest, then nothing left."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(TINY_ARCH))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    proxy = ["--proxy-epochs", "1", "--proxy-subset", "30"]
    plan_path = write_plan(tmp_path, data=f"imagefolder:{tiny_imagefolder}", workers=2, search={
        "budgets": ["0.8ms"], "trials": 2, "args": ["--space", str(tiny_space), *proxy],
        "oneshot_space": str(tiny_space), "supernet_epochs": 1, "supernet_args": ["--set", "batch_size=16"],
        "oneshot_trials": 3}, ablation={"base": "base.json", "protocol": "proxy", "studies": ["type"],
                                         "kinds": "attn,conv", "args": proxy, "first_seeds": 2, "max_seeds": 2},
        family={"budget": "1.5ms", "trials": 2, "front": 1, "references": ["xs"]})
    plan = load_plan(plan_path)
    said: list[str] = []
    first = run_plan(plan, minutes=0.1, train_device="cpu", say=said.append)
    assert first and any("spent" in line or "chunk end" in line for line in said), said
    rest = run_plan(plan, train_device="cpu", say=said.append)
    assert "supernet" in rest and any(k.startswith("retrain/") for k in rest)
    models = json.loads((plan.root / "models.json").read_text())
    assert {"search-0p8ms", "oneshot-0p8ms", "xs", "front-1"} <= set(models)
    for name, model in models.items():
        target = model["same_as"] or name
        assert all((plan.root / f"retrain/{target}-seed{s}/results.json").is_file() for s in (0, 1)), name
    noise = json.loads((plan.root / "noise.json").read_text())
    assert noise["seeds"] == 2 and (plan.root / "ablation-type/summary.csv").is_file()
    commands = (plan.root / "commands.log").read_text()
    assert "python -m nas search --latency-budget 0.8ms" in commands and "training on cpu" in commands
    assert run_plan(plan, train_device="cpu", say=said.append) == []  # nothing left
    text = write_report(plan)
    assert "| 0.8 ms | search |" in text and "### type" in text and "front-1" in text
