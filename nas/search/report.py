"""A search's results, always derived from its study: tables, Pareto front, best architecture, plot, report.

``nas report DIR`` rebuilds all of them from the study, so they can never disagree with it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import pandas as pd

from ..files import replacing, write_text
from ..pareto import pareto_front as front_of
from ..tracking import log_runs
from .analysis import HISTORY, HYPERVOLUME, IMPORTANCES, importances, trained_count, write_analysis
from .config import SearchConfig, SearchError
from ..trials.storage import open_recorded
from ..trials.study import retry_of, status_of

PLOT = "accuracy_vs_latency.png"
COLUMNS = ["number", "status", "reference", "architecture", "digest", "params", "macs", "latency_ms",
           "latency_upper_ms", "val_accuracy",
           "last_val_accuracy", "state", "duration_s", "train_seconds", "train_cpu_seconds", "fail_reason",
           "duplicate_of", "retry_of", "parent", "worker", "arch_json"]
TRUTH = ["measured_latency_ms", "final_accuracy"]  # a tabular benchmark's truth, beside each score (not selected on)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: architecture, size, predicted latency and its error band's upper edge, val accuracy
    (the evaluator's), state, duration."""
    rows = []  # (an empty study still gives the columns, so every output can be written)
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number, "status": status_of(t), "reference": attrs.get("reference", ""),
            "architecture": attrs.get("summary", ""), "digest": attrs.get("digest", ""),
            "params": attrs.get("params"), "macs": attrs.get("macs"), "latency_ms": attrs.get("latency_ms"),
            "latency_upper_ms": attrs.get("latency_upper_ms"),
            "val_accuracy": t.values[0] if t.values and status_of(t) in ("trained", "reference", "duplicate") else None,
            "last_val_accuracy": max(t.intermediate_values.items())[1] if t.intermediate_values else None,
            "state": t.state.name, "duration_s": duration,
            "train_seconds": attrs.get("seconds", attrs.get("train_seconds")),  # (named so before 2026-12-08)
            "train_cpu_seconds": attrs.get("cpu_seconds", attrs.get("train_cpu_seconds")),
            "fail_reason": attrs.get("fail_reason", ""),
            "duplicate_of": attrs.get("duplicate_of"), "retry_of": retry_of(t), "parent": attrs.get("parent"),
            "worker": attrs.get("worker", ""),
            "arch_json": json.dumps(attrs["arch"], sort_keys=True) if "arch" in attrs else "",
            **{key: attrs[key] for key in TRUTH if key in attrs},
        })
    truth = [key for key in TRUTH if any(key in row for row in rows)]  # (only a tabular study has these columns)
    return pd.DataFrame(rows, columns=COLUMNS + truth)


