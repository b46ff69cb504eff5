"""Latency predictors on the published rows: leave-one-row-out and leave-one-family-out, and the LUT's speed.

Every figure is a nested cross-validation of the whole calibration (the form is chosen again inside each fold,
without the held-out rows), next to the MACs-only baseline on the same split, the form shipped before (fixed,
no choice) and a wider grid of forms. Run by hand (not a test); record the output in experiments/RESULTS.md:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python experiments/bench_latency.py
"""
from __future__ import annotations

import dataclasses
import platform
import time
from collections import Counter
from importlib import resources

import numpy as np
import torch

import search_spaces
from nas.latency import load_device, read_measurements
from nas.latency.calibration import cross_validate
from nas.latency.evaluate import evaluate_calibration, scores
from nas.latency.fitting import FORMS, PREVIOUS, TERM_SETS, ModelForm
from nas.latency.lut import build_table

FILES = ("published_iphone.csv", "published_more_a15_a16.csv")
PHONES = ("iPhone 14", "iPhone 12")
SPLITS = ("row", "family")
# A wider grid, for comparison: also each device alone (shrinkage 0) and the squared loss.
WIDE = tuple(ModelForm(t, s, loss) for t in TERM_SETS for s in (10.0, 1.0, 0.0) for loss in ("huber", "squared"))


def samples():
    folder = resources.files("nas") / "data" / "latency"
    with resources.as_file(folder / FILES[0]) as a, resources.as_file(folder / FILES[1]) as b:
        data = read_measurements([a, b])
    return data


def line(name: str, predicted, measured) -> str:
    mape, within, tau = scores(predicted, measured)
    return f"| {name} | {mape:.1%} | {within:.0%} | {tau:.2f} |"


