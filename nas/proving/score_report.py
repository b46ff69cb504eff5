"""The cheap scores' report: REPORT.md, scores.csv, correlations.csv and the plot, from a folder of
``nas.proving.scores`` (``experiments/bench_scores.py report``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import replacing, write_text
from .scores import (DATASET, LATENCY_DEVICE, PROXY, ZERO_COST_NAMES, format_interval, judge, score_frame,
                     whole_space)

TARGET_PUBLISHED = {"synflow": 0.737, "jacob_cov": 0.731}  # reproduced within 0.03: the implementation is right
TOLERANCE = 0.03
TARGET_BEST = 0.85
PLOTTED = ("synflow", "jacob_cov", "snip", "grad_norm", "12-epoch", "12-epoch + synflow + jacob_cov", "proxy",
           "proxy loss sum")


def _verdicts(table: pd.DataFrame) -> list[str]:
    overall = table[table.subset == "all"].set_index("score")
    lines = []
    for name, published in TARGET_PUBLISHED.items():
        if name not in overall.index:
            continue
        row = overall.loc[name]
        gap = row.spearman - published
        lines.append(f"- {name}: Spearman {format_interval(row.spearman, row.spearman_ci)} against the published "
                     f"{published:.3f}: {gap:+.3f}, {'within' if abs(gap) <= TOLERANCE else 'outside'} "
                     f"{TOLERANCE:.2f}.")
    cheap = overall.drop(index=[s for s in overall.index if s.startswith("proxy")], errors="ignore")
    if len(cheap):
        best = cheap.spearman.idxmax()
        row = cheap.loc[best]
        low = row.spearman_ci[0]
        word = ("met" if low >= TARGET_BEST else "not met" if row.spearman_ci[1] < TARGET_BEST
                else "not resolved (the interval spans it)")
        lines.append(f"- best cheap score: {best}, Spearman {format_interval(row.spearman, row.spearman_ci)}; "
                     f"target {TARGET_BEST:.2f}: {word}.")
    return lines


def plot_scores(frame: pd.DataFrame, path: Path) -> None:
    """Each score against the 200-epoch accuracy (ranks, so every score shares one scale)."""
    from matplotlib.figure import Figure

    names = [n for n in PLOTTED if n in frame and frame[n].notna().sum() >= 10]
    columns = 4
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(3.4 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, name in zip(axes.flat, names):
        have = frame[frame[name].notna()]
        score = have[name].replace([np.inf, -np.inf], np.nan).fillna(-np.inf)
        ax.scatter(score.rank(pct=True), have["truth"], s=2, alpha=0.35, rasterized=True)
        ax.set_title(f"{name} (n={len(have)})", fontsize=9)
        ax.set_xlabel("score, rank (fraction)")
        ax.set_ylabel("200-epoch accuracy (%)")
        ax.set_ylim(max(40.0, float(have["truth"].min()) - 1), float(have["truth"].max()) + 1)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    figure.suptitle(f"NAS-Bench-201 {DATASET.name}: cheap scores against {DATASET.final_split}, 200 epochs")
    with replacing(path) as tmp:
        figure.savefig(tmp, dpi=110)


def write_report(out: str | Path, resamples: int = 1000) -> Path:
    """Judge every score the folder holds; returns the path of REPORT.md."""
    out = Path(out)
    frame = score_frame(out)
    with replacing(out / "scores.csv") as tmp:
        frame.to_csv(tmp, float_format="%.6g")
    table = judge(frame, resamples=resamples)
    whole = whole_space(min(resamples, 200))
    with replacing(out / "correlations.csv") as tmp:
        pd.concat([table, whole]).to_csv(tmp, index=False, float_format="%.5g")
    plot_scores(frame, out / "scores.png")
    trained = frame["proxy seconds"].notna()
    lines = [f"# Cheap scores against 200-epoch training: NAS-Bench-201, {DATASET.name}", "",
             f"Truth: `{DATASET.final}` ({DATASET.final_split}, mean over the benchmark's seeds), never read while "
             f"scoring. Sample: the first {len(frame)} architectures of a fixed random permutation of the 15,625 "
             f"(seed 0); our proxy protocol on the first {int(trained.sum())} of them. Intervals: 95 % percentile "
             f"bootstrap over architectures ({resamples} resamples).", "",
             "Costs on the machine that computed them (one thread each): zero-cost scores "
             f"{frame['zero-cost seconds'].mean():.2f} s an architecture (all four); our proxy "
             + (f"{frame.loc[trained, 'proxy seconds'].mean():.1f} s an architecture ({PROXY.describe()})"
                if trained.any() else "not run") + "; the table's columns are free.", "",
             "## Targets", "", *_verdicts(table), "",
             "## Over the sample", "",
             "| score | n | Spearman [95 % CI] | Kendall [95 % CI] | published Spearman (whole space) |",
             "|---|---|---|---|---|"]
    for row in table[table.subset == "all"].itertuples():
        published = f"{row.published:.3f}" if pd.notna(row.published) else ""
        lines.append(f"| {row.score} | {row.n} | {format_interval(row.spearman, row.spearman_ci)} | "
                     f"{format_interval(row.kendall, row.kendall_ci)} | {published} |")
    lines += ["", "Whole space (all 15,625, the table's columns):", "",
              "| score | Spearman [95 % CI] | Kendall [95 % CI] | published |", "|---|---|---|---|"]
    for row in whole.itertuples():
        lines.append(f"| {row.score} | {format_interval(row.spearman, row.spearman_ci)} | "
                     f"{format_interval(row.kendall, row.kendall_ci)} | {row.published:.3f} |")
    subsets = [s for s in dict.fromkeys(table.subset) if s != "all"]
    lines += ["", f"## Within subsets: Spearman (n), top 10 % by the truth, and quartiles of measured "
              f"{LATENCY_DEVICE} latency", "", "| score | " + " | ".join(subsets) + " |",
              "|---|" + "---|" * len(subsets)]
    for score in dict.fromkeys(table.score):
        cells = []
        for subset in subsets:
            hit = table[(table.score == score) & (table.subset == subset)]
            cells.append(f"{hit.spearman.iloc[0]:.3f} ({hit.n.iloc[0]})" if len(hit) else "")
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    lines += ["", "Scores: " + ", ".join(ZERO_COST_NAMES) + " at initialisation (seed 0); params as the benchmark "
              "records them; MACs of our network; 12-epoch: the benchmark's one run; proxy: our protocol's val "
              "accuracy; proxy loss sum: minus the sum of its epochs' mean training loss; combinations: the mean of "
              "the scores' ranks (no label read).", "", "![scores](scores.png)", ""]
    path = out / "REPORT.md"
    write_text(path, "\n".join(lines))
    return path
