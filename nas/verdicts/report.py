"""The three verdicts, from whatever a plan's folder holds so far: tables, a plot and one Markdown report.

Every comparison is paired by seed (each model retrained with the same recipe and seeds 0..n-1) and read on the
**test** split (these are final figures; every selection before them was on val). A difference is a verdict only
when the paired t-test, Holm-adjusted over the comparisons of its table, gives p below 0.05 (the table errs with
probability at most 0.05); the 95 % Student-t interval shown beside it is unadjusted. Otherwise the report says
the data cannot tell, and what difference its pairs could have detected at 80 % power. Each model's own seed SD is
given beside it: the noise any comparison with it has to clear. Latencies are predictions (with the family's error
band), not measurements.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..files import read_json, replacing, write_text
from ..ablation import stats
from .plan import Plan
from .steps import REBUILD, budget_tag, load_models


def scores(root: Path, name: str, split: str = "test") -> dict[int, float]:
    """Top-1 (points) of every finished retraining of ``name``, by seed."""
    out = {}
    for path in sorted((root / "retrain").glob(f"{name}-seed*/results.json")):
        seed = int(path.parent.name.rsplit("-seed", 1)[1])
        out[seed] = float(read_json(path, "retraining's results", REBUILD)[f"{split}_top1"])
    return out


def describe(values: dict[int, float]) -> dict[str, float]:
    v = np.array(list(values.values()), dtype=float)
    low, high = stats.t_interval(v)
    return {"seeds": len(v), "mean": float(v.mean()) if len(v) else math.nan,
            "sd": float(v.std(ddof=1)) if len(v) >= 2 else math.nan, "ci_low": low, "ci_high": high}


def words(row: dict[str, Any], unit: str = "points") -> str:
    """A paired difference in words: better or worse where the table's Holm-adjusted paired t-test decides
    (``stats.holm_decisions``), else what the data cannot tell."""
    if row["pairs"] < 2:
        return f"not yet ({row['pairs']} pair{'s' if row['pairs'] != 1 else ''})"
    span = f"{row['diff']:+.2f} {unit} [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}], {row['pairs']} pairs"
    held = f", Holm p {row['t_p_holm']:.3g}" if math.isfinite(row.get("t_p_holm", math.nan)) else ""
    if row.get("decided") and row["diff"] > 0:
        return f"better: {span}{held}"
    if row.get("decided") and row["diff"] < 0:
        return f"worse: {span}{held}"
    span += held
    seen = row.get("detectable", math.nan)
    more = "" if not math.isfinite(seen) else f"; these pairs detect {seen:.2f} {unit} at 80 % power"
    return f"cannot tell: {span}{more}"


def _resolve(models: dict[str, Any], name: str) -> str:
    return models.get(name, {}).get("same_as") or name


def search_table(plan: Plan, root: Path) -> pd.DataFrame:
    """Verdict 1: each search's winner against each released variant within the budget, paired by seed."""
    from .steps import released_within

    models, rows = load_models(root), []
    for budget in plan.search.budgets:
        tag = budget_tag(budget)
        for kind in ("search", "oneshot"):
            name = f"{kind}-{tag}"
            if name not in models:
                continue
            winner = _resolve(models, name)
            for ref in released_within(plan, budget):
                a, b = scores(root, winner), scores(root, _resolve(models, ref))
                mine, theirs = describe(a), describe(b)
                row = {"budget_ms": budget, "search": kind, "winner": models[name]["summary"],
                       "winner_same_as": models[name].get("same_as") or "",
                       "winner_latency_ms": models[name]["latency_ms"][plan.phone], "reference": ref,
                       "reference_latency_ms": models[ref]["latency_ms"][plan.phone] if ref in models else math.nan,
                       "winner_test_mean": mine["mean"], "winner_test_sd": mine["sd"],
                       "reference_test_mean": theirs["mean"], "reference_test_sd": theirs["sd"],
                       **stats.paired(a, b)}
                row["same"] = _resolve(models, ref) == winner
                rows.append(row)
    stats.holm_decisions([r for r in rows if not r["same"]])  # one family: every comparison of this table
    for row in rows:
        row["verdict"] = f"the winner is {row['reference'].upper()} itself" if row["same"] else words(row)
    return pd.DataFrame(rows)