def phone_report(data, phone: str) -> None:
    start = time.perf_counter()
    chosen = evaluate_calibration(data.samples, phone, SPLITS)
    mine = [i for i, s in enumerate(data.samples) if s.device == phone]
    others = {name: {split: cross_validate(data.samples, split, forms, only_device=phone).predicted_ms[mine]
                     for split in SPLITS} for name, forms in (("previous", (PREVIOUS,)), ("wide", WIDE))}
    seconds = time.perf_counter() - start
    y = chosen.measured
    print(f"\n### {phone}: {len(y)} rows of {len({s.family for s in chosen.samples})} families; "
          f"{len(data.samples)} rows of {len(data.devices)} devices used ({seconds:.0f} s)\n")
    print("| model | family | res | measured ms | row-LOO ms | error | family-LOO ms | error | MACs-only row / family ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, s in enumerate(chosen.samples):
        r, f = chosen.predicted["row"][i], chosen.predicted["family"][i]
        print(f"| {s.model} | {s.family} | {s.resolution} | {s.latency_ms:.2f} | {r:.2f} | {r / s.latency_ms - 1:+.0%} | "
              f"{f:.2f} | {f / s.latency_ms - 1:+.0%} | {chosen.baseline['row'][i]:.2f} / "
              f"{chosen.baseline['family'][i]:.2f} |")
    for split in SPLITS:
        print(f"\n| {phone}, leave-one-{split}-out | MAPE | within +/-10 % | Kendall tau |\n|---|---|---|---|")
        print(line("**chosen procedure** (10 forms, one-standard-error rule)", chosen.predicted[split], y))
        print(line("MACs-only baseline (a * MACs + b, this phone's rows)", chosen.baseline[split], y))
        print(line("form shipped before (compute+norms, each device alone, squared; fixed)", others["previous"][split], y))
        print(line(f"wider grid ({len(WIDE)} forms, same rule)", others["wide"][split], y))
    print(f"\n| {phone}: family | rows | row-LOO MAPE | family-LOO MAPE | bias | max abs error ms | MACs-only "
          "family-LOO MAPE |\n|---|---|---|---|---|---|---|")
    for entry in chosen.families():
        row, fam = entry["splits"]["row"], entry["splits"]["family"]
        print(f"| {entry['family']} | {entry['rows']} | {row['mape']:.1%} | {fam['mape']:.1%} | {fam['bias']:+.0%} | "
              f"{fam['max_abs_ms']:.2f} | {fam['baseline_mape']:.1%} |")
    sf = [i for i, s in enumerate(chosen.samples) if s.family == "swiftformer"]
    for split in SPLITS:
        print(f"\nSwiftFormer |error| in ms, leave-one-{split}-out: " + ", ".join(
            f"{chosen.samples[i].model.split('_')[-1].upper()} {abs(chosen.predicted[split][i] - y[i]):.2f}" for i in sf))
    print("\nSwiftFormer |error| in ms, leave-one-family-out, form shipped before: " + ", ".join(
        f"{chosen.samples[i].model.split('_')[-1].upper()} {abs(others['previous']['family'][i] - y[i]):.2f}"
        for i in sf))
    forms = Counter(chosen.forms["family"])
    print("\nHeld-out rows per form chosen (leave-one-family-out): " + "; ".join(
        f"{n} by {form}" for form, n in forms.most_common()))


def graph_report(data) -> None:
    """The iPhone 14 SwiftFormer rows profiled as measured (no q/k normalisation) against as we deploy them."""
    deployed = [dataclasses.replace(s, graph="deployed") for s in data.samples]
    print("\n### The graph the SwiftFormer paper measured (iPhone 14, leave-one-family-out, chosen procedure)\n")
    print("| SwiftFormer rows profiled as | XS | S | L1 | L3 | iPhone 14 MAPE |\n|---|---|---|---|---|---|")
    for label, rows in (("measured: no q/k L2 normalisation", data.samples), ("deployed: with it", deployed)):
        cv = evaluate_calibration(rows, "iPhone 14", ("family",))
        errors = [f"{p / s.latency_ms - 1:+.0%}" for s, p in zip(cv.samples, cv.predicted["family"])
                  if s.family == "swiftformer"]
        print(f"| {label} | {' | '.join(errors)} | {scores(cv.predicted['family'], cv.measured)[0]:.1%} |")


def lut_speed() -> None:
    space = search_spaces.load_space("swiftformer")
    archs = list(space.samples(5000, seed=0))
    for device in ("iphone14", "iphone12"):
        predictor = load_device(device)
        table = build_table(space, predictor)
        best = 0.0
        for _ in range(5):
            start = time.perf_counter()
            for arch in archs:
                table.predict(arch)
            best = max(best, len(archs) / (time.perf_counter() - start))
        print(f"\nLUT {device} ({len(predictor.costs)} terms): {len(table.entries)} entries; {best:,.0f} predictions/s "
              f"on one core (best of 5 passes over {len(archs)} random architectures of space swiftformer)")


def shipped() -> None:
    print("\n| shipped predictor | procedure (nested leave-one-family-out MAPE of each) | form | intercept ms | "
          "band (q0.1 / q0.9) |\n|---|---|---|---|---|")
    for device in ("iphone14", "iphone12"):
        p = load_device(device)
        form = ModelForm(**p.calibration["form"])
        judged = ", ".join(f"{name} {mape:.1%}" for name, mape in p.calibration["procedures"].items())
        print(f"| {device} | {p.calibration['procedure']} ({judged}) | {form.describe()} | {p.intercept_ms:.3f} | "
              f"{p.band['lower']:+.0%} / {p.band['upper']:+.0%} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"# {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {len(FORMS)} forms")
    data = samples()
    print(f"skipped {len(data.skipped)} rows: " + "; ".join(line.split(": ", 1)[1][:80] for line in data.skipped))
    for phone in PHONES:
        phone_report(data, phone)
    graph_report(data)
    shipped()
    lut_speed()
    print("\nmean relative error of the shipped predictors in-sample: " + ", ".join(
        f"{d} {np.mean([abs(load_device(d).predict(s.profile) / s.latency_ms - 1) for s in data.of(d)]):.1%}"
        for d in ("iphone14", "iphone12")))
