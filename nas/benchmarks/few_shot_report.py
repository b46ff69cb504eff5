"""The few-shot calibration judged on HELP's split: tables with intervals beside HELP's figures, and the plots of
predicted against measured latency (``nas latency evaluate --table``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..files import replacing, write_text
from .few_shot import HELP_FLOPS_SPEARMAN, HELP_MEAN_SPEARMAN, HELP_SPEARMAN, SPLITS, FewShot, calibrate_few_shot
from .tables import BenchmarkError, check_device, latency_table

METRICS = ("spearman", "kendall", "mape", "within_10")


def resolve_devices(space_name: str, devices: str) -> list[str]:
    """``test``, ``validation`` (HELP's split) or a comma-separated list of the table's devices."""
    split = SPLITS[space_name]
    if devices in ("test", "validation"):
        return list(getattr(split, devices))
    return [check_device(space_name, d.strip()) for d in devices.split(",") if d.strip()]


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95 % t interval."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (device, k): each metric's mean over draws with its interval; and per k the mean over devices (its
    interval over draws of the per-draw mean over devices)."""
    rows = []
    for (device, k), group in frame.groupby(["device", "shots"], sort=False):
        row = {"device": device, "shots": k, "draws": len(group)}
        for metric in METRICS:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = t_interval(group[metric])
        rows.append(row)
    for k, group in frame.groupby("shots"):
        per_draw = group.groupby("draw")[list(METRICS)].mean()
        row = {"device": "mean", "shots": k, "draws": len(per_draw)}
        for metric in METRICS:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = t_interval(per_draw[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(space_name: str, summary: pd.DataFrame) -> str:
    """One table per metric pair: Spearman and MAPE (with intervals), Kendall, share within 10 %, and HELP's
    10-shot Spearman and FLOPs' beside each device."""
    help_rho = HELP_SPEARMAN.get(space_name, {})
    flops = HELP_FLOPS_SPEARMAN.get(space_name, {})
    lines = ["| device | k | Spearman [95 % CI] | Kendall | MAPE [95 % CI] | within 10 % | HELP 10-shot | FLOPs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary.itertuples():
        if row.device == "mean":
            devices = [d for d in summary.device.unique() if d != "mean"]
            whole_split = sorted(devices) == sorted(SPLITS[space_name].test)
            help_text = f"{HELP_MEAN_SPEARMAN[space_name]:.3f}" if row.shots == 10 and whole_split else ""
            flops_text = (f"{np.mean([flops[d] for d in devices]):.3f}"
                          if row.shots == 10 and devices and all(d in flops for d in devices) else "")
        else:
            help_text = f"{help_rho[row.device]:.3f}" if row.shots == 10 and row.device in help_rho else ""
            flops_text = f"{flops[row.device]:.3f}" if row.shots == 10 and row.device in flops else ""
        lines.append(f"| {row.device} | {row.shots} | {row.spearman:.3f} [{row.spearman_low:.3f}, "
                     f"{row.spearman_high:.3f}] | {row.kendall:.3f} | {row.mape:.1%} [{row.mape_low:.1%}, "
                     f"{row.mape_high:.1%}] | {row.within_10:.0%} | {help_text} | {flops_text} |")
    return "\n".join(lines)


def plot_predictions(space_name: str, devices: Sequence[str], shots: int, path: Path,
                     forms: Sequence[str] | None = None) -> None:
    """Predicted against measured latency of every architecture not measured, one panel per device (draw 0)."""
    from matplotlib.figure import Figure

    kwargs = {"forms": tuple(forms)} if forms else {}
    columns = min(3, len(devices))
    rows = -(-len(devices) // columns)
    figure = Figure(figsize=(4 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    table = latency_table(space_name)
    for ax, device in zip(axes.flat, devices):
        calibration: FewShot = calibrate_few_shot(space_name, device, shots, 0, **kwargs)
        measured = table[device].drop(index=calibration.archs)
        predicted = calibration.predicted.loc[measured.index]
        ax.scatter(measured, predicted, s=2, alpha=0.3, rasterized=True)
        low, high = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.set_title(f"{device}: {shots}-shot ({calibration.form})", fontsize=9)
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
    for ax in list(axes.flat)[len(devices):]:
        ax.set_visible(False)
    figure.suptitle(f"{space_name}: predicted against measured latency, architectures not measured")
    with replacing(path) as tmp:
        figure.savefig(tmp, dpi=110)


def write_evaluation(space_name: str, frame: pd.DataFrame, out: Path, forms: Sequence[str] | None = None) -> Path:
    """``out``/few_shot_<space>.csv (every draw), summary CSV, a Markdown table and the plots; returns the
    Markdown file."""
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    with replacing(out / f"few_shot_{space_name}.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5g")
    summary = summarise(frame)
    with replacing(out / f"few_shot_{space_name}_summary.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.5g")
    text = markdown(space_name, summary)
    write_text(out / f"few_shot_{space_name}.md", text + "\n")
    devices = list(dict.fromkeys(frame.device))
    plot_predictions(space_name, devices, int(frame.shots.min()), out / f"few_shot_{space_name}.png", forms)
    return out / f"few_shot_{space_name}.md"
