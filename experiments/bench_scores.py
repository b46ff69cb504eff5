"""Cheap scores against NAS-Bench-201's 200-epoch truth (``nas.proving.scores``): compute, then report.

    .venv/bin/python experiments/bench_scores.py zero-cost [--n 3000] [--minutes N]   # synflow, jacob_cov, snip, grad_norm
    .venv/bin/python experiments/bench_scores.py proxy [--n 200] [--minutes N]        # our proxy protocol, trained
    .venv/bin/python experiments/bench_scores.py report                              # REPORT.md, scores.csv, plots
    .venv/bin/python experiments/bench_scores.py jacob-batch [--n 400]              # jacob_cov on 64 images, beside 128

Both computing commands are resumable (run again to go on) and record each chunk in ``commands.log``; each uses one
thread, so the two run side by side on two cores. The folder is ``experiments/proving/scores`` unless ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent / "proving" / "scores"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"


def jacob_batch(out: Path, n: int, data: str) -> None:
    """jacob_cov of the sample's first ``n`` on the first 64 training images (resumable, ``jacob_cov_64.jsonl``),
    and both batches' Spearman against the truth on those architectures."""
    import numpy as np

    from nas.benchmarks import benchmark_space, nb201_accuracies
    from nas.data import load_data
    from nas.fidelity.zero_cost import jacob_cov
    from nas.proving.run import append_record, init_worker, log_command, read_records
    from nas.proving.scores import DATASET, FILES, PROXY, correlation, sample
    from nas.training import ProxyTask

    path = out / "jacob_cov_64.jsonl"
    done = read_records(path, "arch", "jacob_cov record", "its architectures are then scored again")
    keys = sample(n)
    log_command(out)
    todo = [key for key in keys if key not in done]
    if todo:
        init_worker()
        task = ProxyTask(load_data(data), PROXY, "cpu")
        images = task.view("train", DATASET.side)[0][:64]
        space = benchmark_space("nb201", DATASET)
        for i, key in enumerate(todo, start=1):
            append_record(path, {"arch": key, "jacob_cov_64": jacob_cov(space.parse(key), images, 0, space)})
            if i % 100 == 0:
                print(f"  {i}/{len(todo)}", file=sys.stderr)
    done = read_records(path, "arch", "jacob_cov record", "its architectures are then scored again")
    full = read_records(out / FILES["zero-cost"], "arch", "zero-cost record", "move it aside to score again")
    truth = nb201_accuracies().loc[keys, DATASET.final].to_numpy(float)
    for label, values in (("64 images", [done[k]["jacob_cov_64"] for k in keys]),
                          ("128 images", [full[k]["jacob_cov"] for k in keys])):
        c = correlation(np.array(values, float), truth)
        print(f"jacob_cov on {label}, {len(keys)} architectures: Spearman {c.spearman:.3f} "
              f"[{c.spearman_ci[0]:.3f}, {c.spearman_ci[1]:.3f}], Kendall {c.kendall:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help=f"the folder (default {HERE})")
    commands = parser.add_subparsers(dest="command", required=True)
    for kind in ("zero-cost", "proxy"):
        command = commands.add_parser(kind, help=f"compute the {kind} scores of the sample")
        command.add_argument("--n", type=int, help="architectures (default 3000 for zero-cost, 200 for proxy)")
        command.add_argument("--minutes", type=float, help="stop starting new ones after this long")
        command.add_argument("--data", default=f"cifar10:{ARCHIVE}", help="CIFAR-10 (default: the shared archive)")
        command.add_argument("--part", default="0/1", help="K/N: every N-th architecture from the K-th, for N "
                             "processes sharing the work (default 0/1: all)")
    commands.add_parser("report", help="write REPORT.md, scores.csv and the plots from what the folder holds")
    batch = commands.add_parser("jacob-batch", help="jacob_cov on 64 images (Abdelfattah et al.'s batch) beside the "
                                "128 the issue asks for, on the sample's first N")
    batch.add_argument("--n", type=int, default=400)
    batch.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    args = parser.parse_args()
    from nas.proving.run import ProvingError

    try:
        if args.command == "jacob-batch":
            jacob_batch(args.out, args.n, args.data)
        elif args.command == "report":
            from nas.proving.score_report import write_report

            print(write_report(args.out))
        else:
            from nas.proving.scores import compute

            try:
                part = tuple(int(v) for v in args.part.split("/"))
                assert len(part) == 2 and part[1] > 0
            except (ValueError, AssertionError):
                raise ProvingError(f"--part {args.part!r}: K/N with whole numbers, e.g. 0/2 and 1/2") from None
            held, planned = compute(args.command, args.out, args.data, args.n, args.minutes, part=part)
            print(f"{args.command}: {held}/{planned} architectures held in {args.out}", file=sys.stderr)
    except ProvingError as exc:
        sys.exit(f"bench_scores: {exc}")
    except KeyboardInterrupt:
        sys.exit("bench_scores: interrupted; the architectures finished are kept: run the same command to go on")


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
