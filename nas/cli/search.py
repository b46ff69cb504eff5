"""``nas search`` and ``nas report``: the search over a space within a latency budget, and its outputs redrawn."""
from __future__ import annotations

import argparse

from ..identity import ScoringConfig
from ..search.config import MARGINS, SAMPLERS
from .options import (SPACE_HELP, add_concurrency, add_time_limit, add_track, add_predictor_choice, add_train_device, budget, downscale,
                      fraction, positive_float, positive_int)


def cmd_search(args: argparse.Namespace) -> None:
    from ..search import SearchConfig, run_search
    from ..identity import ProxyConfig

    proxy = ProxyConfig(epochs=args.proxy_epochs, downscale=args.proxy_downscale, subset=args.proxy_subset,
                        seed=args.seed, val_fraction=args.val_fraction, val_seed=args.val_seed)
    cfg = SearchConfig(budget_ms=args.latency_budget, device=None if args.predictor else args.device,
                       predictor=args.predictor, space=args.space, data=args.data, trials=args.trials,
                       timeout_s=args.timeout, sampler=args.sampler, objective=args.objective, proxy=proxy,
                       seed=args.seed, out=args.out or "", study=args.study or "", storage=args.storage,
                       backend=args.backend, ray_address=args.ray_address, workers=args.workers,
                       train_device=args.train_device, cpus_per_trial=args.cpus_per_trial,
                       gpus_per_trial=args.gpus_per_trial, evaluator=args.evaluator,
                       storage_patience_s=args.storage_patience, latency_margin=args.latency_margin, track=args.track,
                       table_score=args.table_score, latency_shots=args.latency_shots,
                       scoring=ScoringConfig(bn_images=args.supernet_bn_images, val_images=args.supernet_val_images,
                                             uncalibrated=args.supernet_uncalibrated))
    _, summary = run_search(cfg)
    _print_summary(cfg.out, summary)


def cmd_report(args: argparse.Namespace) -> None:
    from ..search.report import load_run, write_outputs

    cfg, study = load_run(args.dir)
    _print_summary(args.dir, write_outputs(args.dir, study, cfg))


def _print_summary(out: str, summary: str) -> None:
    from ..search.report import PLOT

    print(summary)
    print(f"outputs in {out}: trials.csv, trials.parquet, pareto.json, best_arch.json, {PLOT}, report.md")


def register(commands) -> None:
    search = commands.add_parser("search", help="the most accurate architectures within a latency budget")
    search.add_argument("--latency-budget", type=budget, required=True, help="e.g. 1ms, 0.8 ms, 800us")
    add_predictor_choice(search, required=False)
    search.set_defaults(device="iphone14")
    search.add_argument("--latency-margin", choices=MARGINS, default="none",
                        help="none (default): a candidate fits if its predicted latency does; band: if the upper edge "
                             "of the predictor's error band as it prices the searched family does (for SwiftFormers: "
                             "the released variants' errors, each held out of the calibration with the form and "
                             "the line's strength chosen again without it; four points, so read it as a floor)")
    search.add_argument("--space", default="swiftformer", help=SPACE_HELP)
    search.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist (default), cifar10:PATH (folder or .tar.gz) or imagefolder:PATH "
                             "(train/ and val/ or test/); or a tabular benchmark, nb201:cifar10|cifar100|"
                             "imagenet16-120 with --space nb201 (nothing trained: scores and latencies from the "
                             "shipped tables; --device names one of its devices, e.g. pixel2)")
    search.add_argument("--table-score", choices=("12ep", "200ep-run", "200ep-mean"), default="12ep",
                        help="tabular benchmarks: what a candidate scores, 12ep (default: the 12-epoch accuracy, "
                             "the benchmark's cheap proxy), 200ep-run (one 200-epoch run) or 200ep-mean")
    search.add_argument("--latency-shots", type=positive_int, metavar="K",
                        help="tabular benchmarks: price candidates with a predictor calibrated on K measured "
                             "architectures of --device (the realistic case) instead of the measured table")
    search.add_argument("--trials", type=positive_int, default=25,
                        help="architectures to train (default 25; over-budget ones are rejected without training)")
    add_time_limit(search, "timeout", 1.0, "stop starting trials")
    search.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                        help="tpe (default), nsga2, random, evolution (regularised evolution over the space's "
                             "mutation and crossover) or gp (Gaussian-process BO: for few, costly trials)")
    search.add_argument("--objective", choices=("constrained", "pareto"), default="constrained",
                        help="constrained: best accuracy under the budget (with pruning); pareto: accuracy "
                             "against latency (NSGA-II or MOTPE) with the budget as a constraint")
    search.add_argument("--proxy-epochs", type=positive_int, default=2, help="epochs each trial trains")
    search.add_argument("--proxy-downscale", type=downscale, default=4.0,
                        help="train at the architecture's resolution divided by this (default 4: 224 px -> 56 px, "
                             "where stage 3 sees 4x4 tokens and stage 4 2x2)")
    search.add_argument("--proxy-subset", type=positive_int, default=4000, help="training images per trial")
    search.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="the val hold-out carved from the training split, per class (default 0.1); the "
                             "search selects on it and never reads the test split")
    search.add_argument("--val-seed", type=int, default=0, help="which images the val hold-out holds")
    search.add_argument("--seed", type=int, default=0, help="sampler and proxy-training seed")
    search.add_argument("--out", help="output folder (default runs/<study>)")
    search.add_argument("--study", help="study name (default: from space, device and budget)")
    search.add_argument("--storage", help="an RDB URL (sqlite:///..., postgresql://user@host/db) or a journal file "
                                          "path; several processes or machines may share a PostgreSQL study")
    search.add_argument("--storage-patience", type=positive_float, default=120.0, metavar="SECONDS",
                        help="how long workers retry an unreachable database (a restart, a failover) before they "
                             "stop with an error; the same command then resumes (default 120)")
    add_concurrency(search, "trials")
    add_track(search, "every trial (val accuracy, predicted latency, and its decisions as HParams)")
    add_train_device(search, "; each local worker takes GPU i mod count; --device is the phone whose latency is "
                             "predicted")
    search.add_argument("--evaluator", default="proxy",
                        help="proxy (default): train each candidate with the proxy; supernet:DIR: score it by its "
                             "weights inherited from the supernet `nas supernet train` wrote in DIR (calibrated BN); "
                             "callable:MODULE:FUNCTION: FUNCTION(arch) returns its val accuracy (a tabular "
                             "benchmark, a zero-cost score; importable on every worker)")
    search.add_argument("--supernet-bn-images", type=positive_int, default=ScoringConfig.bn_images,
                        help="supernet evaluator: training images that re-estimate each candidate's BN "
                             f"(default {ScoringConfig.bn_images})")
    search.add_argument("--supernet-val-images", type=positive_int, default=ScoringConfig.val_images,
                        help="supernet evaluator: val images scored, a fixed stratified subset "
                             f"(default {ScoringConfig.val_images})")
    search.add_argument("--supernet-uncalibrated", action="store_true",
                        help="supernet evaluator: also record each candidate's top-1 with the supernet's own BN "
                             "statistics (supernet_top1_uncalibrated; one more pass over val, not ranked on)")
    search.set_defaults(func=cmd_search)

    report = commands.add_parser("report", help="print a search's summary and redraw its outputs")
    report.add_argument("dir", help="the search's --out folder")
    report.set_defaults(func=cmd_report)
