"""Cheap scores against NAS-Bench-201's 200-epoch truth (``nas.proving.scores``): compute, then report.

    .venv/bin/python experiments/bench_scores.py zero-cost [--n 3000] [--minutes N]   # synflow, jacob_cov, snip, grad_norm
    .venv/bin/python experiments/bench_scores.py proxy [--n 200] [--minutes N]        # our proxy protocol, trained
    .venv/bin/python experiments/bench_scores.py report                              # REPORT.md, scores.csv, plots

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
    args = parser.parse_args()
    from nas.proving.run import ProvingError

    try:
        if args.command == "report":
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
    main()
