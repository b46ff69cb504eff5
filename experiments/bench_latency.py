"""Latency predictors: leave-one-out on the published iPhone rows, and the per-block table's speed.

Run by hand (not a test); record the output in experiments/RESULTS.md:

    .venv/bin/python experiments/bench_latency.py
"""
from __future__ import annotations

import platform
import time
from importlib import resources

import search_spaces
from nas.latency import load_device, read_measurements
from nas.latency.evaluate import leave_one_out
from nas.latency.lut import build_table


def loo_report(device: str) -> None:
    with resources.as_file(resources.files("nas") / "data" / "latency" / "published_iphone.csv") as path:
        data = read_measurements(path, device)
    result = leave_one_out(data.samples)
    print(f"\n### {device}: leave-one-out over {len(data.samples)} rows ({len(data.skipped)} rows name no timm model)\n")
    print("| model | res | measured ms | LOO predicted ms | error | MACs-only LOO ms |")
    print("|---|---|---|---|---|---|")
    for row in result.rows:
        error = (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
        print(f"| {row['model']} | {row['resolution']} | {row['measured_ms']:.2f} | {row['predicted_ms']:.2f} | "
              f"{error:+.0%} | {row['baseline_ms']:.2f} |")
    print(f"\n| {device} | MAPE | within +/-10 % | Kendall tau |\n|---|---|---|---|")
    print(f"| predictor (LOO) | {result.mape:.1%} | {result.within_10pct:.0%} | {result.kendall_tau:.2f} |")
    print(f"| MACs-only baseline (LOO) | {result.baseline_mape:.1%} | {result.baseline_within_10pct:.0%} | "
          f"{result.baseline_kendall_tau:.2f} |")
    sf = [r for r in result.rows if "swiftformer" in r["model"]]
    print("\nSwiftFormer |LOO error| in ms: " + ", ".join(
        f"{r['model'].split('_')[-1].upper()} {abs(r['predicted_ms'] - r['measured_ms']):.2f}" for r in sf))


def lut_speed() -> None:
    space = search_spaces.load_space("swiftformer")
    table = build_table(space, load_device("iphone14"))
    archs = list(space.samples(5000, seed=0))
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for arch in archs:
            table.predict(arch)
        best = max(best, len(archs) / (time.perf_counter() - start))
    print(f"\nLUT: {len(table.entries)} entries; {best:,.0f} predictions/s on one core (best of 5 passes over "
          f"{len(archs)} random architectures of space swiftformer)")


if __name__ == "__main__":
    print(f"# {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    for name in ("iPhone 14", "iPhone 12"):
        loo_report(name)
    lut_speed()
