"""An ablation's results, always derived from its study: runs table, per-variant summary, report and plots.

``nas ablate report DIR`` (or running the ablation again) rebuilds all of them from the study.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..files import replacing, write_text
from ..latency.lut import PHONES
from ..pareto import pareto_front
from ..tracking import log_runs
from . import stats
from .config import AblationConfig
from ..trials.study import FINAL
from .runs import status_of

RUN_COLUMNS = ["number", "variant", "labels", "seed", "protocol", "status", "val_accuracy", "test_accuracy",
               "params", "macs", *(f"latency_{p}_ms" for p in PHONES), "seconds", "cpu_seconds", "resolution",
               "worker", "reused_from", "code", "data", "architecture", "digest", "arch_json"]
PLOT = "accuracy_vs_latency.png"
STAGE_PLOT = "attention_by_stage.png"


def runs_frame(study: optuna.Study, cfg: AblationConfig) -> pd.DataFrame:
    """One row per finished run (trained, or diverged with no accuracy), with its variant's costs."""
    records = {r["name"]: r for r in study.user_attrs.get("nas_variants", [])}
    rows = []
    for t in study.get_trials(deepcopy=False):
        if status_of(t) not in FINAL:
            continue
        r = records[t.user_attrs["variant"]]
        rows.append({"number": t.number, "variant": r["name"], "labels": " ".join([r["name"], *r["aliases"]]),
                     "seed": t.user_attrs["seed"], "protocol": cfg.protocol, "status": status_of(t),
                     "val_accuracy": t.values[0] if t.values else math.nan,
                     "test_accuracy": t.user_attrs.get("test_accuracy"), "params": r["params"], "macs": r["macs"],
                     **{f"latency_{p}_ms": r[f"latency_{p}_ms"] for p in PHONES},
                     "seconds": t.user_attrs.get("seconds"), "cpu_seconds": t.user_attrs.get("cpu_seconds"),
                     "resolution": t.user_attrs.get("resolution"), "worker": t.user_attrs.get("worker", ""),
                     "reused_from": t.user_attrs.get("reused_from", ""),
                     "code": t.user_attrs.get("code", ""), "data": t.user_attrs.get("data", ""),
                     "architecture": r["summary"], "digest": r["digest"],
                     "arch_json": json.dumps(r["arch"], sort_keys=True)})
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return frame.sort_values(["seed", "number"]).reset_index(drop=True)


def scores_by_seed(runs: pd.DataFrame, variant: str) -> dict[int, float]:
    """A variant's val accuracy per seed (diverged runs left out)."""
    rows = runs[(runs["variant"] == variant) & runs["val_accuracy"].notna()]
    return dict(zip(rows["seed"].astype(int), rows["val_accuracy"].astype(float)))


def summary_frame(runs: pd.DataFrame, records: list[dict[str, Any]], base: str) -> pd.DataFrame:
    """Per variant: val mean, SD and bootstrap CI; costs; against the base: paired difference, t CI, sign-flip p,
    Holm-adjusted p, the seed-noise flag and the seeds needed to resolve the difference."""
    base_scores = scores_by_seed(runs, base)
    rows = []
    for r in records:
        scores = scores_by_seed(runs, r["name"])
        values = np.array(list(scores.values()))
        low, high = stats.bootstrap_ci(values)
        tests = runs.loc[runs["variant"] == r["name"], "test_accuracy"].dropna()
        row = {"variant": r["name"], "aliases": " ".join(r["aliases"]), "runs": len(values),
               "val_mean": values.mean() if len(values) else math.nan,
               "val_sd": values.std(ddof=1) if len(values) >= 2 else math.nan, "val_ci_low": low, "val_ci_high": high,
               "test_mean": tests.mean() if len(tests) else math.nan,
               **{f"latency_{p}_ms": r[f"latency_{p}_ms"] for p in PHONES}, "params": r["params"], "macs": r["macs"],
               "architecture": r["summary"]}
        if r["name"] != base:
            row.update(stats.paired(scores, base_scores))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("pairs", "diff", "diff_ci_low", "diff_ci_high", "diff_sd", "p_value", "t_p_value",
                   "within_seed_noise", "detectable"):
        if column not in frame:
            frame[column] = math.nan
    compared = frame["variant"] != base
    frame["p_holm"] = math.nan
    frame.loc[compared, "p_holm"] = stats.holm(frame.loc[compared, "p_value"].astype(float).tolist())
    return frame


