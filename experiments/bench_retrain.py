"""The end-to-end retraining benchmark: a search's winner against the released variants, retrained.

    .venv/bin/python experiments/bench_retrain.py endtoend [--seeds 0 1 2] [--hours H]     # resumable; run again
    .venv/bin/python experiments/bench_retrain.py report

(The retraining's throughput against a bare loop is ``experiments/bench_engine.py --jobs retrain64 retrain224``.)

endtoend: on CIFAR-10, a default search for the 1 ms iPhone 14 budget (``nas search``, the proxy's val split),
then its winner and the released variants within the budget (XS 0.76 ms, S 0.89 ms by the iPhone 14
predictor of the search's day, 2026-11-24, before its recalibration by leave-one-family-out) retrained with
``cpu_recipe.yaml`` for 3 seeds each; test top-1 with paired differences (same seed) and t intervals. Every run
is a ``nas retrain`` directory under ``experiments/retrain/``, so a killed benchmark resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import swiftformer  # noqa: F401  (the torchvision fix precedes timm)

HERE = Path(__file__).resolve().parent / "retrain"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"
DATA = f"cifar10:{ARCHIVE}"
BUDGET = "1ms"


def runs(seeds: list[int]) -> list[tuple[str, str, int]]:
    """(name, REF, seed) of every retraining, seed-major so a partial benchmark has complete pairs."""
    refs = [("winner", str(HERE / "search")), ("xs", "swiftformer:xs"), ("s", "swiftformer:s")]
    return [(name, ref, seed) for seed in seeds for name, ref in refs]


def endtoend(args: argparse.Namespace) -> None:
    deadline = time.time() + args.hours * 3600 if args.hours else None
    search = HERE / "search"
    if not (search / "best_arch.json").is_file():
        command = [sys.executable, "-m", "nas", "search", "--latency-budget", BUDGET, "--data", DATA,
                   "--out", str(search)]
        print("$", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
    for name, ref, seed in runs(args.seeds):
        out = HERE / f"{name}-seed{seed}"
        if (out / "results.json").is_file():
            continue
        if deadline and time.time() > deadline:
            print("deadline reached; run the same command again to continue", file=sys.stderr)
            return
        command = [sys.executable, "-m", "nas", "retrain", ref, "--data", DATA, "--out", str(out), "--recipe",
                   str(HERE / "cpu_recipe.yaml"), "--seed", str(seed), "--export", "none"]
        print("$", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
    report(args)


def report(args: argparse.Namespace) -> None:
    """Test top-1 per model and seed; differences to each released variant paired by seed, with t intervals."""
    import dataclasses

    import pandas as pd

    from nas.ablation.stats import t_interval
    from nas.training.outputs import predicted_latencies
    from swiftformer import SwiftFormerArch

    rows = []
    for name, _, seed in runs(args.seeds):
        path = HERE / f"{name}-seed{seed}" / "results.json"
        if path.is_file():
            r = json.loads(path.read_text())
            # the budget is at the searched 224 px (results.json prices the 64 px the models trained at), by the
            # predictor shipped now; the search chose under the one of its own day (its trials.csv)
            arch = SwiftFormerArch.from_dict(json.loads((path.parent / "arch.json").read_text()))
            latency = predicted_latencies(dataclasses.replace(arch, resolution=224))["iphone14"]
            rows.append({"model": name, "seed": seed, "architecture": r["architecture"],
                         "iphone14_ms_at_224px": round(latency, 3), "val_top1": r["val_top1"],
                         "test_top1": r["test_top1"], "seconds": r["seconds"]})
    if not rows:
        print("no finished retraining yet")
        return
    frame = pd.DataFrame(rows)
    print(frame.to_markdown(index=False, floatfmt=".2f"))
    wide = frame.pivot(index="seed", columns="model", values="test_top1")
    for base in ("xs", "s"):
        if {"winner", base} <= set(wide) and wide[["winner", base]].dropna().shape[0] >= 2:
            diff = (wide["winner"] - wide[base]).dropna()
            low, high = t_interval(diff.to_numpy())
            print(f"\nwinner - {base}, test top-1, paired over {len(diff)} seeds: {diff.mean():+.2f} pt "
                  f"(95 % t interval {low:+.2f} to {high:+.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("endtoend", "report"):
        sub = commands.add_parser(name)
        sub.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        if name == "endtoend":
            sub.add_argument("--hours", type=float, help="stop starting retrainings after this long")
    args = parser.parse_args()
    {"endtoend": endtoend, "report": report}[args.command](args)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