def family_table(plan: Plan, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verdict 3: every front member and released reference (test top-1 with its t interval, predicted latency
    with the family's band), and each front member against each reference it is not slower than, paired."""
    from ..latency.predictor import SEARCHED_FAMILY, load_device

    band = load_device(plan.phone).for_family(SEARCHED_FAMILY)
    models = load_models(root)
    names = [n for n in models if n.startswith("front-")] + list(plan.family.references)
    rows = []
    for name in names:
        if name not in models:
            continue
        latency = models[name]["latency_ms"][plan.phone]
        d = describe(scores(root, _resolve(models, name)))
        rows.append({"model": name, "architecture": models[name]["summary"], "origin": models[name]["origin"],
                     "latency_ms": latency, "latency_low_ms": band.lower_ms(latency),
                     "latency_high_ms": band.upper_ms(latency), **{f"test_{k}": v for k, v in d.items()}})
    table = pd.DataFrame(rows)
    pairs = []
    for _, f in table[table.model.str.startswith("front-")].iterrows() if len(table) else []:
        for ref in plan.family.references:
            if ref not in models or models[ref]["latency_ms"][plan.phone] < f.latency_ms:
                continue
            row = {"front": f.model, "reference": ref, "front_latency_ms": f.latency_ms,
                   "reference_latency_ms": models[ref]["latency_ms"][plan.phone],
                   **stats.paired(scores(root, _resolve(models, f.model)), scores(root, _resolve(models, ref)))}
            # not slower, the band allowing: the front member's latency at its band's upper edge
            row["not_slower"] = bool(band.upper_ms(f.latency_ms) <= row["reference_latency_ms"])
            pairs.append(row)
    stats.holm_decisions(pairs)
    for row in pairs:
        row["verdict"] = words(row)
        row["dominates"] = bool(row["decided"] and row["diff"] > 0 and row["not_slower"])
    return table, pd.DataFrame(pairs)


def family_plot(table: pd.DataFrame, path: Path, phone: str) -> None:
    from matplotlib.figure import Figure  # (no pyplot: a caller's backend and figures are left alone)

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for is_front, colour, label in ((True, "tab:blue", "searched front"), (False, "tab:red", "released")):
        part = table[table.model.str.startswith("front-") == is_front]
        if part.empty:
            continue
        yerr = np.nan_to_num(np.array([part.test_mean - part.test_ci_low, part.test_ci_high - part.test_mean]))
        xerr = np.array([part.latency_ms - part.latency_low_ms, part.latency_high_ms - part.latency_ms])
        ax.errorbar(part.latency_ms, part.test_mean, yerr=yerr, xerr=xerr, fmt="o", color=colour, capsize=3,
                    label=label)
        for _, r in part.iterrows():
            ax.annotate(r.model, (r.latency_ms, r.test_mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"predicted latency on {phone} (ms; bars: the family's error band)")
    ax.set_ylabel("test top-1 (%; bars: 95 % t interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=120)


def ablation_tables(plan: Plan, root: Path) -> dict[str, pd.DataFrame]:
    """Verdict 2: each ablation's summary (val; paired with the base) as `nas ablate` wrote it."""
    out = {}
    for what in plan.ablation.studies:
        path = root / f"ablation-{what}" / "summary.csv"
        if path.is_file():
            out[what] = pd.read_csv(path)
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def write_report(plan: Plan) -> str:
    """Write ``REPORT.md``, ``search.csv``, ``family.csv``, ``family_pairs.csv`` and ``family.png`` into the plan's
    folder from what it holds now; returns the Markdown."""
    root = plan.root
    lines = [f"# Verdicts: plan {plan.name!r} ({plan.source})", "",
             f"Data {plan.data}; every compared model retrained with `{plan.recipe}` for seeds 0-{plan.seeds - 1} "
             f"(paired); figures are **test** top-1 (%), differences paired by seed with 95 % t intervals; latency "
             f"predicted for {plan.phone}.", ""]
    done = sorted(p.stem for p in (root / "done").glob("*.json")) if (root / "done").is_dir() else []
    lines += [f"Steps done: {len(done)} markers, {len(list((root / 'retrain').glob('*/results.json')))} "
              "retrainings; commands with machine and date in `commands.log`.", ""]

    search = search_table(plan, root) if "search" in plan.verdicts else pd.DataFrame()
    lines += ["## 1. Does the search discover better variants?", ""]
    if search.empty:
        lines += ["No search has finished yet.", ""]
    else:
        with replacing(root / "search.csv") as tmp:
            search.to_csv(tmp, index=False)
        lines += ["| budget | search | winner (ms) | reference (ms) | winner test | reference test | winner - "
                  "reference |", "|---|---|---|---|---|---|---|"]
        for _, r in search.iterrows():
            same = f" (= {r.winner_same_as})" if r.winner_same_as else ""
            lines.append(f"| {r.budget_ms:g} ms | {r.search} | `{r.winner}`{same} ({r.winner_latency_ms:.3f}) | "
                         f"{r.reference} ({_fmt(r.reference_latency_ms, 3)}) | {_fmt(r.winner_test_mean)} "
                         f"(sd {_fmt(r.winner_test_sd)}) | {_fmt(r.reference_test_mean)} (sd "
                         f"{_fmt(r.reference_test_sd)}) | {r.verdict} |")
        lines.append("")

    lines += ["## 2. Does attention placement pay?", ""]
    noise = root / "noise.json"
    if noise.is_file():
        n = read_json(noise, "noise record", REBUILD)
        lines += [f"Noise measured first ({n['study']}, {n['first_seeds']} seeds, {n['protocol']} protocol): "
                  f"pooled paired SD {n['pooled_paired_sd_points']:.2f} points over {n['variants']} variants; "
                  f"{n['seeds_needed']:g} pairs resolve {n['resolve_points']:g} points at 80 % power (paired t-test, "
                  "the SD at its 80 % upper bound); "
                  f"the plan trains {n['seeds']}{' (capped by max_seeds)' if n['capped'] else ''}.", ""]
    tables = ablation_tables(plan, root) if "ablation" in plan.verdicts else {}
    if not tables:
        lines += ["No ablation has finished yet.", ""]
    for what, table in tables.items():
        lines += [f"### {what} (val top-1; `ablation-{what}/report.md` has the full report)", "",
                  "| variant | runs | val mean | latency iphone14 / 12 (ms) | - base (points) | Holm p |",
                  "|---|---|---|---|---|---|"]
        compared = [{"pairs": int(r.pairs), "diff": 100 * r["diff"], "diff_ci_low": 100 * r.diff_ci_low,
                     "diff_ci_high": 100 * r.diff_ci_high, "detectable": 100 * r.detectable,
                     "t_p_value": r.get("t_p_value", math.nan)} if not pd.isna(r.get("pairs")) else None
                    for _, r in table.iterrows()]
        stats.holm_decisions([c for c in compared if c is not None])
        for (_, r), row in zip(table.iterrows(), compared):
            diff = "base" if row is None else words(row)
            lines.append(f"| {r.variant} | {r.runs} | {100 * r.val_mean:.2f} | {r.latency_iphone14_ms:.3f} / "
                         f"{r.latency_iphone12_ms:.3f} | {diff} | {_fmt(r.get('p_holm'))} |")
        lines.append("")

    lines += ["## 3. A discovered family", ""]
    table, pairs = family_table(plan, root) if "family" in plan.verdicts else (pd.DataFrame(), pd.DataFrame())
    if table.empty or not table.model.str.startswith("front-").any():
        lines += ["The Pareto search has not finished yet.", ""]
    else:
        with replacing(root / "family.csv") as tmp:
            table.to_csv(tmp, index=False)
        with replacing(root / "family_pairs.csv") as tmp:
            pairs.to_csv(tmp, index=False)
        family_plot(table, root / "family.png", plan.phone)
        lines += ["| model | architecture | latency (ms, band) | test top-1 [95 % CI] | seeds |",
                  "|---|---|---|---|---|"]
        for _, r in table.iterrows():
            lines.append(f"| {r.model} | `{r.architecture}` | {r.latency_ms:.3f} ({r.latency_low_ms:.3f}-"
                         f"{r.latency_high_ms:.3f}) | {_fmt(r.test_mean)} [{_fmt(r.test_ci_low)}, "
                         f"{_fmt(r.test_ci_high)}] | {r.test_seeds} |")
        lines += ["", "Each front member against each released variant at least as slow (paired, test; better or "
                  "worse by Holm over these comparisons; `dominates`: better, and not slower even at the upper edge of "
                  "the front member's latency band):", ""]
        for _, r in pairs.iterrows():
            lines.append(f"- {r.front} ({r.front_latency_ms:.3f} ms) vs {r.reference} ({r.reference_latency_ms:.3f} "
                         f"ms): {r.verdict}{' -> dominates' if r.dominates else ''}")
        lines += ["", "![accuracy against latency](family.png)", ""]
    text = "\n".join(lines) + "\n"
    write_text(root / "REPORT.md", text)
    return text
