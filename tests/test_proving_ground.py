"""The proving ground: NAS-Bench-201 and FBNet spaces behind the one space interface, tabular searches, and
`nas benchmark` judged against the tables' oracles."""
import json
import random
import time

import numpy as np
import optuna
import pytest
import torch
from swiftnas_testing.cli import run_nas_here

from nas.benchmarks import DATASETS, latency_table, nb201_accuracies, oracle
from nas.benchmarks.latency import PartProfiles, work_predictor
from nas.latency.lut import build_table, LatencyTable
from nas.latency.predictor import work_vector
from nas.proving import PLANS, load_results
from nas.proving.report import bootstrap, pick_at
from search_spaces import FBNetSpace, NB201Arch, NB201Space, Space, SpaceError, load_space


# ------------------------------------------------------------------------------------------------- the data
def test_tables_ship_with_the_package_and_match_sources():
    table = nb201_accuracies()
    assert len(table) == 15625 and table["index"].tolist() == list(range(15625))
    assert table["c10valid_valid_200ep_mean"].max() == pytest.approx(91.6067, abs=1e-3)  # SOURCES.md: 91.61
    assert table.loc[table["c10valid_valid_200ep_mean"].idxmax(), "index"] == 6111
    assert latency_table("nb201").shape == (15625, 27) and latency_table("fbnet").shape == (5000, 27)
    assert set(latency_table("nb201").index) == set(table.index)


def test_nb201_network_has_the_benchmarks_parameter_count_on_every_exact_row():
    """The count depends only on how many 1x1 and 3x3 convs the cell has, so one network per such pair checks
    all 15,625 rows; the 150 rows SOURCES.md says the benchmark recorded otherwise are the only misses."""
    table = nb201_accuracies()
    for dataset in DATASETS.values():
        space = NB201Space(num_classes=dataset.classes, resolution=dataset.side)
        counts: dict[tuple[int, int], int] = {}
        exact = 0
        for arch_str, millions in table[dataset.params].items():
            arch = space.parse(arch_str)
            key = (arch.ops.count("nor_conv_1x1"), arch.ops.count("nor_conv_3x3"))
            if key not in counts:
                counts[key] = sum(p.numel() for p in space.build_model(arch).parameters())
                assert counts[key] == space.counts(arch)["params"]  # the parts' sum, as the search records it
            exact += round(millions * 1e6) == counts[key]
        assert exact == 15475, dataset.name


@pytest.mark.parametrize("name", ["nb201", "fbnet"])
def test_parts_sum_to_the_whole_network(name):
    """A per-part latency table prices an architecture as its whole deployed graph: the parts' work adds up."""
    space = load_space(name)
    profiles = PartProfiles(space)
    for seed in range(2):
        arch = space.sample(seed)
        whole = work_vector(profiles.profile(arch))
        assert np.allclose(whole, profiles.work(arch), rtol=1e-9), (name, arch.digest())
        model = space.build_model(arch)
        assert sum(p.numel() for p in model.parameters()) == space.counts(arch)["params"]
        assert model(torch.randn(2, *space.input_shape(arch)[1:])).shape == (2, space.num_classes)


