"""The fidelity benchmark on CIFAR-10: select architectures, train them (reference protocol and proxy settings,
resumable), export the versioned CSV, and score any scorer against it.

    .venv/bin/python experiments/bench_fidelity.py select     # once: experiments/fidelity/architectures.jsonl
    .venv/bin/python experiments/bench_fidelity.py run [--minutes N] [--protocols ...]   # resumable; run again
    .venv/bin/python experiments/bench_fidelity.py run --train-device cuda --workers 4 \
        --journal experiments/fidelity/gpu.journal
    .venv/bin/python experiments/bench_fidelity.py export     # experiments/fidelity/results.csv from the studies
    .venv/bin/python experiments/bench_fidelity.py score [--scores FILE.csv --column COL]
    .venv/bin/python experiments/bench_fidelity.py zero-cost  # synflow and jacob_cov of every architecture: a CSV

Version 2's pilot (experiments/fidelity/v2/pilot/): candidate references, 2 seeds each on 12 architectures
    .venv/bin/python experiments/bench_fidelity.py pilot run --protocols 56px-10ep-crop [--minutes N] [--workers K]
    .venv/bin/python experiments/bench_fidelity.py pilot report   # seed-to-seed tau per candidate; the choice

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
ZERO_COST = HERE / "zero_cost.csv"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"
PILOT = HERE / "v2" / "pilot"


def add_run_options(run: argparse.ArgumentParser, journal: Path, protocols: list[str]) -> None:
    run.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    run.add_argument("--hours", type=float, help="stop starting trainings after this long")
    run.add_argument("--minutes", type=float, help="stop starting trainings after this long (a chunk)")
    run.add_argument("--workers", type=int, default=1, help="trainings at once, each in its own process (on a GPU "
                                                            "they share the device)")
    run.add_argument("--protocols", nargs="+", choices=protocols)
    run.add_argument("--train-device", default="auto")
    run.add_argument("--threads", type=int, default=torch.get_num_threads())
    run.add_argument("--journal", type=Path, default=journal,
                     help="the studies (default: the CPU run's); a run on other hardware keeps its own journal")


def main() -> None:
    """Every command; a damaged state file or bad input is one line (``bench_fidelity: error: ...``)."""
    from nas.cli import USER_ERRORS
    from nas.files import os_error_line

    try:
        commands()
    except USER_ERRORS as exc:
        sys.exit(f"bench_fidelity: error: {exc}")
    except OSError as exc:
        sys.exit(f"bench_fidelity: error: {os_error_line(exc)}")


def commands() -> None:
    from nas.fidelity import benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("select")
    add_run_options(commands.add_parser("run"), JOURNAL, list(benchmark.PROTOCOLS))
    export_cmd = commands.add_parser("export")
    export_cmd.add_argument("--journal", type=Path, default=JOURNAL)
    export_cmd.add_argument("--results", type=Path, default=RESULTS)
    score = commands.add_parser("score")
    score.add_argument("--scores", type=Path, help="a CSV with a 'name' column (the architectures' names) and "
                                                    "a score column; higher means better")
    score.add_argument("--column", default="score")
    score.add_argument("--results", type=Path, default=RESULTS)
    zero_cost = commands.add_parser("zero-cost")
    zero_cost.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    zero_cost.add_argument("--out", type=Path, default=ZERO_COST)
    commands.add_parser("select-v2", help="version 2's architectures: experiments/fidelity/v2/architectures.jsonl")
    pilot = commands.add_parser("pilot").add_subparsers(dest="action", required=True)
    add_run_options(pilot.add_parser("run"), PILOT / "studies.journal", list(benchmark.PILOT_PROTOCOLS))
    pilot_report = pilot.add_parser("report")
    pilot_report.add_argument("--results", type=Path, nargs="+", default=[PILOT / "results.csv"],
                              help="the pilot's CSVs (the CPU run's and a GPU run's journal export, e.g. gpu.csv)")
    args = parser.parse_args()

    if args.command == "select":
        archs = benchmark.select_architectures()
        benchmark.save_architectures(ARCHS, archs)
        print(f"wrote {ARCHS}: {len(archs)} architectures")
    elif args.command == "run":
        archs = benchmark.load_architectures(ARCHS)
        run(parser, args, archs, benchmark.default_work(archs, protocols=args.protocols), pilot=False)
        export(args.journal, RESULTS if args.journal == JOURNAL else args.journal.with_suffix(".csv"))
    elif args.command == "export":
        export(args.journal, args.results)
    elif args.command == "score":
        from nas.fidelity.report import score_report

        print(score_report(args.results, args.scores, args.column))
    elif args.command == "select-v2":
        import search_spaces

        path = HERE / "v2" / "architectures.jsonl"
        if path.exists():
            parser.error(f"{path} exists: version 2's architectures are chosen once (delete it to choose again)")
        space = search_spaces.load_space(str(Path(__file__).resolve().parent / "supernet" / "swiftformer-cifar.yaml"))
        archs = benchmark.select_version2(space)
        benchmark.save_architectures(path, archs)
        print(f"wrote {path}: {len(archs)} architectures")
    elif args.command == "zero-cost":
        write_zero_cost(args.data, args.out)
    elif args.action == "run":
        archs = pilot_architectures()
        if not args.protocols:
            parser.error("pilot run: name the candidates to train with --protocols (accepted: "
                         f"{', '.join(benchmark.PILOT_PROTOCOLS)})")
        run(parser, args, archs, benchmark.pilot_work(archs, args.protocols), pilot=True)
        default = PILOT / "studies.journal"
        export(args.journal, PILOT / "results.csv" if args.journal == default else args.journal.with_suffix(".csv"))
    else:
        import pandas as pd

        from nas.fidelity.pilot import pilot_report

        missing = [str(p) for p in args.results if not p.exists()]
        if missing:
            parser.error(f"{', '.join(missing)} does not exist; run `pilot run` first")
        version1 = pd.read_csv(RESULTS)
        version1 = version1[(version1["protocol"] == "reference") & (version1["seed"] == 0)]
        try:
            print(pilot_report(pd.concat([pd.read_csv(p) for p in args.results], ignore_index=True),
                               version1=version1.set_index("name")["val_accuracy"]))
        except ValueError as exc:  # a CSV of another benchmark: one line, not a traceback
            parser.error(str(exc))


def pilot_architectures() -> list:
    """The pilot's architectures: chosen from version 1's once and kept in the pilot's own file."""
    from nas.fidelity import benchmark

    path = PILOT / "architectures.jsonl"
    if not path.exists():
        benchmark.save_architectures(path, benchmark.pilot_architectures(benchmark.load_architectures(ARCHS)))
    return benchmark.load_architectures(path)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, archs: list, work: list, pilot: bool) -> None:
    from nas.data import load_data
    from nas.fidelity import benchmark
    from nas.training import resolve_train_device

    if args.workers < 1:
        parser.error(f"--workers {args.workers} must be at least 1")
    torch.set_num_threads(args.threads)
    hours = args.minutes / 60 if args.minutes else args.hours
    deadline = time.time() + hours * 3600 if hours else None
    device = resolve_train_device(args.train_device)
    print(f"{len(work)} trainings in the plan on {device}, {args.workers} at once with {args.threads} "
          "thread(s) each; finished ones are skipped", file=sys.stderr)
    protocols = benchmark.PILOT_PROTOCOLS if pilot else benchmark.PROTOCOLS
    if args.workers == 1:
        benchmark.run_benchmark(archs, load_data(args.data), args.journal, work, str(device), deadline,
                                benchmark.log_stderr, protocols)
    else:
        benchmark.run_workers(archs, args.data, args.journal, work, args.workers, str(device), deadline,
                              max(1, args.threads // args.workers) if device.type == "cpu" else 1, pilot)


def write_zero_cost(data_spec: str, out: Path) -> None:
    """The zero-cost scores of every benchmark architecture at initialisation (seed 0), as trained by the default
    proxy (56 px; jacob_cov on its first 128 training images, as Abdelfattah et al.): a CSV that `score --scores`
    reads."""
    import pandas as pd

    from nas.data import load_data
    from nas.fidelity import benchmark
    from nas.fidelity.zero_cost import JACOB_COV_IMAGES, ZERO_COST, zero_cost_scores
    from nas.training import ProxyTask

    task = ProxyTask(load_data(data_spec), benchmark.PROXIES[0].config, "cpu")
    rows = []
    archs = benchmark.load_architectures(ARCHS)
    for position, (name, arch) in enumerate(archs, start=1):
        trained = task.proxy_arch(arch)
        images, labels = (part[:JACOB_COV_IMAGES] for part in task.view("train", trained.resolution))
        start = time.perf_counter()
        rows.append({"name": name, **zero_cost_scores(trained, images, labels), "seconds": time.perf_counter() - start})
        print(f"[{position}/{len(archs)}] {name}: " + ", ".join(f"{k} {rows[-1][k]:.4g}" for k in ZERO_COST),
              file=sys.stderr)
    pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    print(f"wrote {out}: {len(rows)} architectures; score them with `score --scores {out} --column synflow` "
          "(or jacob_cov)", file=sys.stderr)


def export(journal: Path = JOURNAL, results: Path = RESULTS) -> None:
    from nas.fidelity.benchmark import results_frame

    frame = results_frame(journal)
    frame.to_csv(results, index=False, float_format="%.6g")
    print(f"wrote {results}: {len(frame)} rows", file=sys.stderr)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
