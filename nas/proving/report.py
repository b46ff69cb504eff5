"""The proving ground's report: each search's picks set against its setting's oracle.

Regret is the oracle's 200-epoch mean (the best that truly fits) minus the pick's, in percentage points, after q
table look-ups (queries: distinct architectures scored; rejections and re-proposals are free). Every figure is a
statistic over the plan's repeats with a 95 % percentile-bootstrap interval (2,000 resamples of the repeats). The
search selects on the 12-epoch accuracy, so even a perfect search of that proxy keeps a regret: the *proxy ceiling*
(the 200-epoch mean of the best-proxy architecture that fits), given beside every figure; the *proxy regret* (the
best 12-epoch accuracy that fits minus the pick's) is what the sampler itself controls.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..files import replacing, write_text
from ..benchmarks import DATASETS, latency_table, nb201_accuracies, oracle
from .plan import MEASURED, SETTINGS, Plan, latency_label
from .run import COMMANDS, PLAN, ProvingError, load_results, recorded_plan

CURVES = "curves.csv"
REPORT = "REPORT.md"
BOOTSTRAP = 2000
DEFAULT_SAMPLER = "tpe"  # SearchConfig's default: the sampler the targets are about
HEADLINE_QUERIES = 200
COLOURS = {"tpe": "tab:green", "random": "tab:blue", "evolution": "tab:orange", "nsga2": "tab:red", "gp": "tab:purple"}


def bootstrap(values: np.ndarray, statistic=np.median, seed: int = 0) -> tuple[float, float, float]:
    """The statistic and its 95 % percentile-bootstrap interval over ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = statistic(values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))], axis=1)
    low, high = np.quantile(samples, [0.025, 0.975])
    return float(statistic(values)), float(low), float(high)


def difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """median(a) - median(b) and its 95 % bootstrap interval (the two resampled independently)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    da = np.median(a[rng.integers(0, len(a), (BOOTSTRAP, len(a)))], axis=1)
    db = np.median(b[rng.integers(0, len(b), (BOOTSTRAP, len(b)))], axis=1)
    low, high = np.quantile(da - db, [0.025, 0.975])
    return float(np.median(a) - np.median(b)), float(low), float(high)


def pick_at(picks: list[list[int]], q: int) -> int | None:
    """The NAS-Bench-201 index picked after ``q`` queries (None before the first)."""
    chosen = None
    for number, index in picks:
        if number > q:
            break
        chosen = index
    return chosen


def outcomes(plan: Plan, results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (search, checkpoint): the pick's 200-epoch mean, 12-epoch accuracy and measured latency, its
    regret, proxy regret, whether it is the oracle and whether it breaks the budget."""
    table = nb201_accuracies().reset_index().set_index("index")
    rows = []
    oracles: dict[str, Any] = {}
    for record in results.values():
        setting = SETTINGS.get(record["setting"])
        if setting is None:
            continue
        dataset = DATASETS[setting.dataset]
        latency = None  # the device's measured latency by NAS-Bench-201 index
        if setting.constrained:
            measured = latency_table("nb201")[setting.device]
            latency = pd.Series(measured.reindex(table["arch_str"]).to_numpy(), index=table.index)
        if setting.key not in oracles:
            truth = latency_table("nb201")[setting.device] if setting.constrained else None
            oracles[setting.key] = oracle(dataset, truth, setting.budget_ms)
        best = oracles[setting.key]
        for q in plan.checkpoints:
            if q > record.get("planned", plan.queries):  # a capped sampler's search says nothing past its cap
                break
            index = pick_at(record["picks"], q)
            row = {"setting": setting.key, "latency": latency_label(record["latency"]), "sampler": record["sampler"],
                   "score": record["score"], "repeat": record["repeat"], "q": q, "queries_run": record["queries"]}
            if index is None:  # no pick yet, or no search (the predictor priced every architecture over the budget)
                rows.append({**row, "final": math.nan, "regret": math.nan, "proxy_regret": math.nan,
                             "oracle": False, "breaks": False, "latency_ms": math.nan, "no_pick": True})
                continue
            final = float(table.at[index, dataset.final])
            ms = float(latency.at[index]) if latency is not None else math.nan
            rows.append({**row, "final": final, "regret": best.final - final,
                         "proxy_regret": best.best_proxy - float(table.at[index, dataset.proxy]),
                         "oracle": table.at[index, "arch_str"] == best.arch,
                         "breaks": bool(latency is not None and ms > setting.budget_ms), "latency_ms": ms,
                         "no_pick": False})
    return pd.DataFrame(rows)