def test_benchmark_strings_are_the_keys():
    nb201 = NB201Space()
    for arch_str in nb201_accuracies().index[:50]:
        assert nb201.parse(arch_str).digest() == arch_str
    fbnet = FBNetSpace()
    for ops in latency_table("fbnet").index[:50]:
        assert fbnet.parse(ops).digest() == ops
    with pytest.raises(SpaceError, match="unknown operation 'conv_7x7'"):
        NB201Arch.from_string("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(SpaceError, match="expected 22 layer choices"):
        fbnet.parse("k3_e1 skip")


# --------------------------------------------------------------------------------------- one space interface
@pytest.mark.parametrize("name", ["swiftformer", "nb201", "fbnet"])
def test_every_space_implements_the_interface(name):
    space = load_space(name)
    assert isinstance(space, Space)
    rng = random.Random(0)
    arch = space.sample(rng)
    assert arch in space and space.arch_from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    child = space.mutate(arch, rng)
    assert child in space and child.digest() != arch.digest()
    other = space.sample(rng)
    assert space.crossover(arch, other, rng) in space
    assert len(space.encode(arch)) == len(space.encode(other))
    # define-by-run: enqueued parameters give the architecture back
    study = optuna.create_study()
    study.enqueue_trial(space.trial_params(arch))
    assert space.suggest(study.ask()).digest() == arch.digest()
    counts = space.counts(arch)
    assert counts["params"] > 0 and counts["macs"] > 0


def test_positional_mutation_and_crossover():
    space = load_space("nb201")
    rng = random.Random(3)
    a, b = space.sample(rng), space.sample(rng)
    for n in (1, 2, 4):
        child = space.mutate(a, rng, n=n)
        assert sum(x != y for x, y in zip(a.ops, child.ops)) == n
    child = space.crossover(a, b, rng)
    assert all(op in (x, y) for op, x, y in zip(child.ops, a.ops, b.ops))
    assert space.size() == 5 ** 6


def test_latency_table_of_a_benchmark_space_predicts_the_whole_network(tmp_path):
    """Calibrated on 20 measured architectures, the per-part table gives the predictor's whole-graph price."""
    space = NB201Space()
    profiles = PartProfiles(space)
    measured = latency_table("nb201")["pixel2"].iloc[:20]
    predictor = work_predictor("pixel2", np.stack([profiles.work(space.parse(k)) for k in measured.index]), measured)
    table = build_table(space, predictor)
    for seed in range(3):
        arch = space.sample(seed)
        whole = predictor.predict(profiles.profile(arch))
        assert table.predict(arch) == pytest.approx(whole, rel=1e-6)
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json", space.part_keys).predict(arch) == pytest.approx(table.predict(arch))


# ----------------------------------------------------------------------------------------- tabular search
def test_tabular_search_runs_100_trials_in_seconds_and_reports_the_truth(tmp_path, capsys):
    out = tmp_path / "s"
    started = time.perf_counter()
    result = run_nas_here(capsys, "search", "--space", "nb201", "--data", "nb201:cifar100", "--device", "pixel2",
                          "--latency-budget", "14ms", "--trials", "100", "--out", str(out))
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert seconds < 60, seconds  # (about 3 s here)
    assert "the winner truly:" in result.stdout and "oracle: 71.36 %" in result.stdout
    frame = __import__("pandas").read_csv(out / "trials.csv")
    trained = frame[frame["status"] == "trained"]
    assert len(trained) == 100 and trained["measured_latency_ms"].max() <= 14
    assert (trained["val_accuracy"] <= 1).all()  # accuracies as fractions, as every study records them
    best = json.loads((out / "best_arch.json").read_text())
    assert NB201Arch.from_string(best["arch_str"]).digest() == best["arch_str"]
    # the same command resumes: nothing more to do
    again = run_nas_here(capsys, "search", "--space", "nb201", "--data", "nb201:cifar100", "--device", "pixel2",
                         "--latency-budget", "14ms", "--trials", "100", "--out", str(out))
    assert again.returncode == 0 and len(__import__("pandas").read_csv(out / "trials.csv")) == len(frame)


def test_tabular_search_with_a_few_shot_predictor(tmp_path, capsys):
    result = run_nas_here(capsys, "search", "--space", "nb201", "--data", "nb201:cifar10", "--device", "gold_6226",
                          "--latency-budget", "11ms", "--trials", "20", "--latency-shots", "10", "--sampler",
                          "evolution", "--out", str(tmp_path / "s"))  # (a device name with underscores)
    assert result.returncode == 0, result.stderr
    assert "predicted, calibrated on 10 measured architectures" in result.stderr
    assert "the winner truly:" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--device", "iphone14"], "unknown nb201 device 'iphone14'; accepted: 1080ti_1"),
    (["--device", "pixel2", "--latency-budget", "1ms"], "no nb201 architecture fits 1 ms on pixel2 (measured); "
                                                       "the fastest is 4.000 ms"),
    (["--device", "pixel2", "--data", "nb201:svhn"], "unknown NAS-Bench-201 dataset 'svhn'; accepted: cifar10"),
    (["--device", "pixel2", "--space", "fbnet"], "use --space nb201"),
    (["--device", "pixel2", "--latency-shots", "2"], "must be at least 3"),
    (["--device", "pixel2", "--data", "fashion-mnist", "--latency-shots", "5"], "tabular benchmarks only"),
])
def test_bad_tabular_input_is_one_line(tmp_path, capsys, args, message):
    base = {"--space": "nb201", "--data": "nb201:cifar100", "--latency-budget": "14ms"}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    argv = ["search", *[x for kv in base.items() for x in kv], "--out", str(tmp_path / "o")]
    result = run_nas_here(capsys, *argv)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- the benchmark
def test_oracle_matches_the_published_figures():
    """SOURCES.md's oracles of HELP's Table 4 settings, from the shipped tables."""
    dataset = DATASETS["cifar100"]
    for device, budgets, finals in (("titan_rtx_256", (18, 21, 25), (70.82, 71.36, 72.13)),
                                    ("fpga", (4, 5, 6), (71.36, 72.13, 73.01))):
        for budget, final in zip(budgets, finals):
            assert oracle(dataset, latency_table("nb201")[device], budget).final == pytest.approx(final, abs=0.0051)


def test_bootstrap_and_picks():
    assert pick_at([[1, 5], [7, 9]], 6) == 5 and pick_at([[1, 5], [7, 9]], 7) == 9 and pick_at([[3, 1]], 2) is None
    median, low, high = bootstrap(np.arange(31.0))
    assert median == 15 and low < 15 < high


