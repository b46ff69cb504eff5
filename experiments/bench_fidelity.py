"""The fidelity benchmark on CIFAR-10: select architectures, train them (reference protocol and proxy settings,
resumable), export the versioned CSV, and score any scorer against it.

    .venv/bin/python experiments/bench_fidelity.py select     # once: experiments/fidelity/architectures.jsonl
    .venv/bin/python experiments/bench_fidelity.py run [--minutes N] [--protocols ...]   # resumable; run again
    .venv/bin/python experiments/bench_fidelity.py run --train-device cuda --workers 4 \
        --journal experiments/fidelity/gpu.journal
    .venv/bin/python experiments/bench_fidelity.py export     # experiments/fidelity/results.csv from the studies
    .venv/bin/python experiments/bench_fidelity.py score [--scores FILE.csv --column COL]

The studies live in one journal file (experiments/fidelity/studies.journal); a killed run loses only the trial
in flight, which the next run trains again. See experiments/fidelity/PROTOCOL.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import swiftformer  # noqa: F401  (the torchvision fix precedes timm)
import torch

HERE = Path(__file__).resolve().parent / "fidelity"
ARCHS = HERE / "architectures.jsonl"
JOURNAL = HERE / "studies.journal"
RESULTS = HERE / "results.csv"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"


def main() -> None:
    from nas.fidelity import benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("select")
    run = commands.add_parser("run")
    run.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    run.add_argument("--hours", type=float, help="stop starting trainings after this long")
    run.add_argument("--minutes", type=float, help="stop starting trainings after this long (a chunk)")
    run.add_argument("--workers", type=int, default=1, help="trainings at once, each in its own process (on a GPU "
                                                            "they share the device)")
    run.add_argument("--protocols", nargs="+", choices=list(benchmark.PROTOCOLS))
    run.add_argument("--train-device", default="auto")
    run.add_argument("--threads", type=int, default=torch.get_num_threads())
    run.add_argument("--journal", type=Path, default=JOURNAL,
                     help="the studies (default: the CPU run's); a run on other hardware keeps its own journal")
    export_cmd = commands.add_parser("export")
    export_cmd.add_argument("--journal", type=Path, default=JOURNAL)
    export_cmd.add_argument("--results", type=Path, default=RESULTS)
    score = commands.add_parser("score")
    score.add_argument("--scores", type=Path, help="a CSV with a 'name' column (the architectures' names) and "
                                                    "a score column; higher means better")
    score.add_argument("--column", default="score")
    score.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    if args.command == "select":
        archs = benchmark.select_architectures()
        benchmark.save_architectures(ARCHS, archs)
        print(f"wrote {ARCHS}: {len(archs)} architectures")
    elif args.command == "run":
        from nas.data import load_data
        from nas.training import resolve_train_device

        if args.workers < 1:
            parser.error(f"--workers {args.workers} must be at least 1")
        torch.set_num_threads(args.threads)
        archs = benchmark.load_architectures(ARCHS)
        hours = args.minutes / 60 if args.minutes else args.hours
        deadline = time.time() + hours * 3600 if hours else None
        device = resolve_train_device(args.train_device)
        work = benchmark.default_work(archs, protocols=args.protocols)
        print(f"{len(work)} trainings in the plan on {device}, {args.workers} at once with {args.threads} "
              "thread(s) each; finished ones are skipped", file=sys.stderr)
        if args.workers == 1:
            benchmark.run_benchmark(archs, load_data(args.data), args.journal, work, str(device), deadline,
                                    benchmark.log_stderr)
        else:
            benchmark.run_workers(archs, args.data, args.journal, work, args.workers, str(device), deadline,
                                  max(1, args.threads // args.workers) if device.type == "cpu" else 1)
        export(args.journal, RESULTS if args.journal == JOURNAL else args.journal.with_suffix(".csv"))
    elif args.command == "export":
        export(args.journal, args.results)
    else:
        from nas.fidelity.report import score_report

        print(score_report(args.results, args.scores, args.column))


def export(journal: Path = JOURNAL, results: Path = RESULTS) -> None:
    from nas.fidelity.benchmark import results_frame

    frame = results_frame(journal)
    frame.to_csv(results, index=False, float_format="%.6g")
    print(f"wrote {results}: {len(frame)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