def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, latency, sampler, score, q): median regret with its interval, mean 200-epoch accuracy with its
    interval, median proxy regret, the shares that reach the oracle and break the budget."""
    rows = []
    for keys, group in frame.groupby(["setting", "latency", "sampler", "score", "q"], sort=False):
        regret = bootstrap(group["regret"].to_numpy())
        final = bootstrap(group["final"].to_numpy(), np.mean)
        rows.append(dict(zip(["setting", "latency", "sampler", "score", "q"], keys), repeats=len(group),
                         median_regret=regret[0], regret_low=regret[1], regret_high=regret[2],
                         mean_final=final[0], final_low=final[1], final_high=final[2],
                         median_proxy_regret=float(np.nanmedian(group["proxy_regret"])),
                         share_oracle=float(group["oracle"].mean()), share_breaks=float(group["breaks"].mean()),
                         share_no_pick=float(group["no_pick"].mean()),
                         median_latency_ms=float(np.nanmedian(group["latency_ms"]))
                         if group["latency_ms"].notna().any() else math.nan))
    return pd.DataFrame(rows)


def write_report(out: str | Path) -> str:
    """Write ``curves.csv``, the plots and ``REPORT.md`` into ``out`` from what it holds; returns a summary."""
    out = Path(out)
    if not (out / PLAN).exists():
        raise ProvingError(f"{out} holds no proving-ground run ({PLAN} missing); run `nas benchmark --out {out}`")
    plan = recorded_plan(out)
    results = load_results(out)
    if not results:
        raise ProvingError(f"{out} holds no finished search yet; run `nas benchmark --out {out}`")
    frame = outcomes(plan, results)
    table = curves(frame)
    with replacing(out / CURVES) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    plots = [plot_regret(table, plan, mode, out) for mode in table["latency"].unique()]
    text = report_markdown(plan, results, frame, table, plots, out)
    write_text(out / REPORT, text)
    return summary_lines(plan, results, table)


def _headline_q(plan: Plan) -> int:
    return max((q for q in plan.checkpoints if q <= HEADLINE_QUERIES), default=plan.checkpoints[0])


def summary_lines(plan: Plan, results: dict[str, Any], table: pd.DataFrame) -> str:
    q = _headline_q(plan)
    planned = sum(1 for _ in plan.runs())
    at = table[(table["q"] == q) & (table["latency"] == MEASURED) & (table["score"] == plan.scores[0])]
    lines = [f"proving ground {plan.name}: {len(results)}/{planned} searches; median regret after {q} queries "
             "(points of 200-epoch accuracy, measured latency):"]
    for sampler in plan.all_samplers:
        mine = at[at["sampler"] == sampler]
        if len(mine):
            lines.append(f"  {sampler:10s} median over settings {mine['median_regret'].median():.2f}; worst setting "
                         f"{mine['median_regret'].max():.2f}; oracle reached in {mine['share_oracle'].mean():.0%} of "
                         "searches")
    return "\n".join(lines)


def _fmt(value: float, low: float, high: float, digits: int = 2) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def report_markdown(plan: Plan, results: dict[str, Any], frame: pd.DataFrame, table: pd.DataFrame,
                    plots: list[str], out: Path) -> str:
    q = _headline_q(plan)
    planned = sum(1 for _ in plan.runs())
    seconds = pd.DataFrame([{"sampler": r["sampler"], "latency": latency_label(r["latency"]),
                             "seconds": r["seconds"], "trials": r["trials"]} for r in results.values()])
    cost = seconds.groupby(["latency", "sampler"]).agg(searches=("seconds", "size"),
                                                       mean_seconds=("seconds", "mean"),
                                                       mean_trials=("trials", "mean")).reset_index()
    commands = (out / COMMANDS).read_text().strip().splitlines() if (out / COMMANDS).exists() else []
    lines = [f"# Proving ground: plan `{plan.name}`", "",
             f"{len(results)} of {planned} planned searches held ({plan.repeats} repeats x {len(plan.samplers)} "
             f"samplers ({', '.join(plan.samplers)}) x {len(plan.settings)} settings with measured latency"
             + (f"; {', '.join(plan.shot_samplers)} with a {plan.shots}-shot latency predictor on the "
                "constrained settings" if plan.shots else "")
             + "".join(f"; {s} to {c} queries" for s, c in plan.capped)
             + f"; {plan.queries} queries each unless said). Scores: "
             f"{', '.join(plan.scores)} (the search selects on it); every accuracy below is NAS-Bench-201's "
             "200-epoch mean over its seeds (CIFAR-10: valid half; CIFAR-100 and ImageNet16-120: valid and test "
             "halves), which no search reads.", "",
             "Commands (UTC, machine, code):", "", "```", *commands[-10:], "```", "",
             "Search cost on this machine (seconds of one core per search, table look-ups included):", "",
             _markdown(cost), ""]
    lines += _headline_section(plan, frame, table)
    lines += _regret_section(plan, table, q)
    capped = max((c for _, c in plan.capped if c < q), default=None)  # the capped samplers' last checkpoint
    if capped is not None and capped in plan.checkpoints:
        lines += _regret_section(plan, table, capped)
    lines += _target_section(plan, frame, table, q)
    lines += _help_section(plan, table, q)
    for mode in dict.fromkeys(table["latency"]):
        if mode != MEASURED:
            lines += _regret_section(plan, table, q, mode)
    for path in plots:
        lines += [f"![regret against queries]({Path(path).name})", ""]
    lines += ["## How to read this", "",
              "- *Regret*: the oracle's 200-epoch mean (the best architecture whose measured latency fits) minus the "
              "pick's, in points; the pick after q queries is the architecture of best score among the first q "
              "scored. Median over repeats, 95 % bootstrap interval in brackets.",
              "- *Proxy ceiling*: the regret of a search that has found the best 12-epoch accuracy that fits (a "
              "perfect search of the proxy): where a search selecting on the 12-epoch accuracy ends once it finds "
              "that architecture. A search that has not found it may be above or below (a lucky pick of lower proxy "
              "may be better after 200 epochs); `median_proxy_regret` in curves.csv (the best 12-epoch accuracy "
              "that fits minus the pick's) is the part the sampler controls. Searches scored by the 200-epoch mean "
              "itself (plan `optimiser`) have no proxy between score and truth.",
              "- *Breaks*: with predicted latency, the share of picks whose measured latency exceeds the budget "
              "(with measured latency it is 0 by construction). *No pick*: searches that could not start because "
              "their few-shot predictor priced every architecture over the budget (`nas search` stops with that "
              "error); medians and means are over the searches that picked.",
              "- Not shown here: anything about the SwiftFormer space. These tables judge the machinery (samplers, "
              "de-duplication, budget checks, latency calibration) where answers are known; the SwiftFormer verdicts "
              "still need GPU-scale training (experiments/verdicts).", ""]
    return "\n".join(lines)


def _headline_section(plan: Plan, frame: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Per sampler (and latency source, score): the median over settings of each setting's median regret at every
    checkpoint, the settings where its regret is below random search's (the difference's interval below 0), and
    the share of searches that end at the oracle."""
    lines = ["## Headline: median over settings of the median regret (points)", "",
             "`below random`: settings where the sampler's median regret minus random search's has a 95 % bootstrap "
             f"interval below 0, after {_headline_q(plan)} queries (or the sampler's last checkpoint before), out of "
             "the settings both ran.", ""]
    rows = []
    for (mode, score, sampler), group in table.groupby(["latency", "score", "sampler"], sort=False):
        row = {"latency": mode, "score": score, "sampler": sampler, "settings": group["setting"].nunique()}
        for q in plan.checkpoints:
            at = group[group["q"] == q]
            if len(at):
                row[f"q={q}"] = f"{at['median_regret'].median():.2f}"
        last = int(group["q"].max())
        row["oracle reached (last q)"] = f"{group[group['q'] == last]['share_oracle'].mean():.0%}"
        at_q = min(last, _headline_q(plan))  # the target's checkpoint, where the sampler reached it
        row["below random"] = ""
        if sampler != "random":
            mine = frame[(frame["latency"] == mode) & (frame["score"] == score) & (frame["q"] == at_q)]
            below = shared = 0
            for key in group["setting"].unique():
                a = mine[(mine["setting"] == key) & (mine["sampler"] == sampler)]["regret"].to_numpy()
                b = mine[(mine["setting"] == key) & (mine["sampler"] == "random")]["regret"].to_numpy()
                if len(a) and len(b):
                    shared += 1
                    below += difference(a, b)[2] < 0
            row["below random"] = f"{below}/{shared} (q={at_q})" if shared else ""
        rows.append(row)
    return lines + [_markdown(pd.DataFrame(rows)), ""]


