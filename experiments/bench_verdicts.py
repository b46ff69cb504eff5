"""The three verdicts (issue 28), run in resumable chunks from a plan, and their report.

    .venv/bin/python experiments/bench_verdicts.py run --plan experiments/verdicts/cpu.yaml --minutes 60
    python3 experiments/bench_verdicts.py run --plan experiments/verdicts/gpu.yaml --train-device cuda --minutes 8
    .venv/bin/python experiments/bench_verdicts.py status --plan experiments/verdicts/gpu.yaml
    .venv/bin/python experiments/bench_verdicts.py report --plan experiments/verdicts/gpu.yaml

Run from the repository root (a plan's paths are relative to it, so every machine names the same studies). Each
chunk runs the next steps of the plan (`nas search`, `nas supernet train`, `nas ablate`, `nas retrain`, each
resumable by itself) until its minutes are spent, then writes `REPORT.md` in the plan's folder; commit that folder
after each chunk (checkpoints, `*.pth`, stay on the machine) and the next chunk, on any machine, continues it.
`--verdicts` picks some of search, ablation, family. See experiments/verdicts/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.files import StateError, os_error_line  # noqa: E402
from nas.verdicts import PlanError, load_plan, run_plan, write_report  # noqa: E402
from nas.verdicts.plan import VERDICTS  # noqa: E402
from nas.verdicts.steps import phases  # noqa: E402


def status(plan) -> str:
    """Each verdict's next phase and its steps left (a verdict's later phases are known once these are done)."""
    lines = []
    for verdict in plan.verdicts:
        phase = next(phases(plan, plan.root, verdict, "auto"), None)
        if phase is None:
            lines.append(f"{verdict}: every step done")
            continue
        left = [s.key for s in phase.steps]  # (a phase holds only the steps not done)
        lines.append(f"{verdict}: {len(left)} step(s) left in its current phase: {', '.join(left[:8])}"
                     f"{' ...' if len(left) > 8 else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "status", "report"):
        p = commands.add_parser(name)
        p.add_argument("--plan", required=True, help="a plan YAML (experiments/verdicts/gpu.yaml, cpu.yaml)")
        if name == "run":
            p.add_argument("--minutes", type=float, help="the chunk's length: no command is started after it, "
                                                         "running ones stop at it (default: until done)")
            p.add_argument("--verdicts", nargs="+", choices=VERDICTS, help="default: the plan's, in order")
            p.add_argument("--train-device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        if args.command == "status":
            print(status(plan))
            return 0
        if args.command == "run":
            if args.minutes is not None and args.minutes <= 0:
                raise PlanError(f"--minutes {args.minutes:g} is not accepted; expected a positive number")
            run_plan(plan, args.minutes, tuple(args.verdicts) if args.verdicts else None, args.train_device)
        print(write_report(plan))
        print(status(plan), file=sys.stderr)
    except (PlanError, StateError) as exc:
        print(f"bench_verdicts: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bench_verdicts: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    sys.exit(main())