def evaluated(df: pd.DataFrame) -> pd.DataFrame:
    """Trials with a val accuracy of their own (trained, or references), all within the budget."""
    return df[df["status"].isin(["trained", "reference"])]


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Evaluated trials no other is both as accurate and as fast as (and strictly better in one)."""
    return front_of(evaluated(df), "val_accuracy", "latency_ms")


def hypervolume(df: pd.DataFrame, budget_ms: float) -> float:
    """Area under the Pareto front's accuracy step curve from 0 to the budget, divided by the budget: the
    mean best accuracy attainable below a latency drawn uniformly from [0, budget] (0 to 1)."""
    front = pareto_front(df)
    area, previous, height = 0.0, None, 0.0
    for _, row in front.iterrows():
        if previous is not None:
            area += height * (row["latency_ms"] - previous)
        previous, height = row["latency_ms"], row["val_accuracy"]
    if previous is not None:
        area += height * (budget_ms - previous)
    return area / budget_ms


def load_run(out: str | Path) -> tuple[SearchConfig, optuna.Study]:
    return open_recorded(out, "search.json", SearchConfig.from_dict, SearchError, "nas search")


def write_outputs(out: str | Path, study: optuna.Study, cfg: SearchConfig) -> str:
    """Write every output file into ``out`` and return the summary text."""
    out = Path(out)
    df = trials_frame(study)
    with replacing(out / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    with replacing(out / "trials.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    front = pareto_front(df)
    write_text(out / "pareto.json", json.dumps([_record(row) for _, row in front.iterrows()], indent=2) + "\n")
    done = evaluated(df)
    best = done.loc[done["val_accuracy"].idxmax()] if len(done) else None
    if best is not None:
        write_text(out / "best_arch.json", json.dumps(json.loads(best["arch_json"]), indent=2, sort_keys=True) + "\n")
    measured = cfg.tabular and cfg.latency_shots is None
    plot(df, cfg.budget_ms, out / PLOT, cfg.score_name()[0], f"{'measured' if measured else 'predicted'} latency (ms)")
    weights = importances(study)
    plots = write_analysis(out, study, cfg, weights)
    if cfg.track:
        params = {t.number: t.params for t in study.get_trials(deepcopy=False)}
        trained = [{**row, **params.get(row["number"], {})} for row in df[df["status"] == "trained"].to_dict("records")]
        log_runs(out, "search", trained, "val_accuracy", "number", sorted({k for p in params.values() for k in p}),
                 ["latency_ms", "params"])
    summary = summary_text(df, cfg)
    write_text(out / "report.md", report_markdown(df, cfg, summary, plots, weights, trained_count(study)))
    return summary


def _record(row: pd.Series) -> dict[str, Any]:
    return {"number": int(row["number"]), "reference": row["reference"] or None, "architecture": row["architecture"],
            "val_accuracy": float(row["val_accuracy"]), "latency_ms": float(row["latency_ms"]),
            "latency_upper_ms": None if pd.isna(row["latency_upper_ms"]) else float(row["latency_upper_ms"]),
            "params": int(row["params"]),
            "macs": int(row["macs"]), "arch": json.loads(row["arch_json"])}


def summary_text(df: pd.DataFrame, cfg: SearchConfig) -> str:
    counts = df["status"].value_counts().to_dict()
    done = evaluated(df)
    lines = [f"study {cfg.study}: budget {cfg.budget_ms:g} ms on {cfg.device or cfg.predictor} "
             f"({_margin_text(cfg)}), space {cfg.space}, data {cfg.data}, sampler {cfg.sampler}, objective "
             f"{cfg.objective}",
             "trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])),
             f"over budget, rejected before training: {counts.get('rejected', 0)}"]
    searched = done[done["status"] == "trained"]
    if len(searched):
        b = searched.loc[searched["val_accuracy"].idxmax()]
        lines.append(f"best found: #{b['number']} val accuracy {b['val_accuracy']:.4f}, {b['latency_ms']:.3f} ms"
                     f"{_upper_text(b)}, {b['params'] / 1e6:.2f} M params, {b['macs'] / 1e6:.0f} MMACs: "
                     f"{b['architecture']}")
    refs = done[done["status"] == "reference"].sort_values("val_accuracy", ascending=False)
    for _, r in refs.iterrows():
        lines.append(f"reference {r['reference']}: val accuracy {r['val_accuracy']:.4f}, {r['latency_ms']:.3f} ms"
                     f"{_upper_text(r)}")
    if len(searched) and len(refs):
        gap = searched["val_accuracy"].max() - refs["val_accuracy"].max()
        lines.append(f"best found - best reference: {gap:+.4f} val accuracy ({cfg.score_name()[0]}), one score each; "
                     f"the best of {len(searched)} noisy scores against the best of {len(refs)} is biased upwards: "
                     "retrain both with fresh seeds before claiming a gain")
    lines.append(f"Pareto front: {len(pareto_front(df))} architectures; hypervolume {hypervolume(df, cfg.budget_ms):.4f}")
    if "final_accuracy" in df.columns and len(searched):
        lines += truth_lines(df, searched.loc[searched["val_accuracy"].idxmax()], cfg)
    return "\n".join(lines)


def truth_lines(df: pd.DataFrame, best: pd.Series, cfg: SearchConfig) -> list[str]:
    """A tabular search's winner as it truly is, beside the table's oracle (the best 200-epoch accuracy whose
    measured latency fits)."""
    from ..benchmarks.latency import measured
    from ..benchmarks.tables import oracle
    from ..benchmarks.tabular import parse_data

    dataset = parse_data(cfg.data)
    truth = oracle(dataset, measured("nb201", cfg.device), cfg.budget_ms)
    fits = "fits" if best["measured_latency_ms"] <= cfg.budget_ms else "BREAKS"
    return [f"the winner truly: {best['measured_latency_ms']:.3f} ms measured ({fits} the budget), "
            f"{100 * best['final_accuracy']:.2f} % after 200 epochs ({dataset.final_split}, mean of the benchmark's "
            "seeds)",
            f"oracle: {truth.final:.2f} % at {truth.latency_ms:.3f} ms ({truth.feasible:,} architectures fit); regret "
            f"{truth.final - 100 * best['final_accuracy']:.2f} points; a perfect search on the 12-epoch proxy would "
            f"reach {truth.proxy_pick_final:.2f} %"]


def _upper_text(row: pd.Series) -> str:
    return "" if pd.isna(row["latency_upper_ms"]) else f" (band upper edge {row['latency_upper_ms']:.3f} ms)"


def _margin_text(cfg: SearchConfig) -> str:
    if cfg.latency_margin == "band":
        return "the upper edge of the predictor's error band must fit"
    if cfg.tabular and cfg.latency_shots is None:
        return "the measured latency must fit"
    return "the predicted latency must fit; no margin"


def report_markdown(df: pd.DataFrame, cfg: SearchConfig, summary: str, plots: Sequence[str] = (),
                    weights: Mapping[str, float] | None = None, trained: int = 0) -> str:
    done = evaluated(df).sort_values("val_accuracy", ascending=False)
    columns = ["number", "status", "reference", "val_accuracy", "latency_ms", "latency_upper_ms", "params", "macs",
               "architecture"]
    table = done[columns].head(15).copy()
    table["params"] = (table["params"] / 1e6).round(3)
    table["macs"] = (table["macs"] / 1e6).round(1)
    front = pareto_front(df)[["number", "reference", "val_accuracy", "latency_ms", "latency_upper_ms", "architecture"]]
    score, how = cfg.score_name()
    return "\n".join([
        f"# Search report: {cfg.study}", "", "```", summary, "```", "",
        f"![accuracy against predicted latency]({PLOT})", "",
        f"## Best architectures ({score} on val)", "", _markdown(table.rename(columns={"params": "params (M)",
                                                                                      "macs": "MMACs"})), "",
        "## Pareto front (accuracy against predicted latency)", "", _markdown(front), "",
        *_analysis_markdown(plots, weights or {}, score, trained),
        "## Protocol", "",
        f"- Latency: predicted for the deployed model (batch 1, {cfg.device or cfg.predictor}) by the per-block "
        f"table; `latency_upper_ms` is the upper edge of the error band of the predictor as it prices this family "
        f"({_band_text(cfg)}). Margin: {_margin_text(cfg)}; architectures over {cfg.budget_ms:g} ms by that "
        "measure are recorded as infeasible and never trained.",
        f"- Accuracy: {how}; every trial, references included, is scored the same way.",
        _splits_text(cfg),
        "- `best_arch.json` is the most accurate architecture within the budget (it may be a reference); "
        "`pareto.json` lists the front; `trials.csv` / `trials.parquet` every trial.",
        "- The study is the single source of truth: `nas report DIR` rebuilds this report from it; running the "
        "same `nas search` command again resumes it; `optuna-dashboard <storage>` opens it.", ""])


def _analysis_markdown(plots: Sequence[str], weights: Mapping[str, float], score: str, trained: int) -> list[str]:
    """Which decisions matter and how the search progressed (Optuna's analysis of the trained trials)."""
    if not plots:
        return []
    lines = ["## What the trials say (Optuna's analysis of the trained trials)", ""]
    if weights:
        lines += [f"How much each searched decision matters for reaching the best {score} over the {trained} trained "
                  "trials (Optuna's PED-ANOVA: its values in the top 10 % of trials against all; normalised to sum "
                  "to 1; decisions present in every trained trial only; with few trials, a rough guide):", "",
                  _markdown(pd.DataFrame({"decision": list(weights), "importance": [round(v, 3) for v in
                                                                                    weights.values()]})), ""]
    titles = {IMPORTANCES: "parameter importances", HISTORY: "optimisation history", HYPERVOLUME: "hypervolume history"}
    lines += [f"![{titles[name]}]({name})" for name in plots] + [""]
    return lines


def _band_text(cfg: SearchConfig) -> str:
    """What the band of the search's predictor is, and what it covers."""
    if cfg.tabular:
        return "none: latency is the device's measured figure" if cfg.latency_shots is None else \
            "none: a few-shot predictor carries no band"
    from ..latency.predictor import SEARCHED_FAMILY, resolve_predictor

    try:
        band = resolve_predictor(cfg.device, cfg.predictor).for_family(SEARCHED_FAMILY).band
    except ValueError:
        return "the predictor could not be read to describe its band"
    if not band:
        return "this predictor has no band"
    n = band.get("rows", 0)
    cover = f"; from {n} points, within whose range a new model's error falls with probability at most " \
            f"(n-1)/(n+1) = {(n - 1) / (n + 1):.0%}" if n else ""
    return (f"the {band['quantile_low']:g} and {band['quantile_high']:g} quantiles of measured / predicted - 1, "
            f"{band.get('split', 'held out')}{cover}")


def _splits_text(cfg: SearchConfig) -> str:
    if cfg.tabular:
        from ..benchmarks.tabular import parse_data

        dataset = parse_data(cfg.data)
        return (f"- Splits: selection reads only the table's score ({cfg.score_name()[1]}; the 12-epoch figure is "
                f"{dataset.proxy_split}); `final_accuracy` is the 200-epoch mean on {dataset.final_split} and "
                "`measured_latency_ms` the device's measured figure, recorded for judging, never selected on.")
    return (f"- Splits: selection and pruning read only the val hold-out ({cfg.proxy.val_fraction:g} of each class of "
            f"the source's training split, seed {cfg.proxy.val_seed}), never the test split; every accuracy here is "
            "val accuracy.")


def _markdown(df: pd.DataFrame) -> str:
    return "(none)" if df.empty else df.to_markdown(index=False, floatfmt=".4g", missingval="")


def plot(df: pd.DataFrame, budget_ms: float, path: Path, score: str = "proxy accuracy",
         latency: str = "predicted latency (ms)") -> None:
    from matplotlib.figure import Figure  # (no pyplot: a caller's backend and figures are left alone)

    fig = Figure(figsize=(8, 5), dpi=120)
    ax = fig.subplots()
    searched = df[df["status"] == "trained"]
    refs = df[df["status"] == "reference"]
    rejected = df[df["status"] == "rejected"]
    ax.scatter(searched["latency_ms"], searched["val_accuracy"], s=18, color="tab:blue", alpha=0.7,
               label=f"searched ({len(searched)})")
    front = pareto_front(df)
    if len(front):
        xs = list(front["latency_ms"]) + [budget_ms]
        ys = list(front["val_accuracy"]) + [front["val_accuracy"].iloc[-1]]
        ax.step(xs, ys, where="post", color="tab:green", lw=1.5, label="Pareto front")
    if len(refs):
        ax.scatter(refs["latency_ms"], refs["val_accuracy"], marker="*", s=160, color="tab:red", zorder=5,
                   label="SwiftFormer references")
    for _, r in refs.iterrows():
        ax.annotate(r["reference"], (r["latency_ms"], r["val_accuracy"]), textcoords="offset points", xytext=(6, 4))
    ax.axvline(budget_ms, color="black", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    if len(rejected):
        bottom = ax.get_ylim()[0] if len(searched) or len(refs) else 0
        ax.plot(rejected["latency_ms"], [bottom] * len(rejected), "|", color="grey", alpha=0.5,
                label=f"rejected over budget ({len(rejected)})")
    ax.set_xlabel(latency)
    ax.set_ylabel(f"{score} (val split)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
