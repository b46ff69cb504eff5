"""``nas benchmark``: the proving ground, our search judged on NAS-Bench-201's tables against their oracles."""
from __future__ import annotations

import argparse

from .options import UsageError, add_time_limit, positive_int


def cmd_benchmark(args: argparse.Namespace) -> None:
    from ..proving import PLANS, run_plan
    from ..proving.report import write_report

    out = args.out or f"runs/benchmark-{args.plan}"
    try:
        if not args.report_only:
            plan = PLANS[args.plan].with_overrides(
                repeats=args.repeats, queries=args.queries,
                samplers=tuple(args.samplers.split(",")) if args.samplers else None,
                settings=tuple(args.settings.split(",")) if args.settings else None,
                scores=tuple(args.scores.split(",")) if args.scores else None)
            run_plan(plan, out, args.minutes, args.workers)
        print(write_report(out))
    except ValueError as exc:  # a bad plan value, or a damaged folder: one line naming it
        raise UsageError(str(exc)) from None
    print(f"outputs in {out}: REPORT.md, curves.csv, regret_*.png, runs.jsonl (one line per search)")


def register(commands) -> None:
    from ..proving.plan import PLANS, SETTINGS

    bench = commands.add_parser(
        "benchmark", help="the proving ground: our search on NAS-Bench-201 against its oracles",
        description="Run a plan of searches on NAS-Bench-201's tables (accuracy after 12 and 200 epochs, latency "
                    "measured on 27 devices) and report regret to the oracle against queries, with bootstrap "
                    "intervals, beside the published figures. Resumable: run the same command again.")
    bench.add_argument("--plan", choices=sorted(PLANS), default="quick",
                       help="quick (default; a minute on 2 cores); full (HELP's 15 settings and 3 unconstrained, "
                            "4 samplers x 30 repeats x 500 queries selecting on the 12-epoch accuracy, a 10-shot "
                            "latency predictor, GP to 100 queries; hours); optimiser (the samplers scored by the "
                            "200-epoch mean itself)")
    bench.add_argument("--out", help="the run's folder (default runs/benchmark-<plan>)")
    add_time_limit(bench, "minutes", 60.0, "stop starting searches")
    bench.add_argument("--workers", type=positive_int, default=1, help="searches at once (processes)")
    bench.add_argument("--repeats", type=positive_int, help="override the plan's repeats (seeds)")
    bench.add_argument("--queries", type=positive_int, help="override the plan's queries per search")
    bench.add_argument("--samplers", help="override the plan's samplers (comma-separated: tpe,nsga2,random,evolution)")
    bench.add_argument("--settings", help=f"override the plan's settings (comma-separated; {', '.join(SETTINGS)})")
    bench.add_argument("--scores", help="override what the searches select on (comma-separated: 12ep, 200ep-run, "
                                        "200ep-mean)")
    bench.add_argument("--report-only", action="store_true", help="only rewrite the report from what is held")
    bench.set_defaults(func=cmd_benchmark)