def _regret_section(plan: Plan, table: pd.DataFrame, q: int, mode: str = MEASURED) -> list[str]:
    at = table[(table["q"] == q) & (table["latency"] == mode)]
    if at.empty:
        return []
    lines = [f"## Regret after {q} queries, {mode} latency", "",
             "Median regret in points [95 % bootstrap interval], and the share of searches whose pick is the "
             "oracle itself.", ""]
    rows = []
    for key in plan.settings:
        setting = SETTINGS[key]
        if key not in set(at["setting"]):
            continue
        truth = oracle(DATASETS[setting.dataset],
                       latency_table("nb201")[setting.device] if setting.constrained else None, setting.budget_ms)
        row = {"setting": key, "oracle %": f"{truth.final:.2f}"}
        if "12ep" in plan.scores:  # (a search scored by the 200-epoch figures has no proxy between it and the truth)
            row["proxy ceiling"] = f"{truth.final - truth.proxy_pick_final:.2f}"
        for score in plan.scores:
            for sampler in plan.all_samplers:
                mine = at[(at["setting"] == key) & (at["sampler"] == sampler) & (at["score"] == score)]
                if len(mine):
                    m = mine.iloc[0]
                    name = sampler if len(plan.scores) == 1 else f"{sampler} ({score})"
                    row[name] = _fmt(m["median_regret"], m["regret_low"], m["regret_high"])
                    row[f"{name} oracle"] = f"{m['share_oracle']:.0%}"
                    if mode != MEASURED:
                        row[f"{name} over budget"] = f"{m['share_breaks']:.0%}" + (
                            f", {m['share_no_pick']:.0%} no pick" if m["share_no_pick"] > 0 else "")
        rows.append(row)
    return lines + [_markdown(pd.DataFrame(rows)), ""]


