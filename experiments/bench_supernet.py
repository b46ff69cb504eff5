"""Supernet fidelity on CIFAR-10: train a supernet over the default space (resumable), score the fidelity
benchmark's architectures by inherited accuracy, with and without BN calibration, and time both.

    .venv/bin/python experiments/bench_supernet.py train [--epochs N] [--hours H] [--train-device cuda]  # resumes
    .venv/bin/python experiments/bench_supernet.py score [--snapshot]    # after-epoch-N/scores_*.csv, times.json
    .venv/bin/python experiments/bench_supernet.py settings [--snapshot]   # ranking and speed per image count
    .venv/bin/python experiments/bench_supernet.py throughput [--untrained] [--n 30]   # candidates per minute
    .venv/bin/python experiments/bench_supernet.py reference   # the largest subnet, reference protocol: cost ratio
    .venv/bin/python experiments/bench_fidelity.py score --scores experiments/supernet/after-epoch-6/scores_calibrated.csv

The space (``supernet/swiftformer-cifar.yaml``) is the default space with 10 classes; architectures keep their
224 px and the supernet trains and scores them at 224 / 4 = 56 px, the fidelity protocols' side. The data and the
val hold-out are the fidelity benchmark's (CIFAR-10, 10 % per class, seed 0), so the scores are on the val images
the reference protocol selects on, which the supernet never trained on. Each checkpoint scored gets a folder of
its own, ``after-epoch-N`` (``--snapshot``: an unfinished training's last epoch); its ``times.json`` records the
supernet's training wall time and the candidates scored per minute.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import swiftformer  # noqa: F401  (the torchvision fix precedes timm)
import torch

from nas.supernet.scoring import ScoringConfig

HERE = Path(__file__).resolve().parent
OUT = HERE / "supernet"
SPACE = OUT / "swiftformer-cifar.yaml"
RUN = OUT / "run"
ARCHS = HERE / "fidelity" / "architectures.jsonl"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("train", "score", "settings", "throughput", "reference"))
    parser.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    parser.add_argument("--run", type=Path, default=RUN, help="the supernet's folder (default supernet/run)")
    parser.add_argument("--epochs", type=int, default=6,
                        help="train: epochs (part of the run's identity; 6 aims at the issue's cost target, 6 reference "
                             "trainings of the largest subnet: an estimate until both are timed)")
    parser.add_argument("--hours", type=float, default=None,
                        help="train: start no epoch that would end after this many hours (resumable)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-device", default="auto")
    parser.add_argument("--bn-images", type=int, default=ScoringConfig.bn_images,
                        help="score, throughput: calibration images (default the evaluator's, "
                             f"{ScoringConfig.bn_images})")
    parser.add_argument("--val-images", type=int, default=ScoringConfig.val_images,
                        help=f"score, throughput: val images (default the evaluator's, {ScoringConfig.val_images}; "
                             "0: all 5,000)")
    parser.add_argument("--snapshot", action="store_true",
                        help="score: the weights after the last finished epoch of an unfinished training (last.pth)")
    parser.add_argument("--n", type=int, default=30, help="throughput: random architectures scored")
    parser.add_argument("--budget-ms", type=float, default=1.0,
                        help="throughput: candidates under this iPhone 14 latency, as a search meets them")
    parser.add_argument("--untrained", action="store_true",
                        help="throughput: a freshly initialised supernet (speed does not depend on the weights)")
    args = parser.parse_args()
    {"train": train, "score": score, "settings": settings, "throughput": throughput,
     "reference": reference}[args.what](args)


def train(args: argparse.Namespace) -> None:
    """Epoch by epoch, so ``--hours`` can stop at an epoch's end: a 2-core epoch takes 30 minutes, and a
    session that ends mid-epoch loses it (the checkpoint is written once per epoch)."""
    from nas.data.loaders import image_splits
    from nas.supernet.train import SandwichConfig, SupernetSpec, resolve_recipe, train_supernet

    start = time.perf_counter()
    deadline = start + args.hours * 3600 if args.hours else None
    spec = SupernetSpec(space=str(SPACE), data=args.data, out=args.run, sandwich=SandwichConfig(downscale=4.0),
                        recipe_changes={"epochs": args.epochs, "batch_size": args.batch_size},
                        train_device=args.train_device)
    recipe = resolve_recipe(spec)
    splits = image_splits(spec.data, recipe.val_fraction, recipe.val_seed)
    log = args.run / "log.csv"
    finished = False
    while not finished:
        done, per_epoch = _epochs_done(log)
        if deadline and done and time.perf_counter() + per_epoch > deadline:
            print(f"--hours {args.hours:g}: the next epoch (~{per_epoch / 60:.0f} min) would not end in time; "
                  "run the same command again to continue", file=sys.stderr)
            break
        finished = train_supernet(spec, stop_after_epoch=done + 1 if deadline else None, splits=splits).finished
        finished = finished or deadline is None
    done, per_epoch = _epochs_done(log)
    print(f"supernet training: {done} of {args.epochs} epochs, {done * per_epoch / 60:.1f} min of epochs in total "
          f"({(time.perf_counter() - start) / 60:.1f} min this call)")


def _epochs_done(log: Path) -> tuple[int, float]:
    """Finished epochs and the mean seconds per epoch so far, from the run's ``log.csv``."""
    import pandas as pd

    if not log.is_file():
        return 0, 0.0
    frame = pd.read_csv(log)
    return len(frame), float(frame["seconds"].iloc[-1]) / len(frame) if len(frame) else 0.0


