"""One-shot search against from-scratch search on CIFAR-10 at equal search time, their winners retrained with the
fidelity benchmark's reference protocol (issue: a weight-sharing supernet and one-shot search).

    .venv/bin/python experiments/bench_oneshot.py search [--minutes 30] [--supernet DIR] [--only NAME]  # resumable
    .venv/bin/python experiments/bench_oneshot.py retrain [--seeds 0 1 2] [--hours H]   # resumable
    .venv/bin/python experiments/bench_oneshot.py report

search: two ``nas search --latency-budget 1ms`` (iPhone 14) over the supernet benchmark's space
(``supernet/swiftformer-cifar.yaml``), on the same data, val hold-out and seed: one from scratch (the default proxy),
one scoring candidates with the supernet of ``bench_supernet.py train`` (``--evaluator supernet:...``). Each gets the
same time evaluating candidates (``--minutes``); the supernet's own training time is reported beside it, not
charged to the one-shot search: the comparison is "which score picks better in the same search time", with the
supernet's cost (amortised over every search that uses it) as its own figure. A killed search resumes with the
time it has left (the trials' evaluation time so far is read from its study). The studies are committed (a few
MB of SQLite): a machine's files do not outlive its session, and the two searches need not share one.
``--only`` runs one of them; ``--supernet`` picks the trained supernet (default ``supernet/run``), recorded in
the one-shot search's ``searched.json``.

retrain: each search's best architecture trained with the reference protocol (2 epochs of 45,000 images at
56 px, the fidelity benchmark's) for each seed, test top-1 at the end; the same seeds for both, so differences
are paired. The released XS (the hand-designed model both searches meet as their reference, 0.90 ms) is
retrained beside them, so each winner is also compared, paired, with what a user would ship without searching.
Runs live in ``oneshot/studies.journal``; a killed run loses only the training in flight.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import swiftformer  # noqa: F401  (the torchvision fix precedes timm)

HERE = Path(__file__).resolve().parent
OUT = HERE / "oneshot"
SPACE = HERE / "supernet" / "swiftformer-cifar.yaml"
SUPERNET = HERE / "supernet" / "run"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"
DATA = f"cifar10:{ARCHIVE}"
JOURNAL = OUT / "studies.journal"
SEARCHES = ("from-scratch", "one-shot")
BASELINE = "xs"  # the released variant retrained beside the winners


def evaluation_seconds(out: Path) -> float:
    """The time the search at ``out`` has spent on finished trials so far (0 when it has not started)."""
    import optuna

    storage = out / "study.db"
    if not storage.is_file():
        return 0.0
    url = f"sqlite:///{storage}"
    total = 0.0
    for name in optuna.get_all_study_names(url):
        for trial in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False):
            if trial.datetime_start and trial.datetime_complete:
                total += (trial.datetime_complete - trial.datetime_start).total_seconds()
    return total


def search(args: argparse.Namespace) -> None:
    names = [args.only] if args.only else list(SEARCHES)
    supernet = args.supernet.resolve()
    if "one-shot" in names and not (supernet / "supernet.pth").is_file():
        sys.exit(f"no trained supernet in {supernet}: run experiments/bench_supernet.py train first")
    for name in names:
        extra = ["--evaluator", f"supernet:{supernet}"] if name == "one-shot" else []
        out = OUT / name
        done = out / "searched.json"
        if done.is_file():
            print(f"{name}: searched ({done})", file=sys.stderr)
            continue
        left = args.minutes * 60 - evaluation_seconds(out)
        if left > 0:
            command = [sys.executable, "-m", "nas", "search", "--latency-budget", "1ms", "--device", "iphone14",
                       "--space", str(SPACE), "--data", DATA, "--trials", "100000", "--timeout", f"{left:.0f}s",
                       "--out", str(out), *extra]
            print("$", " ".join(command), file=sys.stderr)
            subprocess.run(command, check=True)
        best = json.loads((out / "best_arch.json").read_text())
        searched = {"minutes": args.minutes, "evaluation_seconds": evaluation_seconds(out), "best_arch": best}
        if name == "one-shot":
            searched["supernet"] = str(supernet.relative_to(HERE)) if supernet.is_relative_to(HERE) else str(supernet)
        done.write_text(json.dumps(searched, indent=2) + "\n")


def retrain(args: argparse.Namespace) -> None:
    import torch

    from nas.data import load_data
    from nas.fidelity import benchmark
    from nas.training import resolve_train_device
    from swiftformer import SwiftFormerArch, variant

    archs = winners() + [(BASELINE, variant(BASELINE).to_dict())]
    deadline = time.time() + args.hours * 3600 if args.hours else None
    work = [(benchmark.REFERENCE.name, seed, name) for seed in args.seeds for name, _ in archs]
    device = resolve_train_device(args.train_device)
    print(f"{len(work)} reference trainings on {device} with {torch.get_num_threads()} threads; finished ones are "
          "skipped", file=sys.stderr)
    benchmark.run_benchmark([(n, SwiftFormerArch.from_dict(a)) for n, a in archs], load_data(DATA),
                            JOURNAL, work, str(device), deadline, benchmark.log_stderr)
    report(args)


def winners() -> list[tuple[str, dict]]:
    found = []
    for name in SEARCHES:
        done = OUT / name / "searched.json"
        if not done.is_file():
            sys.exit(f"the {name} search has not finished: run `experiments/bench_oneshot.py search` first")
        found.append((name, json.loads(done.read_text())["best_arch"]))
    return found


def report(args: argparse.Namespace) -> None:
    """Per search: its winner, the candidates it scored, its search time; the retrained winners' test top-1 per
    seed and the difference one-shot minus from-scratch, paired by seed, with a t interval."""
    import pandas as pd

    from nas.ablation.stats import t_interval
    from nas.fidelity.benchmark import results_frame
    from swiftformer import SwiftFormerArch

    for name in SEARCHES:
        trials = OUT / name / "trials.csv"
        done = OUT / name / "searched.json"
        if trials.is_file() and done.is_file():
            frame = pd.read_csv(trials)
            searched = json.loads(done.read_text())
            digest = SwiftFormerArch.from_dict(searched["best_arch"]).digest()
            best = frame[frame["digest"] == digest].iloc[0]
            print(f"{name}: {int((frame['status'] == 'trained').sum())} candidates scored in "
                  f"{searched['evaluation_seconds'] / 60:.1f} min of evaluation; best {best['architecture']} "
                  f"(val score {best['val_accuracy']:.3f}, {best['latency_ms']:.3f} ms on iPhone 14)")
    done = OUT / "one-shot" / "searched.json"
    used = json.loads(done.read_text()).get("supernet", str(SUPERNET)) if done.is_file() else str(SUPERNET)
    supernet = HERE / used / "supernet.json"
    if supernet.is_file():
        record = json.loads(supernet.read_text())
        print(f"supernet training: {record.get('seconds', float('nan')) / 60:.0f} min "
              f"({record.get('epochs')} epochs), not counted in the one-shot search's time")
    if not JOURNAL.is_file():
        print("no retraining yet")
        return
    frame = results_frame(JOURNAL)
    if frame.empty:
        print("no retraining yet")
        return
    print(frame[["name", "seed", "architecture", "val_accuracy", "test_accuracy", "seconds"]]
          .to_markdown(index=False, floatfmt=".4f"))
    wide = frame.pivot(index="seed", columns="name", values="test_accuracy")
    print()
    for better, worse in (("one-shot", "from-scratch"), ("one-shot", BASELINE), ("from-scratch", BASELINE)):
        if {better, worse} <= set(wide) and wide[[better, worse]].dropna().shape[0] >= 2:
            diff = 100 * (wide[better] - wide[worse]).dropna()
            low, high = t_interval(diff.to_numpy())
            print(f"{better} - {worse}, test top-1, paired over {len(diff)} seeds: {diff.mean():+.2f} pt "
                  f"(95 % t interval {low:+.2f} to {high:+.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("search")
    s.add_argument("--minutes", type=float, default=30.0, help="evaluation time of each search (default 30)")
    s.add_argument("--only", choices=SEARCHES, help="run one of the two searches (default both, in turn)")
    s.add_argument("--supernet", type=Path, default=SUPERNET,
                   help="the trained supernet the one-shot search scores with (default supernet/run)")
    r = commands.add_parser("retrain")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--hours", type=float, help="stop starting trainings after this long")
    r.add_argument("--train-device", default="auto")
    commands.add_parser("report")
    args = parser.parse_args()
    {"search": search, "retrain": retrain, "report": report}[args.command](args)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