def _target_section(plan: Plan, frame: pd.DataFrame, table: pd.DataFrame, q: int) -> list[str]:
    if DEFAULT_SAMPLER not in plan.samplers or "random" not in plan.samplers:
        return []
    lines = [f"## The target: {DEFAULT_SAMPLER} (the default sampler) against random search after {q} queries", "",
             f"Median regret of {DEFAULT_SAMPLER} minus random's, with its 95 % bootstrap interval; `<= 0.1` says "
             f"whether {DEFAULT_SAMPLER}'s median regret is at most 0.1 points.", ""]
    at = frame[(frame["q"] == q) & (frame["latency"] == MEASURED)]
    rows = []
    for score in plan.scores:
        for key in plan.settings:
            mine = at[(at["setting"] == key) & (at["score"] == score)]
            a = mine[mine["sampler"] == DEFAULT_SAMPLER]["regret"].to_numpy()
            b = mine[mine["sampler"] == "random"]["regret"].to_numpy()
            if not len(a) or not len(b):
                continue
            diff = difference(a, b)
            verdict = "better" if diff[2] < 0 else "worse" if diff[1] > 0 else "cannot tell"
            rows.append({"setting": key, "score": score, f"{DEFAULT_SAMPLER} median": f"{np.median(a):.2f}",
                         "random median": f"{np.median(b):.2f}", "difference": _fmt(*diff),
                         "verdict": verdict, "<= 0.1": "yes" if np.median(a) <= 0.1 else "no"})
    return lines + [_markdown(pd.DataFrame(rows)), ""]