def _scored_folder(args: argparse.Namespace, epochs: int) -> Path:
    """Where a checkpoint's scores go: ``supernet/after-epoch-N`` for the benchmark's run, inside the run's own
    folder for any other (``--run``), so two trainings' scores never overwrite each other."""
    folder = OUT / f"after-epoch-{epochs}" if args.run.resolve() == RUN else args.run / f"after-epoch-{epochs}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _loaded(args: argparse.Namespace, untrained: bool = False):
    """The supernet (the finished one, ``--snapshot``'s, or a fresh one), its record, the data's splits and the
    recipe (its evaluation view): what every scorer of this benchmark shares."""
    from nas.data.loaders import image_splits
    from nas.supernet import SuperNet
    from nas.supernet.checkpoint import SupernetRecord, load_snapshot, load_supernet
    from nas.training.recipe import Recipe
    import search_spaces

    if untrained:
        space = search_spaces.load_space(str(SPACE))
        supernet = SuperNet(space).eval()
        record = SupernetRecord({"recipe": {}}, args.data, 0.1, 0, 4.0, 3, 10, 0, 0.0, [])
        recipe = Recipe()
    else:
        supernet, record = (load_snapshot if getattr(args, "snapshot", False) else load_supernet)(args.run)
        recipe = Recipe.from_dict(record.identity["recipe"])
    splits = image_splits(args.data, record.val_fraction, record.val_seed)
    return supernet, record, splits, recipe


def _scorer(loaded, bn_images: int, val_images: int, uncalibrated: bool):
    """A scorer at these image counts (``val_images`` 0: all of val), its images prepared (not timed)."""
    from nas.identity import training_side
    from nas.supernet.scoring import ScoringConfig, SupernetScorer

    supernet, record, splits, recipe = loaded
    scorer = SupernetScorer(supernet, record, splits.train, splits.val, recipe, splits.channels,
                            ScoringConfig(bn_images=bn_images, val_images=val_images or None,
                                          uncalibrated=uncalibrated))
    side = training_side(max(supernet.space.resolutions), record.downscale)  # the benchmark space has one
    scorer.tensors("val", side), scorer.tensors("calibration", side)
    return scorer


def _benchmark_archs():
    from swiftformer import SwiftFormerArch

    rows = [json.loads(line) for line in ARCHS.read_text().splitlines() if line.strip()]
    return [(row["name"], SwiftFormerArch.from_dict(row["arch"])) for row in rows]


