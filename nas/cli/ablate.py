"""``nas ablate placement|type|GRID.yaml|report``: ablations over paired seeds, and their reports."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..ablation.config import PROTOCOLS
from .options import (MODEL_REF_HELP, UsageError, add_concurrency, add_time_limit, add_track, add_train_device, downscale, fraction,
                      positive_int)


PROXY_OPTIONS = ("proxy_epochs", "proxy_downscale", "proxy_subset", "val_fraction", "val_seed")


def cmd_ablate(args: argparse.Namespace) -> None:
    from ..ablation import AblationConfig, load_ablation, load_grid, run_ablation, write_outputs
    from ..ablation.report import PLOT, STAGE_PLOT
    from ..identity import ProxyConfig

    if args.what == "report":
        if not args.dir:
            raise UsageError("`nas ablate report` needs the ablation's folder: nas ablate report DIR")
        cfg, study = load_ablation(args.dir)
        print(write_outputs(args.dir, study, cfg))
        return
    if args.dir:
        raise UsageError(f"unexpected argument {args.dir!r} after {args.what!r}")
    grid = None
    if args.what in ("placement", "type"):
        ablation = args.what
    elif args.what.endswith((".yaml", ".yml")) or Path(args.what).is_file():
        ablation, grid = "grid", load_grid(args.what).to_dict()
    else:
        raise UsageError(f"unknown ablation {args.what!r}; accepted: placement, type, a grid .yaml file, or "
                         "report DIR")
    given = [f"--{name.replace('_', '-')}" for name in PROXY_OPTIONS if getattr(args, name) is not None]
    if args.protocol != "proxy" and given:
        raise UsageError(f"{given[0]} sets the proxy protocol; the {args.protocol} protocol is fixed (see "
                         "nas/training/protocols.py)")
    defaults = ProxyConfig()
    proxy = ProxyConfig(**{name: getattr(defaults, name) if getattr(args, name) is None else getattr(args, name)
                           for name in ("val_fraction", "val_seed")},
                        epochs=args.proxy_epochs or defaults.epochs,
                        downscale=args.proxy_downscale or defaults.downscale,
                        subset=args.proxy_subset or defaults.subset)
    cfg = AblationConfig(ablation=ablation, base=args.base, grid=grid,
                         kinds=[k.strip() for k in args.kinds.split(",")] if args.kinds else None, data=args.data,
                         seeds=args.seeds, protocol=args.protocol, proxy=proxy, max_runs=args.max_runs,
                         reuse=args.reuse or [],
                         timeout_s=args.timeout, out=args.out or "", study=args.study or "", storage=args.storage,
                         backend=args.backend, ray_address=args.ray_address, workers=args.workers,
                         train_device=args.train_device, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, track=args.track)
    _, summary = run_ablation(cfg)
    print(summary)
    plots = PLOT + (f", {STAGE_PLOT}" if ablation == "placement" else "")
    print(f"outputs in {cfg.out}: ablation.csv, ablation.parquet, summary.csv, {plots}, report.md")


def register(commands) -> None:
    ab = commands.add_parser("ablate", help="ablations over paired seeds: attention placement, attention type, or "
                                            "a grid of your own; `nas ablate report DIR` redraws one")
    ab.add_argument("what", help="placement, type, a grid .yaml file, or report")
    ab.add_argument("dir", nargs="?", help="with report: the ablation's --out folder")
    ab.add_argument("--base", help=f"the architecture varied: {MODEL_REF_HELP} of the SwiftFormer family "
                                   "(default: the grid's base, else swiftformer:xs)")
    ab.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or "
                                                            "imagefolder:PATH, with the search's splits")
    ab.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1, the same for every variant "
                                                                    "(default 3); more later adds runs")
    ab.add_argument("--protocol", choices=PROTOCOLS, default="proxy",
                    help="proxy: the search's proxy (set by --proxy-*); reference: the fidelity benchmark's "
                         "reference protocol; or a version-2 candidate reference (e.g. 56px-20ep-crop: 20 epochs "
                         "of every train image with crops); the named ones also read test once per run")
    ab.add_argument("--kinds", help="type ablation: block kinds, comma-separated (default: every kind of "
                                    "swiftformer.arch.BLOCK_TYPES)")
    ab.add_argument("--max-runs", type=positive_int, default=100,
                    help="refuse, before anything trains, an ablation of more variants x seeds (default 100)")
    ab.add_argument("--reuse", action="append", metavar="DIR",
                    help="another ablation's --out folder (repeatable): its finished runs of the same architecture, "
                         "seed, data and protocol are copied instead of trained again, each naming its source")
    ab.add_argument("--proxy-epochs", type=positive_int, help="the proxy protocol's epochs (default: the search's, 2)")
    ab.add_argument("--proxy-downscale", type=downscale, help="the proxy protocol's side divisor (default: the "
                                                              "search's, 4)")
    ab.add_argument("--proxy-subset", type=positive_int, help="the proxy protocol's training images (default: the "
                                                              "search's, 4000)")
    ab.add_argument("--val-fraction", type=fraction, help="the share of training images held out as val "
                                                          "(default: the search's, 0.1)")
    ab.add_argument("--val-seed", type=int, help="which images the val hold-out holds (default 0)")
    add_time_limit(ab, "timeout", 1.0, "stop starting runs")
    ab.add_argument("--out", help="output folder (default runs/<study>)")
    ab.add_argument("--study", help="study name (default: ablate-<what>-<base>-<protocol>)")
    ab.add_argument("--storage", help="a journal file path (default: DIR/study.journal) or an RDB URL")
    add_concurrency(ab, "runs")
    add_track(ab, "every run (its val accuracy, with its variant and seed as HParams)")
    add_train_device(ab)
    ab.set_defaults(func=cmd_ablate)