def stage_effects(runs: pd.DataFrame, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Placement only: attention in stage K alone against attention nowhere (paired), and what it costs."""
    by_label = {label: r for r in records for label in (r["name"], *r["aliases"])}
    if "none" not in by_label:
        return pd.DataFrame()
    none = by_label["none"]
    rows = []
    for k in range(1, 1 + sum(label.startswith("only-s") for label in by_label)):
        r = by_label.get(f"only-s{k}")
        if r is None:
            continue
        effect = stats.paired(scores_by_seed(runs, r["name"]), scores_by_seed(runs, none["name"]))
        rows.append({"stage": k, "variant": r["name"], **effect,
                     **{f"latency_cost_{p}_ms": r[f"latency_{p}_ms"] - none[f"latency_{p}_ms"] for p in PHONES}})
    return pd.DataFrame(rows)


def pareto(summary: pd.DataFrame, phone: str = PHONES[0]) -> pd.DataFrame:
    """Variants no other is both as accurate (mean val) and as fast as on ``phone``."""
    return pareto_front(summary, "val_mean", f"latency_{phone}_ms")


# ---------------------------------------------------------------------------------------------- outputs
def write_outputs(out: str | Path, study: optuna.Study, cfg: AblationConfig) -> str:
    """Every output file in ``out``; returns the summary text."""
    out = Path(out)
    records = study.user_attrs.get("nas_variants", [])
    base = study.user_attrs.get("nas_base", "")  # the variant that is the base (its first label)
    runs = runs_frame(study, cfg)
    with replacing(out / "ablation.csv") as tmp:
        runs.to_csv(tmp, index=False)
    with replacing(out / "ablation.parquet") as tmp:
        runs.to_parquet(tmp, index=False)
    if cfg.track:
        rows = runs.reset_index(drop=True).assign(run=lambda f: f.index).to_dict("records")
        log_runs(out, "ablation", rows, "val_accuracy", "run", ["variant", "seed"])
    summary = summary_frame(runs, records, base)
    with replacing(out / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    effects = stage_effects(runs, records) if cfg.ablation == "placement" else pd.DataFrame()
    plot_accuracy(summary, cfg, out / PLOT)
    if len(effects):
        plot_stages(effects, cfg, out / STAGE_PLOT)
    text = summary_text(summary, runs, cfg, base)
    write_text(out / "report.md", report_markdown(summary, effects, runs, cfg, base, text))
    return text


def _protocol_line(cfg: AblationConfig) -> str:
    protocol = cfg.training_protocol()
    return f"{protocol.name} protocol ({protocol.config.describe().replace(', seed 0', '')})"


def summary_text(summary: pd.DataFrame, runs: pd.DataFrame, cfg: AblationConfig, base: str) -> str:
    n = int(runs["seed"].nunique()) if len(runs) else 0
    lines = [f"ablation {cfg.ablation} of {cfg.base} on {cfg.data}, {_protocol_line(cfg)}: {len(summary)} variants, "
             f"{len(runs)} finished runs of {len(summary) * cfg.seeds} (seeds 0..{cfg.seeds - 1}); val accuracy"]
    for _, row in summary.iterrows():
        latency = f"{row[f'latency_{PHONES[0]}_ms']:.3f} ms"
        if not row["runs"]:
            lines.append(f"{row['variant']}{' (base)' if row['variant'] == base else ''}: not trained yet, {latency}")
        elif row["variant"] == base:
            lines.append(f"{row['variant']} (base): val {row['val_mean']:.4f} over {row['runs']} run(s), {latency}")
        elif row["pairs"] < 2:
            versus = f"{row['diff']:+.4f} vs base over 1 seed" if row["pairs"] else "no seed shared with the base yet"
            lines.append(f"{row['variant']}: val {row['val_mean']:.4f}, {versus}: no interval or test before 2 "
                         f"paired seeds, {latency}")
        else:
            noise = "inside seed noise" if row["within_seed_noise"] else "outside seed noise"
            lines.append(f"{row['variant']}: val {row['val_mean']:.4f}, {row['diff']:+.4f} vs base (95% CI "
                         f"{row['diff_ci_low']:+.4f}..{row['diff_ci_high']:+.4f}, Holm p {row['p_holm']:.3g}, "
                         f"{noise}), {latency}")
    reused = runs["reused_from"].fillna("").str.rpartition("#")[0]
    for source, count in reused[reused != ""].value_counts(sort=False).items():
        lines.append(f"{count} run(s) trained by the ablation in {source} and reused (same architecture, seed, data "
                     "and protocol; column reused_from)")
    lines.append(omnibus_line(runs, summary))
    if n:
        lines.append(f"with {n} seed(s) the smallest p any paired test can give is {stats.smallest_p(n):.3g}")
    return "\n".join(lines)


def omnibus_line(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Whether the variants differ at all (Friedman over the seeds they share), in one line."""
    result = stats.omnibus({name: scores_by_seed(runs, name) for name in summary["variant"]})
    if math.isnan(result["p_value"]):
        return (f"do the variants differ at all: not tested until every variant of {result['variants']} (3 or more) "
                f"has 2 seeds in common (now {result['seeds']})")
    verdict = "no evidence that any differs" if result["p_value"] >= stats.ALPHA else "some differ"
    return (f"do the variants differ at all: Friedman chi2 {result['statistic']:.2f} over {result['variants']} "
            f"variants x {result['seeds']} shared seeds, p {result['p_value']:.3g} ({verdict})")


def band_lines(summary: pd.DataFrame, base: str) -> list[str]:
    """The latency predictors' error band for the searched family (its released variants' held-out errors where
    the calibration measured them, else the band on unseen families), applied to the base, against the spread
    of the variants: whether the latency column can order them on a phone at all."""
    from ..latency.predictor import SEARCHED_FAMILY, resolve_predictor

    lines = []
    for phone in PHONES:
        band = resolve_predictor(phone, None).for_family(SEARCHED_FAMILY).band
        column = summary[f"latency_{phone}_ms"]
        spread = f"the variants span {column.min():.3f}-{column.max():.3f} ms"
        if not band:
            lines.append(f"- {phone}: predicted latency without an error band; {spread}.")
            continue
        at = float(summary.loc[summary["variant"] == base, f"latency_{phone}_ms"].iloc[0]) if base else column.mean()
        low, high = band["lower"], band["upper"]
        caveat = ("It was measured on the released variants alone (each held out of its family's line); variants "
                  "that move attention or change depths differ from them in ways those few models do not span."
                  if band["split"].startswith("leave-one-model-out") else
                  "Differences between variants of one family are likely predicted better than that, but no phone "
                  "measurement here says by how much.")
        lines.append(f"- {phone}: {spread}; the predictor's {band['split']} error band (quantiles "
                     f"{band['quantile_low']:g}-{band['quantile_high']:g}, {band['rows']} rows) is {low:+.0%} / "
                     f"{high:+.0%} ({at * (1 + low):.3f}-{at * (1 + high):.3f} ms around the base). {caveat}")
    return lines


def report_markdown(summary: pd.DataFrame, effects: pd.DataFrame, runs: pd.DataFrame, cfg: AblationConfig,
                    base: str, text: str) -> str:
    protocol = cfg.training_protocol()
    split = "val"
    n = int(runs["seed"].nunique()) if len(runs) else 0
    table = summary[["variant", "aliases", "runs", "val_mean", "val_sd", "val_ci_low", "val_ci_high",
                     *(f"latency_{p}_ms" for p in PHONES), "params", "macs", "architecture"]].copy()
    table["params"] = (table["params"] / 1e6).round(3)
    table["macs"] = (table["macs"] / 1e6).round(1)
    compared = summary[summary["variant"] != base][["variant", "pairs", "diff", "diff_ci_low", "diff_ci_high",
                                                    "p_value", "p_holm", "within_seed_noise", "detectable"]]
    sections = [
        f"# Ablation report: {cfg.ablation} of {cfg.base}", "", "```", text, "```", "",
        f"Protocol: **{_protocol_line(cfg)}**, seeds 0..{cfg.seeds - 1}, the same seeds for every variant "
        f"(initialisation, batch order and training subset), data `{cfg.data}`. Every accuracy below is "
        f"**{split} accuracy** under this protocol unless a column says test.", "",
        f"![{split} accuracy against predicted {PHONES[0]} latency, {protocol.name} protocol]({PLOT})", "",
        f"## Variants ({split} accuracy, {protocol.name} protocol)", "",
        _markdown(table.rename(columns={"params": "params (M)", "macs": "MMACs"})), "",
        "Latency columns are predictions (`nas latency`), not measurements:", *band_lines(summary, base), ""]
    if protocol.reads_test:
        tests = summary[["variant", "test_mean"]].rename(columns={"test_mean": "test accuracy (mean)"})
        sections += ["## Test accuracy (reference protocol; reported, never selected on)", "", _markdown(tests), ""]
    sections += [
        f"## Against the base `{base}` (paired by seed, {split} accuracy, {protocol.name} protocol)", "",
        _markdown(compared), "",
        "- `diff`: mean over seeds of (variant - base); its 95 % interval is Student's t over the paired "
        "differences. The variants' own intervals above are percentile bootstraps, descriptive only: at 3 seeds "
        "such an interval covers about 74 % of the time, not 95 % (`nas.ablation.stats`).",
        "- `p_value`: exact two-sided sign-flip permutation test of the paired differences; `p_holm`: Holm's "
        "correction across the variants of this table.",
        f"- D{omnibus_line(runs, summary)[1:]}: Friedman's rank test with seeds as blocks, before any comparison "
        "with the base.",
        f"- What {n} seed(s) can resolve: the smallest p a paired test of {n} pairs can give is "
        f"{stats.smallest_p(n) if n else float('nan'):.3g}; 6 pairs are the fewest that can reach 0.05, and Holm "
        "across many variants asks for more. A difference whose interval contains 0 is flagged as inside seed "
        "noise (`within_seed_noise`).",
        "- `detectable`: the difference these pairs resolve at alpha 0.05 with power 0.8 (paired t-test, noncentral "
        "t), from the observed paired SD: what the design could have seen. A difference smaller than it, inside "
        "seed noise, is not evidence of no effect.",
        ""]
    if len(effects):
        sections += [f"## Attention by stage (only-sK against none, paired, {split} accuracy, {protocol.name} "
                     "protocol)", "", f"![per-stage effect of attention]({STAGE_PLOT})", "", _markdown(effects), ""]
    sections += [
        "## Provenance", "", *provenance_lines(runs), "",
        "## Files", "",
        "- `ablation.csv` / `ablation.parquet`: one row per run (variant, labels, seed, protocol, val and test "
        "accuracy, params, MACs, predicted latency per phone, seconds, `reused_from` for a run copied from "
        "another ablation with `--reuse`, the code's version and the data's fingerprint, digest, architecture "
        "JSON).",
        "- `summary.csv`: the tables above in one; the study journal is the single source of truth: "
        "`nas ablate report DIR` rebuilds every file from it, running the same command again resumes it.", ""]
    return "\n".join(sections)


def provenance_lines(runs: pd.DataFrame) -> list[str]:
    """Which code and which data the runs came from: one version each is what a comparison wants; several are
    shown with their counts, so a mixed table is visible (runs recorded before this existed count as unrecorded)."""
    lines = []
    for column, what, how in (("code", "code", "git commit, `+modified` where the code differed from it"),
                              ("data", "data", "fingerprint of the decoded images and labels")):
        counts = runs[column].fillna("").replace("", "unrecorded").value_counts()
        listed = ", ".join(f"`{value}` ({count} run{'s' if count > 1 else ''})" for value, count in counts.items())
        lines.append(f"- {what} ({how}): {listed or 'no runs yet'}")
    return lines


def _markdown(df: pd.DataFrame) -> str:
    return "(none)" if df.empty else df.to_markdown(index=False, floatfmt=".4g", missingval="")


def _span(counts: pd.Series) -> str:
    """How many seeds the points of a plot rest on: "3", or "2-3" while an ablation is partway."""
    low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
    return str(low) if low == high else f"{low}-{high}"


def plot_accuracy(summary: pd.DataFrame, cfg: AblationConfig, path: Path, phone: str = PHONES[0]) -> None:
    from matplotlib.figure import Figure  # (no pyplot: a caller's backend and figures are left alone)

    fig = Figure(figsize=(8, 5), dpi=120)
    ax = fig.subplots()
    done = summary.dropna(subset=["val_mean"])
    x, y = done[f"latency_{phone}_ms"], done["val_mean"]
    lower = (y - done["val_ci_low"]).fillna(0).clip(lower=0)
    upper = (done["val_ci_high"] - y).fillna(0).clip(lower=0)
    ax.errorbar(x, y, yerr=[lower, upper], fmt="o", color="tab:blue", capsize=3, label="variant (95% bootstrap CI)")
    for _, row in done.iterrows():
        ax.annotate(row["variant"], (row[f"latency_{phone}_ms"], row["val_mean"]), textcoords="offset points",
                    xytext=(5, 3), fontsize=7)
    front = pareto(summary, phone)
    if len(front):  # its variants ringed: a front of one variant draws no line
        ax.step(front[f"latency_{phone}_ms"], front["val_mean"], where="post", color="tab:green", lw=1.5,
                marker="o", markersize=11, markerfacecolor="none", label="Pareto front (mean)")
    ax.set_xlabel(f"predicted latency on {phone} (ms)")
    ax.set_ylabel(f"val accuracy, {cfg.protocol} protocol (mean over seeds)")
    ax.set_title(f"ablation {cfg.ablation} of {cfg.base}: val split, {cfg.protocol} protocol, "
                 f"{_span(done['runs'])} seed(s) per variant", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)


def plot_stages(effects: pd.DataFrame, cfg: AblationConfig, path: Path, phone: str = PHONES[0]) -> None:
    from matplotlib.figure import Figure  # (no pyplot: a caller's backend and figures are left alone)

    fig = Figure(figsize=(9, 4), dpi=120)
    acc, cost = fig.subplots(1, 2)
    stages = effects["stage"].astype(str).radd("stage ")
    lower = (effects["diff"] - effects["diff_ci_low"]).fillna(0).clip(lower=0)
    upper = (effects["diff_ci_high"] - effects["diff"]).fillna(0).clip(lower=0)
    acc.bar(stages, effects["diff"], yerr=[lower, upper], capsize=4, color="tab:blue")
    acc.axhline(0, color="black", lw=0.8)
    acc.set_ylabel("val accuracy: only-sK - none (paired, 95% CI)")
    acc.set_title(f"accuracy gained, val split, {cfg.protocol} protocol, {_span(effects['pairs'])} paired seed(s)",
                  fontsize=9)
    cost.bar(stages, effects[f"latency_cost_{phone}_ms"], color="tab:orange")
    cost.set_ylabel(f"predicted latency added on {phone} (ms)")
    cost.set_title("latency paid", fontsize=9)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
