"""Latency predictors on the published rows: leave-one-row-out and leave-one-family-out, and the LUT's speed.

Every figure is a nested cross-validation of the whole calibration (the form is chosen again inside each fold,
without the held-out rows), next to the MACs-only baseline on the same split, the form shipped before (fixed,
no choice) and a wider grid of forms. Run by hand (not a test); record the output in experiments/RESULTS.md:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python experiments/bench_latency.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python experiments/bench_latency.py --family [EXTRA.csv]  # the family
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python experiments/bench_latency.py --blend  # the tables' method, tried
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


# What the issue "Latency the searched family can trust" found before it: the four released variants as priced by
# the predictors shipped then (our family's model / timm's port; the search prices ours).
BEFORE = {"iPhone 14": {"xs": (0.900, 0.901), "s": (1.030, 1.031), "l1": (1.238, 1.239), "l3": (2.059, 2.059)},
          "iPhone 12": {"xs": (0.740, 0.976), "s": (0.924, 1.177), "l1": (1.303, 1.607), "l3": (2.443, 2.860)}}
PUBLISHED = {"iPhone 14": {"xs": 0.7, "s": 0.8, "l1": 1.1, "l3": 1.9}, "iPhone 12": {"xs": 1.0, "s": 1.2, "l1": 1.6,
                                                                                      "l3": 2.9}}


def family_report() -> None:
    """The released variants priced by the shipped predictors (our model and timm's port), before and after, and
    each variant's error when held out of its family's line (leave-one-model-out, the form kept)."""
    from nas.latency import predict_latency

    print("\n### The searched family priced as measured (shipped predictors)\n")
    print("| phone | variant | published ms | before: ours / timm's port ms | now: ours / timm's port ms | now: error "
          "| held out of its family's line: error |\n|---|---|---|---|---|---|---|")
    for phone in PHONES:
        predictor = load_device(phone)
        held = predictor.families.get("swiftformer", {}).get("held_out", {})
        for variant, published in PUBLISHED[phone].items():
            ours = predict_latency(f"swiftformer:{variant}", predictor)
            port = predict_latency(f"timm:swiftformer_{variant}", predictor)
            before = BEFORE[phone][variant]
            print(f"| {phone} | {variant.upper()} | {published:.1f} | {before[0]:.3f} / {before[1]:.3f} | {ours:.3f} / "
                  f"{port:.3f} | {ours / published - 1:+.1%} | "
                  f"{1 / (1 + held[f'timm:swiftformer_{variant}']) - 1:+.1%} |")
        line = predictor.families["swiftformer"]
        print(f"\n{phone}: the family's line has offset {line['offset_ms']:+.3f} ms and scale {line['scale']:.3f} over "
              f"the shared costs (intercept {predictor.intercept_ms:.3f} ms); band from its held-out errors "
              f"{line['band']['lower']:+.1%} / {line['band']['upper']:+.1%}; unseen-family band "
              f"{predictor.band['lower']:+.1%} / {predictor.band['upper']:+.1%}")


def shrinkage_report(data) -> None:
    """The family lines' strength: each strength's mean error of family members (families of 3 or more rows on the
    phone) held out of their family's line, the phone's shipped form (the criterion ``calibrate`` chooses by, on
    all rows), and the nested figure the shipped predictor carries: the same members' errors with the form and the
    strength chosen again without each one (``calibration.family_lines``)."""
    from nas.latency.calibration import family_strength_errors, group_labels
    from nas.latency.fitting import FAMILY_SHRINKAGES, ModelForm, Rows

    rows, models = Rows.of(data.samples), group_labels(data.samples, "row")
    print("\n### Family-line strength: mean held-out error over families of 3 or more rows\n")
    print("| phone (form) | " + " | ".join(f"{s:g}" for s in FAMILY_SHRINKAGES)
          + " | chosen | nested (shipped bands) |\n|---|" + "---|" * (len(FAMILY_SHRINKAGES) + 2))
    for phone in PHONES:
        predictor = load_device(phone)
        form = ModelForm(**predictor.calibration["form"])
        errors = family_strength_errors(rows, models, form, rows.devices.index(predictor.device))
        nested = [np.mean(np.abs(list(line["held_out"].values()))) for line in predictor.families.values()
                  if line["rows"] >= 3]
        print(f"| {phone} ({form.terms}) | " + " | ".join(f"{errors[s]:.1%}" for s in FAMILY_SHRINKAGES)
              + f" | {predictor.calibration['family_shrinkage']:g} | {np.mean(nested):.1%} |")


def extra_rows_report(data, extra: str) -> None:
    """Nested leave-one-family-out MAPE of each phone with rows of another file added (e.g. rows of the shared
    all_published.csv that the shipped files lack), beside the shipped files alone."""
    from nas.latency.calibration import judge_procedures

    more = read_measurements([*data.sources.split(", "), extra])
    print(f"\n### Adding {extra} ({len(more.samples) - len(data.samples)} more usable rows)\n")
    print("| phone | rows used | chosen among forms | form shipped before |\n|---|---|---|---|")
    for label, source in (("shipped files", data), ("with the extra rows", more)):
        for phone in PHONES:
            judged = judge_procedures(source.samples, phone, "family")
            print(f"| {phone}, {label} | {len(source.samples)} | " + " | ".join(f"{v[0]:.1%}" for v in judged.values())
                  + " |")


def blend_report(data) -> None:
    """The few-shot method of the benchmark tables (``nas.benchmarks.few_shot``: a phone priced as a non-negative
    blend of the other devices' own models, plus an intercept) tried on the published rows, leave-one-family-out
    and nested as the shipped figures are: each held-out family leaves every device's fit, and the blend is
    fitted on the phone's remaining rows. The other devices' models are each device alone in a fixed form."""
    from nas.benchmarks.few_shot import fit_blend, predict_linear
    from nas.latency.calibration import group_labels
    from nas.latency.fitting import BASELINE, Rows, fit
    from nas.latency.predictor import device_key

    rows = Rows.of(data.samples)
    families = group_labels(data.samples, "family")
    print("\n| phone | basis: each other device alone in | nested leave-one-family-out MAPE | shipped |")
    print("|---|---|---|---|")
    shipped_mape = {"iPhone 14": "24.0 %", "iPhone 12": "9.5 %"}
    for phone in PHONES:
        d = rows.devices.index(device_key(phone))
        mine = rows.device == d
        for form in (BASELINE, PREVIOUS):
            predicted = np.full(len(rows.latency_ms), np.nan)
            for family in dict.fromkeys(families[mine]):
                test = families == family
                fitted = fit(rows.take(np.flatnonzero(~test)), form)
                others = [k for k in range(len(rows.devices))
                          if k != d and np.all(np.isfinite(fitted.costs[k]))]
                basis = np.stack([fitted.predict(Rows(rows.work, rows.latency_ms, np.full(len(rows.device), k),
                                                      rows.devices)) for k in others], 1)
                train = mine & ~test
                coef = fit_blend(basis[train], rows.latency_ms[train])
                predicted[mine & test] = predict_linear(coef, basis[mine & test])
            mape = np.mean(np.abs(predicted[mine] / rows.latency_ms[mine] - 1))
            print(f"| {phone} | {form.describe()} | {mape:.1%} | {shipped_mape[phone]} |")


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    import sys

    if sys.argv[1:2] == ["--blend"]:
        blend_report(samples())
        raise SystemExit

    if sys.argv[1:2] == ["--family"]:  # the family table alone (seconds)
        family_report()
        shrinkage_report(samples())
        if sys.argv[2:]:
            extra_rows_report(samples(), sys.argv[2])
        raise SystemExit
    torch.set_num_threads(1)
    print(f"# {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {len(FORMS)} forms")
    data = samples()
    print(f"skipped {len(data.skipped)} rows: " + "; ".join(line.split(": ", 1)[1][:80] for line in data.skipped))
    for phone in PHONES:
        phone_report(data, phone)
    graph_report(data)
    shipped()
    family_report()
    lut_speed()
    print("\nmean relative error of the shipped predictors in-sample: " + ", ".join(
        f"{d} {np.mean([abs(load_device(d).predict(s.profile) / s.latency_ms - 1) for s in data.of(d)]):.1%}"
        for d in ("iphone14", "iphone12")))