def score(args: argparse.Namespace) -> None:
    loaded = _loaded(args)
    record = loaded[1]
    scorer = _scorer(loaded, args.bn_images, args.val_images, uncalibrated=True)
    archs = _benchmark_archs()
    results, start = [], time.perf_counter()
    for i, (name, arch) in enumerate(archs, start=1):
        result = scorer.score(arch)
        results.append((name, result))
        print(f"{i}/{len(archs)} {name}: calibrated {result.top1:.4f}, uncalibrated "
              f"{result.top1_uncalibrated:.4f} ({result.seconds:.2f} s)", file=sys.stderr)
    seconds = time.perf_counter() - start
    folder = _scored_folder(args, record.epochs)
    for name, column in (("calibrated", "top1"), ("uncalibrated", "top1_uncalibrated")):
        with (folder / f"scores_{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "score"])
            writer.writerows((arch, getattr(result, column)) for arch, result in results)
    times = {"supernet_training_seconds": record.seconds, "supernet_epochs": record.epochs,
             "architectures_scored": len(archs), "scoring_seconds": seconds,
             "candidates_per_minute": 60 * len(archs) / seconds, "threads": torch.get_num_threads(),
             "bn_images": args.bn_images, "val_images": args.val_images or "all", "passes": 3}
    (folder / "times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(json.dumps(times, indent=2))
    print(f"next: experiments/bench_fidelity.py score --scores {folder / 'scores_calibrated.csv'} "
          "(and scores_uncalibrated.csv)")


SETTINGS = [(512, 0), (256, 1000), (128, 500), (128, 250), (64, 250)]  # (calibration, val images; 0: all val)


def settings(args: argparse.Namespace) -> None:
    """Which image counts rank well enough, fast enough: the benchmark's architectures scored (calibrated, as a
    search scores) at each setting of ``SETTINGS``; tau-b against the most images (the first setting: how much
    ranking fewer images lose) and against the reference protocol, and seconds per candidate: what the
    evaluator's defaults are judged by."""
    import pandas as pd

    from nas.fidelity.benchmark import REFERENCE
    from nas.fidelity.scoring import agreement, tau_b

    loaded = _loaded(args)
    archs = _benchmark_archs()
    results = pd.read_csv(HERE / "fidelity" / "results.csv")
    ref = results[(results["protocol"] == REFERENCE.name) & (results["seed"] == 0)].set_index("name")
    names = [name for name, _ in archs if name in ref.index]
    rows, most = [], None
    for bn_images, val_images in SETTINGS:
        scorer = _scorer(loaded, bn_images, val_images, uncalibrated=False)
        scores = {name: scorer.score(arch) for name, arch in archs if name in names}
        top1 = np.array([scores[n].top1 for n in names])
        most = top1 if most is None else most
        fit = agreement("supernet", top1, ref.loc[names, "val_accuracy"].to_numpy(),
                        ref.loc[names, "latency_iphone14_ms"].to_numpy(), n_boot=1000)
        seconds = float(np.mean([scores[n].seconds for n in names]))
        rows.append({"bn_images": bn_images, "val_images": val_images or len(loaded[2].val),
                     "seconds_per_candidate": seconds, "candidates_per_10_min": 600 / seconds,
                     "tau_vs_most_images": tau_b(top1, most), "tau_vs_reference": fit.tau,
                     "tau_ci": f"[{fit.tau_ci[0]:.2f}, {fit.tau_ci[1]:.2f}]", "tau_bins": fit.tau_bins,
                     "top3_in_top5": fit.top3_in_top5})
        print(rows[-1], file=sys.stderr)
    folder = _scored_folder(args, loaded[1].epochs)
    table = pd.DataFrame(rows)
    table.to_csv(folder / "settings.csv", index=False)
    print(f"{len(names)} architectures of the fidelity benchmark, calibrated scores, {torch.get_num_threads()} "
          f"threads; tau-b against the first row's scores and against the reference protocol's val accuracy")
    print(table.to_markdown(index=False, floatfmt=".2f"))


def throughput(args: argparse.Namespace) -> None:
    """Seconds per candidate as a search at ``--budget-ms`` on iPhone 14 meets them: random architectures of the
    space under the budget, scored calibrated only (the search's default)."""
    import search_spaces
    from nas.latency.lut import build_table
    from nas.latency.predictor import resolve_predictor

    loaded = _loaded(args, untrained=args.untrained)
    t0 = time.perf_counter()
    scorer = _scorer(loaded, args.bn_images, args.val_images, uncalibrated=False)
    prepared = time.perf_counter() - t0
    space = search_spaces.load_space(str(SPACE))
    table = build_table(space, resolve_predictor("iphone14", None))
    archs = [a for a in space.samples(50 * args.n, seed=0) if table.predict(a) <= args.budget_ms][: args.n]
    times = [scorer.score(arch).seconds for arch in archs]
    per = sum(times) / len(times)
    print(json.dumps({"threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                      "budget_ms": args.budget_ms, "candidates": len(archs), "bn_images": args.bn_images,
                      "val_images": args.val_images, "prepare_seconds": prepared,
                      "seconds_per_candidate_mean": per, "seconds_per_candidate_max": max(times),
                      "candidates_per_10_minutes": 600 / per}, indent=2))


def reference(args: argparse.Namespace) -> None:
    """The cost target's denominator: one reference-protocol training (the fidelity benchmark's, seed 0) of the
    supernet's largest subnet, on the same data and machine; its wall time against the supernet's training.
    The training lives in ``supernet/reference.journal``, as the benchmark's do: once finished, it is read, not
    trained again; a killed run trains it again from the start."""
    import search_spaces
    from nas.data import load_data
    from nas.fidelity import benchmark
    from nas.supernet import extreme_arch
    from nas.training import resolve_train_device

    journal = OUT / "reference.journal"
    largest = extreme_arch(search_spaces.load_space(str(SPACE)))
    benchmark.run_benchmark([("largest", largest)], load_data(args.data), journal,
                            [(benchmark.REFERENCE.name, 0, "largest")], str(resolve_train_device(args.train_device)),
                            None, benchmark.log_stderr)
    row = benchmark.results_frame(journal).iloc[0]
    done, per_epoch = _epochs_done(args.run / "log.csv")
    summary = {"architecture": row["architecture"], "protocol": benchmark.REFERENCE.name,
               "reference_seconds": float(row["seconds"]), "reference_val_accuracy": float(row["val_accuracy"]),
               "reference_test_accuracy": float(row["test_accuracy"]), "device": row["device"],
               "threads": int(row["threads"]), "supernet_epochs_done": done,
               "supernet_seconds": done * per_epoch,
               "ratio": done * per_epoch / float(row["seconds"])}
    (OUT / "reference.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
