"""Search on CIFAR-10 at a 1 ms iPhone 14 budget: TPE and NSGA-II against random search.

It compares samplers only. Whether the best found beats the released variants is a question for retraining
with fresh seeds (the best of many noisy proxy scores against the best of a few is biased upwards), so this
script does not print that comparison.

Run by hand (not a test); record the printed tables in experiments/RESULTS.md:

    .venv/bin/python experiments/bench_search.py

Every run is a normal, resumable study under --out (run the command again after an interruption). All samplers
use the Pareto objective (accuracy against predicted latency, budget as constraint) so that every trial is
trained to the end and the hypervolumes are comparable; the trial count is equal for all.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from nas.search import SearchConfig, run_search
from nas.search.report import evaluated, hypervolume, trials_frame
from nas.training import ProxyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_search"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe", "nsga2"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--downscale", type=float, default=4.0)
    parser.add_argument("--budget", type=float, default=1.0)
    args = parser.parse_args()

    rows = []
    started = time.perf_counter()
    for seed in args.seeds:
        for sampler in args.samplers:
            cfg = SearchConfig(budget_ms=args.budget, device="iphone14", space="swiftformer", data=f"cifar10:{args.archive}",
                               trials=args.trials, sampler=sampler, objective="pareto",
                               proxy=ProxyConfig(epochs=args.epochs, downscale=args.downscale, subset=args.subset,
                                                 seed=seed),
                               seed=seed, out=str(args.out / f"{sampler}-seed{seed}"), study=f"{sampler}-seed{seed}")
            study, _ = run_search(cfg)
            df = trials_frame(study)
            done = evaluated(df)
            searched = done[done["status"] == "trained"]
            rows.append({"sampler": sampler, "seed": seed, "best": searched["val_accuracy"].max(),
                         "best_arch": searched.loc[searched["val_accuracy"].idxmax(), "architecture"],
                         "best_latency": searched.loc[searched["val_accuracy"].idxmax(), "latency_ms"],
                         "hv": hypervolume(df[df["status"] != "reference"], args.budget),
                         "rejected": int((df["status"] == "rejected").sum())})

    print(f"# {platform.machine()}, {time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s in all; "
          f"{args.trials} trained trials per run, proxy {args.epochs} epochs on {args.subset} CIFAR-10 images at "
          f"1/{args.downscale:g} resolution (val split), budget {args.budget:g} ms on iphone14")
    print("\n| sampler | seed | best feasible accuracy | hypervolume | rejected over budget | best architecture (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['seed']} | {r['best']:.4f} | {r['hv']:.4f} | {r['rejected']} | "
              f"{r['best_arch']} ({r['best_latency']:.3f}) |")
    print("\n| sampler | best feasible accuracy, mean +/- sd | hypervolume, mean +/- sd |")
    print("|---|---|---|")
    for sampler in args.samplers:
        best = [r["best"] for r in rows if r["sampler"] == sampler]
        hv = [r["hv"] for r in rows if r["sampler"] == sampler]
        print(f"| {sampler} | {_mean_sd(best)} | {_mean_sd(hv)} |")


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} +/- {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
