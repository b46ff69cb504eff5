"""The proving ground's side measurements (the benchmark itself is `nas benchmark`).

    .venv/bin/python experiments/bench_proving.py shot-forms     # which form fits k measured architectures
    .venv/bin/python experiments/bench_proving.py networks       # our networks' MACs against measured latency
    .venv/bin/python experiments/bench_proving.py few-shot-forms # which few-shot procedure, on validation devices
    .venv/bin/python experiments/bench_proving.py few-shot-ceiling  # the encoding fitted to every row of a device
    .venv/bin/python experiments/bench_proving.py parallel-cost  # two workers' TPE against one's (plans parallel, full)

``shot-forms``: every form of ``nas.latency.fitting.TERM_SETS`` x {squared, Huber}, each device alone, fitted on k
random measured NAS-Bench-201 architectures of HELP's validation devices (titanx_1/32/256, gold_6240; never a device
the benchmark reports), 10 draws per device, scored on the rest: mean Spearman and MAPE. The form of lowest mean
MAPE over k = 10 and 100 is ``nas.benchmarks.latency.SHOTS_FORM`` (the few-shot calibration's "work" form).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.benchmarks import benchmark_space, latency_table  # noqa: E402
from nas.benchmarks.few_shot import HELP_FLOPS_SPEARMAN, SPLITS  # noqa: E402
from nas.benchmarks.latency import SHOTS_FORM, PartProfiles  # noqa: E402
from nas.latency.fitting import TERM_SETS, ModelForm, Rows, fit  # noqa: E402

VALIDATION_DEVICES = SPLITS["nb201"].validation  # HELP's validation split
HELP_FLOPS = HELP_FLOPS_SPEARMAN["nb201"]  # HELP (NeurIPS 2021) Table 3: FLOPs alone on its test devices
DRAWS = 10


def shot_forms(shots: tuple[int, ...] = (10, 100)) -> None:
    space = benchmark_space("nb201")
    table = latency_table("nb201")
    profiles = PartProfiles(space)
    work = np.stack([profiles.work(space.parse(key)) for key in table.index])
    forms = [ModelForm(terms, 0.0, loss) for terms in TERM_SETS for loss in ("squared", "huber")]
    print(f"{'form':28s}" + "".join(f"  k={k}: Spearman  MAPE" for k in shots))
    overall = {}
    for form in forms:
        cells, mapes = [], []
        for k in shots:
            rho, mape = [], []
            for device in VALIDATION_DEVICES:
                y = table[device].to_numpy(float)
                for draw in range(DRAWS):
                    chosen = random.Random(f"{device}{k}{draw}").sample(range(len(y)), k)
                    fitted = fit(Rows(work[chosen], y[chosen], np.zeros(k, int), [device]), form)
                    predicted = fitted.predict(Rows(work, y, np.zeros(len(y), int), [device]))
                    rest = np.setdiff1d(np.arange(len(y)), chosen)
                    rho.append(spearmanr(predicted[rest], y[rest])[0])
                    mape.append(np.mean(np.abs(predicted[rest] / y[rest] - 1)))
            cells.append(f"        {np.mean(rho):.3f}  {np.mean(mape):.1%}")
            mapes.append(np.mean(mape))
        overall[form] = np.mean(mapes)
        print(f"{form.terms + ', ' + form.loss:28s}" + "".join(cells))
    best = min(overall, key=overall.get)
    print(f"lowest mean MAPE: {best.terms}, {best.loss}; shipped: {SHOTS_FORM.terms}, {SHOTS_FORM.loss}")


def networks() -> None:
    """A check of our networks against the ones measured: the Spearman correlation of their MACs with each
    device's measured latency, beside HELP's FLOPs figure where it gives one (a wrong skeleton would rank worse)."""
    for name in ("nb201", "fbnet"):
        space = benchmark_space(name)
        table = latency_table(name)
        macs = np.array([space.counts(space.parse(key))["macs"] for key in table.index])
        print(f"{name}: {len(table)} architectures, MACs {macs.min() / 1e6:.1f}-{macs.max() / 1e6:.1f} M")
        for device in table.columns:
            published = f" (HELP's FLOPs: {HELP_FLOPS[device]:.3f})" if name == "nb201" and device in HELP_FLOPS else ""
            print(f"  {device:16s} Spearman {spearmanr(macs, table[device])[0]:.3f}{published}")


FEW_SHOT_PROCEDURES = (("devices",), ("devices+work",), ("devices", "devices+work"), ("devices", "work", "devices+work"),
                       ("work",))


def few_shot_forms(shots: tuple[int, ...] = (10, 100), draws: int = 10) -> None:
    """Each procedure of ``nas.benchmarks.few_shot`` on HELP's validation devices of both spaces (never a test
    device): mean Spearman and MAPE at each k; the one of least MAPE averaged over k and spaces is shipped."""
    from nas.benchmarks.few_shot import DEFAULT_FORMS, evaluate_few_shot

    print(f"{'procedure (best by leave-one-out)':36s}" + "".join(f"  {space} k={k}: Spearman MAPE"
                                                             for space in SPLITS for k in shots))
    overall = {}
    for forms in FEW_SHOT_PROCEDURES:
        cells, mapes = [], []
        for space, split in SPLITS.items():
            frame = evaluate_few_shot(space, split.validation, shots, draws, forms)
            for k in shots:
                rows = frame[frame.shots == k]
                cells.append(f"  {rows.spearman.mean():21.3f} {rows.mape.mean():5.1%}")
                mapes.append(rows.mape.mean())
        overall[forms] = float(np.mean(mapes))
        print(f"{' | '.join(forms):36s}" + "".join(cells))
    best = min(overall, key=overall.get)
    print(f"least mean MAPE: {' | '.join(best)} ({overall[best]:.2%}); shipped: {' | '.join(DEFAULT_FORMS)}")


def few_shot_ceiling() -> None:
    """What no calibration from k rows can beat: the few-shot encoding fitted (ridge, linear or log link by
    leave-one-out, as the known devices' models are) to every row of each test device, scored on those rows; and
    the latency of the NAS-Bench-201 cells with no path from input to output against the others."""
    from nas.benchmarks.few_shot import encode, live_edges, ridge_loo

    for space, split in SPLITS.items():
        table = latency_table(space)
        x = encode(space).to_numpy()
        design = np.hstack([x, np.ones((len(x), 1))])
        for device in split.test:
            y = table[device].to_numpy(float)
            fits = {link: ridge_loo(x, y, log=link == "log") for link in ("linear", "log")}
            link = min(fits, key=lambda name: fits[name][2])
            predicted = design @ fits[link][0]
            predicted = np.exp(predicted) if link == "log" else predicted
            line = (f"{space} {device:14s} every row ({link}): Spearman {spearmanr(predicted, y)[0]:.3f}, "
                    f"MAPE {np.mean(np.abs(predicted / y - 1)):.1%}")
            if space == "nb201":
                space_ = benchmark_space(space)
                dead = np.array([not live_edges(space_.parse(k).ops)[1] for k in table.index])
                line += (f"; {dead.sum()} cells with no path: {np.min(y[dead]):.3f}-{np.max(y[dead]):.3f} ms, "
                         f"the others from {np.min(y[~dead]):.3f} ms")
            print(line)


def parallel_cost(parallel: Path = Path("experiments/proving/parallel"),
                  single: Path = Path("experiments/proving/full")) -> None:
    """Regret (200-epoch points to the oracle) of plan parallel's two-worker TPE searches against plan full's
    one-worker TPE searches of the same settings, score and measured latency, after q queries: per setting and over
    all, median against median with a bootstrap interval of the difference (searches resampled independently)."""
    from nas.proving import load_results
    from nas.proving.plan import PLANS
    from nas.proving.report import difference, outcomes

    plan = PLANS["parallel"]
    two = outcomes(plan, load_results(parallel))
    held = {k: r for k, r in load_results(single).items()
            if r["sampler"] == "tpe" and r["latency"] is None and r["score"] == "12ep" and r["setting"] in plan.settings}
    one = outcomes(plan, held)  # (plan full's searches read at plan parallel's checkpoints)
    print(f"two workers: {len(two) // len(plan.checkpoints)} searches; one worker: {len(held)} searches (plan full)")
    print("| setting | q | regret, 2 workers (median) | regret, 1 worker (median) | difference [95 % CI] |")
    print("|---|---|---|---|---|")
    for q in plan.checkpoints:
        for setting in (*plan.settings, "all"):
            a = two[(two.q == q) & ((two.setting == setting) | (setting == "all"))].regret.to_numpy()
            b = one[(one.q == q) & ((one.setting == setting) | (setting == "all"))].regret.to_numpy()
            diff, low, high = difference(a, b)
            print(f"| {setting} | {q} | {np.nanmedian(a):.2f} (n {len(a)}) | {np.nanmedian(b):.2f} (n {len(b)}) | "
                  f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("shot-forms", help="choose the form of the k-shot latency predictor")
    commands.add_parser("networks", help="our networks' MACs against each device's measured latency")
    commands.add_parser("few-shot-forms", help="choose the few-shot procedure on HELP's validation devices")
    commands.add_parser("few-shot-ceiling", help="the few-shot encoding fitted to every row of each test device")
    commands.add_parser("parallel-cost", help="two workers' TPE against one's, on plan parallel's settings")
    args = parser.parse_args()
    if args.command == "shot-forms":
        shot_forms()
    elif args.command == "few-shot-forms":
        few_shot_forms()
    elif args.command == "few-shot-ceiling":
        few_shot_ceiling()
    elif args.command == "parallel-cost":
        parallel_cost()
    else:
        networks()


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