def _help_section(plan: Plan, table: pd.DataFrame, q: int) -> list[str]:
    keys = [k for k in plan.settings if SETTINGS[k].help_found]
    if not keys:
        return []
    lines = [f"## Beside HELP's Table 4 (CIFAR-100; {DEFAULT_SAMPLER} after {q} queries)", "",
             "HELP's found architecture (MetaD2A + HELP, 10 latency samples) as published; ours: mean 200-epoch "
             "accuracy of the picks with its 95 % interval, the share of picks over the budget and their median "
             "measured latency. HELP's accuracy may be another measure than this table's valid+test mean (several "
             "of its figures exceed the oracle of this table, some at a latency over the budget).", ""]
    rows = []
    at = table[(table["q"] == q) & (table["sampler"] == DEFAULT_SAMPLER) & (table["score"] == plan.scores[0])]
    for key in keys:
        setting = SETTINGS[key]
        truth = oracle(DATASETS[setting.dataset], latency_table("nb201")[setting.device], setting.budget_ms)
        row = {"device": setting.device, "budget ms": f"{setting.budget_ms:g}",
               "HELP found": f"{setting.help_found[1]:.1f} % at {setting.help_found[0]:g} ms",
               "oracle": f"{truth.final:.2f} % at {truth.latency_ms:.3g} ms"}
        for mode in dict.fromkeys(at["latency"]):
            mine = at[(at["setting"] == key) & (at["latency"] == mode)]
            if len(mine):
                m = mine.iloc[0]
                row[f"ours, {mode}"] = _fmt(m["mean_final"], m["final_low"], m["final_high"])
                row[f"{mode}: over budget"] = f"{m['share_breaks']:.0%} (median {m['median_latency_ms']:.3g} ms)"
                if m["share_no_pick"] > 0:
                    row[f"{mode}: over budget"] += f"; {m['share_no_pick']:.0%} no pick"
                row[f"{mode}: >= HELP"] = "yes" if m["final_low"] >= setting.help_found[1] else \
                    "no" if m["final_high"] < setting.help_found[1] else "cannot tell"
        rows.append(row)
    return lines + [_markdown(pd.DataFrame(rows)), ""]


def plot_regret(table: pd.DataFrame, plan: Plan, mode: str, out: Path) -> str:
    """Median regret (with its interval) against queries, one panel per setting, one line per sampler."""
    from matplotlib.figure import Figure

    mine = table[(table["latency"] == mode) & (table["score"] == plan.scores[0])]
    keys = [k for k in plan.settings if k in set(mine["setting"])]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        setting = SETTINGS[key]
        truth = oracle(DATASETS[setting.dataset],
                       latency_table("nb201")[setting.device] if setting.constrained else None, setting.budget_ms)
        for sampler in dict.fromkeys(mine["sampler"]):
            line = mine[(mine["setting"] == key) & (mine["sampler"] == sampler)].sort_values("q")
            colour = COLOURS.get(sampler)
            ax.plot(line["q"], line["median_regret"], marker="o", ms=3, label=sampler, color=colour)
            ax.fill_between(line["q"], line["regret_low"], line["regret_high"], alpha=0.2, color=colour)
        if plan.scores[0] == "12ep":
            ax.axhline(truth.final - truth.proxy_pick_final, color="grey", ls="--", lw=1, label="proxy ceiling")
        ax.set_xscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("queries")
        ax.set_ylabel("regret (points)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Proving ground ({mode} latency): median regret to the oracle, 95 % bootstrap band", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.0 * rows)))
    path = out / f"regret_{mode}.png"
    with replacing(path) as tmp:
        fig.savefig(tmp)
    return str(path)


def _markdown(frame: pd.DataFrame) -> str:
    return "(none)" if frame.empty else frame.to_markdown(index=False, floatfmt=".3g")
