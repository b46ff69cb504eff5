"""The fidelity table: every scorer's rank agreement with the reference protocol, next to its cost.

Scorers are ranked against the reference protocol's *val* accuracy (seed 0), which is what a choice between
proxies may look at; the agreement with its *test* accuracy is shown as the final figure. The noise ceiling is
the reference against its own second seed, on the architectures that have one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .benchmark import PROXIES, REFERENCE
from .scoring import agreement


DEFAULT = PROXIES[0].name  # the search's default proxy: every scorer is also compared with it, paired


def scorer_table(results: pd.DataFrame, extra: dict[str, pd.Series] | None = None,
                 n_boot: int = 2000) -> pd.DataFrame:
    """One row per scorer: tau-b [95 % CI] overall and within latency bins, top-k overlap, cost per architecture,
    and tau minus the default proxy's with a paired interval (two overlapping intervals do not say that two
    scorers rank alike; the interval of their difference on the same resamples does).

    ``results`` is the benchmark's CSV as a frame; ``extra`` maps a scorer's name to its scores indexed by
    architecture name (higher is better), e.g. a supernet's inherited-weight accuracy.
    """
    ref = results[(results["protocol"] == REFERENCE.name) & (results["seed"] == 0)].set_index("name")
    if ref.empty:
        raise ValueError("the results hold no reference-protocol rows yet; run the benchmark first")
    scorers: dict[str, tuple[pd.Series, float | None]] = {}
    for protocol, rows in results[results["protocol"] != REFERENCE.name].groupby("protocol"):
        rows = rows[rows["seed"] == 0].set_index("name")
        scorers[protocol] = (rows["val_accuracy"], rows["cpu_seconds"].mean())
        if "train_loss_sum" in rows and rows["train_loss_sum"].notna().any():
            # the same run's sum of training losses (Ru et al.'s SoTL): lower is better, so its negative
            scorers[f"{protocol} loss sum"] = (-rows["train_loss_sum"], rows["cpu_seconds"].mean())
    scorers["#params"] = (ref["params"], 0.0)
    scorers["MACs"] = (ref["macs"], 0.0)
    for name, scores in (extra or {}).items():
        scorers[name] = (scores, None)
    second = results[(results["protocol"] == REFERENCE.name) & (results["seed"] == 1)].set_index("name")
    if len(second):
        scorers["reference seed 1 (noise ceiling)"] = (second["val_accuracy"], second["cpu_seconds"].mean())
    rows, agreements = [], {}
    for name, (scores, cpu) in scorers.items():
        common = [n for n in ref.index if n in scores.index and pd.notna(scores[n])]
        if len(common) < 3:
            continue
        a = agreement(name, scores[common].to_numpy(), ref.loc[common, "val_accuracy"].to_numpy(),
                      ref.loc[common, "latency_iphone14_ms"].to_numpy(), n_boot=n_boot)
        test = agreement(name, scores[common].to_numpy(), ref.loc[common, "test_accuracy"].to_numpy(),
                         ref.loc[common, "latency_iphone14_ms"].to_numpy(), n_boot=0)
        agreements[name] = (a, common)
        rows.append({**a.row(), "tau_vs_test": test.tau, "cpu_s_per_arch": cpu})
    table = pd.DataFrame(rows)
    if DEFAULT in agreements and len(table):
        base, base_common = agreements[DEFAULT]
        paired = [agreements[s][0].minus(base) if agreements[s][1] == base_common else (float("nan"),) * 3
                  for s in table["scorer"]]
        table[["vs_default", "vs_default_lo", "vs_default_hi"]] = pd.DataFrame(paired, index=table.index)
    return table


def score_report(results_csv: Path, scores_csv: Path | None = None, column: str = "score",
                 n_boot: int = 2000) -> str:
    results = pd.read_csv(results_csv)
    extra = None
    if scores_csv is not None:
        scores = pd.read_csv(scores_csv)
        missing = {"name", column} - set(scores.columns)
        if missing:
            raise ValueError(f"{scores_csv}: missing column(s) {', '.join(sorted(missing))}; expected 'name' (the "
                             f"benchmark's architecture names) and {column!r}")
        label = scores_csv.stem if column == "score" else f"{scores_csv.stem}:{column}"
        extra = {label: scores.set_index("name")[column]}
    table = scorer_table(results, extra, n_boot)
    ref = results[(results["protocol"] == REFERENCE.name) & (results["seed"] == 0)]
    if "vs_default" not in table:
        table = table.assign(vs_default=float("nan"), vs_default_lo=float("nan"), vs_default_hi=float("nan"))
    shown = table.assign(
        tau=[f"{r.tau:.2f} [{r.tau_lo:.2f}, {r.tau_hi:.2f}]" for r in table.itertuples()],
        tau_bins=[f"{r.tau_bins:.2f} [{r.tau_bins_lo:.2f}, {r.tau_bins_hi:.2f}]" for r in table.itertuples()],
        vs_default=["" if pd.isna(r.vs_default) or r.scorer == DEFAULT else
                    f"{r.vs_default:+.2f} [{r.vs_default_lo:+.2f}, {r.vs_default_hi:+.2f}]" for r in table.itertuples()],
    )[["scorer", "n", "tau", "vs_default", "tau_bins", "tau_vs_test", "top5_overlap", "top10_overlap",
       "top3_in_top5", "cpu_s_per_arch"]]
    header = (f"{len(ref)} architectures with the reference protocol (seed 0); Kendall tau-b against its val "
              f"accuracy with bootstrap 95 % intervals; vs_default: tau minus the default proxy's ({DEFAULT}) on the "
              "same resamples, paired interval; tau_bins within latency bins of +-10 %; tau_vs_test against "
              "its test accuracy; top-k overlap of the k best; top3_in_top5: how many of the reference's 3 best "
              "are among the scorer's 5 best; CPU seconds per architecture (process time, all "
              "threads)")
    return header + "\n\n" + shown.to_markdown(index=False, floatfmt=".2f", missingval="")
