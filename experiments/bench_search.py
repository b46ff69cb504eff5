"""Search on CIFAR-10 at a 1 ms iPhone 14 budget: TPE and NSGA-II against random search, and the best
architecture found against the best hand-designed SwiftFormer within the budget (same study, same protocol).

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

from nas.proxy import ProxyConfig
from nas.report import evaluated, hypervolume, trials_frame
from nas.search import SearchConfig, run_search


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
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--budget", type=float, default=1.0)
    args = parser.parse_args()

    rows = []
    started = time.perf_counter()
    for seed in args.seeds:
        for sampler in args.samplers:
            cfg = SearchConfig(budget_ms=args.budget, device="iphone14", space="swiftformer", data=f"cifar10:{args.archive}",
                               trials=args.trials, sampler=sampler, objective="pareto",
                               proxy=ProxyConfig(epochs=args.epochs, resolution=args.resolution, subset=args.subset,
                                                 seed=seed),
                               seed=seed, out=str(args.out / f"{sampler}-seed{seed}"), study=f"{sampler}-seed{seed}")
            study, _ = run_search(cfg)
            df = trials_frame(study)
            done = evaluated(df)
            searched, refs = done[done["status"] == "trained"], done[done["status"] == "reference"]
            best_ref = refs.loc[refs["accuracy"].idxmax()] if len(refs) else None
            rows.append({"sampler": sampler, "seed": seed, "best": searched["accuracy"].max(),
                         "best_arch": searched.loc[searched["accuracy"].idxmax(), "architecture"],
                         "best_latency": searched.loc[searched["accuracy"].idxmax(), "latency_ms"],
                         "ref": best_ref["accuracy"] if best_ref is not None else float("nan"),
                         "ref_name": best_ref["reference"] if best_ref is not None else "",
                         "hv": hypervolume(df[df["status"] != "reference"], args.budget),
                         "rejected": int((df["status"] == "rejected").sum())})

    print(f"# {platform.machine()}, {time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s in all; "
          f"{args.trials} trained trials per run, proxy {args.epochs} epochs on {args.subset} CIFAR-10 images at "
          f"{args.resolution}px, budget {args.budget:g} ms on iphone14")
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
    print("\n| sampler | seed | best found | best reference | found - reference |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['seed']} | {r['best']:.4f} | {r['ref']:.4f} ({r['ref_name']}) | "
              f"{r['best'] - r['ref']:+.4f} |")


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} +/- {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


if __name__ == "__main__":
    main()