def test_benchmark_runs_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "pg"
    args = ["benchmark", "--out", str(out), "--repeats", "2", "--queries", "30", "--samplers", "tpe,random",
            "--settings", "cifar100-pixel2-14ms,cifar10-unconstrained"]
    result = run_nas_here(capsys, *args)
    assert result.returncode == 0, result.stderr
    results = load_results(out)
    assert len(results) == 2 * (2 * 2 + 2)  # repeats x (2 settings x 2 samplers measured + 2 shot samplers)
    report = (out / "REPORT.md").read_text()
    assert "Regret after 20 queries" in report and "Beside HELP's Table 4" in report
    assert (out / "regret_measured.png").exists() and (out / "regret_10-shot.png").exists()
    for record in results.values():
        assert record["queries"] == 30 and record["picks"][0][0] >= 1
    # resuming runs nothing; a line cut by a kill is dropped and its search runs again
    lines = (out / "runs.jsonl").read_text().splitlines(keepends=True)
    (out / "runs.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    again = run_nas_here(capsys, *args)
    assert again.returncode == 0 and "the last line was cut off" in again.stderr
    assert "1 this run" in again.stderr and len(load_results(out)) == len(results)
    # another plan in the same folder, and a damaged line, are one line each
    other = run_nas_here(capsys, *args[:-4], "--samplers", "evolution")
    assert other.returncode == 2 and "other settings (samplers)" in other.stderr
    (out / "runs.jsonl").write_text("garbage\n" + (out / "runs.jsonl").read_text())
    damaged = run_nas_here(capsys, *args)
    assert damaged.returncode == 2 and "line 1: not a proving-ground record" in damaged.stderr


def test_plans_are_what_the_readme_says():
    full = PLANS["full"]
    runs = list(full.runs())
    assert len(full.settings) == 18 and full.repeats >= 30 and full.queries == 500
    assert {r.sampler for r in runs} == {"tpe", "nsga2", "random", "evolution"}
    assert sum(r.shots is not None for r in runs) == 15 * 2 * 30


def test_swiftformer_search_identity_is_unchanged():
    from nas.search.config import SearchConfig

    identity = SearchConfig(budget_ms=1.0).identity()
    assert set(identity) == {"budget_ms", "device", "predictor", "space", "data", "objective", "proxy"}
    assert SearchConfig(budget_ms=1.0).study == "swiftformer-iphone14-1ms"


@pytest.mark.parametrize("name", ["nb201", "fbnet"])
def test_zero_cost_scores_work_through_the_space_interface(name):
    from nas.fidelity.zero_cost import zero_cost_scores

    space = load_space(name)
    arch = space.sample(0)
    images, labels = torch.randn(8, *space.input_shape(arch)[1:]), torch.arange(8) % 5
    first, again = (zero_cost_scores(arch, images, labels, space=space),
                    zero_cost_scores(arch, images, labels, space=space))
    assert first == again and all(np.isfinite(v) for v in first.values())


def test_a_predictor_that_rules_out_every_architecture_is_a_search_with_no_pick(monkeypatch):
    """A few-shot predictor that prices every architecture over the budget (the work-only calibration of gold_6226
    drawn with seed 14 did, at 8 ms): `nas search` would stop with that one line; the proving ground records a
    search with no pick instead of stopping the plan."""
    import nas.benchmarks.tabular as tabular
    from nas.benchmarks.few_shot import calibrate_few_shot
    from nas.proving import RunSpec, run_search_spec

    def over_budget(*args, **kwargs):
        calibration = calibrate_few_shot(*args, **kwargs)
        calibration.predicted = calibration.predicted + 100.0
        return calibration

    monkeypatch.setattr(tabular, "calibrate_few_shot", over_budget)
    record = run_search_spec(RunSpec("cifar100-gold_6226-8ms", 10, "tpe", 14, 500))
    assert record["picks"] == [] and record["queries"] == 0
    assert record["no_search"].startswith("no nb201 architecture fits 8 ms on gold_6226 (predicted)")


def test_a_search_of_several_workers_proposes_while_their_trials_run():
    """Plan parallel's searches: each worker's sampler on the shared study, the count asked met exactly, both
    workers evaluating; another sequence than one worker's, under its own key."""
    from nas.proving.plan import RunSpec
    from nas.proving.run import run_search_spec

    one = run_search_spec(RunSpec("cifar10-unconstrained", None, "tpe", 0, 6))
    two = run_search_spec(RunSpec("cifar10-unconstrained", None, "tpe", 0, 6, workers=2))
    assert one["queries"] == two["queries"] == 6 and two["workers"] == 2 and "workers" not in one
    assert two["key"] == one["key"] + "|w2" and two["seconds"] >= 3 * 0.2  # each worker evaluated in turn
    assert PLANS["parallel"].workers == 2 and all(spec.workers == 2 for spec in PLANS["parallel"].runs())
