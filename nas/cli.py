"""The ``nas`` command line.

Every command reports bad input as one line on stderr (``nas: error: ...``, exit status 2), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import swiftformer._torchvision_fix  # noqa: F401

from search_spaces import SpaceError
from swiftformer import ArchitectureError

from swiftformer.export import ExportError

from .ablation.config import AblationError
from .ablation.grid import GridError
from .ablation.variants import VariantError
from .data import DatasetError
from .latency.lut import TableMissError
from .latency.measure import BackendUnavailable
from .latency.measurements import MeasurementError
from .latency.predictor import PredictorError
from .models import ModelRefError, parse_model_ref
from .progress import progress
from .search.config import MARGINS, SearchError
from .supernet import SupernetError
from .supernet.scoring import ScoringConfig
from .training import TrainDeviceError
from .training.recipe import RecipeError, RetrainError
from .units import parse_duration_s, parse_latency_ms

USER_ERRORS = (AblationError, ArchitectureError, BackendUnavailable, DatasetError, ExportError, GridError,
               MeasurementError, ModelRefError, PredictorError, RecipeError, RetrainError, SearchError, SpaceError,
               SupernetError, TableMissError, TrainDeviceError, VariantError)


class UsageError(ValueError):
    """Bad input a user can fix; printed as one line."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _build(args: argparse.Namespace):
    ref = parse_model_ref(args.model)
    model = ref.build(num_classes=getattr(args, "num_classes", None), resolution=getattr(args, "resolution", None))
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise UsageError(f"checkpoint {checkpoint!r} does not exist")
        if ref.arch is None:
            raise UsageError("--checkpoint is supported for SwiftFormer-family models only")
        import swiftformer
        try:
            swiftformer.load_checkpoint(model, checkpoint)
        except RuntimeError as exc:  # strict load: missing/unexpected keys or shape mismatches
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"checkpoint {checkpoint!r} does not fit {args.model}: {first}") from None
    return ref, model.eval()


def cmd_model_info(args: argparse.Namespace) -> None:
    from swiftformer.counting import count_macs, count_params, iter_costs, measure_macs

    ref, model = _build(args)
    resolution = args.resolution or ref.default_resolution()
    if ref.arch is not None:
        arch = ref.arch
        info = {"model": ref.text, "summary": arch.summary(), "params": count_params(arch),
                "macs": count_macs(arch, resolution), "resolution": resolution, "arch": arch.to_dict()}
    else:
        in_chans = getattr(model, "in_chans", 3)
        info = {"model": ref.text, "params": sum(p.numel() for p in model.parameters()),
                "macs": measure_macs(model, (1, in_chans, resolution, resolution)), "resolution": resolution}
    if args.json:
        print(json.dumps(info))
        return
    print(f"{info['model']}: {info['params'] / 1e6:.3f} M params, {info['macs'] / 1e9:.3f} GMACs at "
          f"{resolution}x{resolution}")
    if ref.arch is not None:
        print(f"architecture: {info['summary']}")
        print(f"{'part':<16}{'kind':<7}{'channels':>9}{'map':>9}{'params':>12}{'MMACs':>10}")
        for part in iter_costs(ref.arch, resolution):
            print(f"{part.name:<16}{part.kind:<7}{part.channels:>9}{f'{part.h}x{part.w}':>9}"
                  f"{part.params:>12,}{part.macs / 1e6:>10.2f}")


def cmd_export(args: argparse.Namespace) -> None:
    from swiftformer.export import export_coreml, export_onnx

    _, model = _build(args)
    out = Path(args.out)
    if args.format == "onnx":
        result = export_onnx(model, out, resolution=args.resolution)
    else:
        result = export_coreml(model, out, resolution=args.resolution, precision=args.precision)
    ops = ", ".join(f"{op} {n}" for op, n in result.ops.most_common() if op != "const")
    check = (f"max |diff| vs PyTorch {result.max_abs_diff:.2e}" if result.max_abs_diff is not None
             else result.note)
    print(f"wrote {result.path} ({args.format}, input {'x'.join(map(str, result.input_shape))}); {check}")
    print(f"ops: {ops}")


def _profiled(measurements, label: str):
    """Profile every sample (the slow part), showing progress."""
    report = progress(label)
    for i, sample in enumerate(measurements.samples, start=1):
        sample.profile  # noqa: B018  (cached: later uses are free)
        report(i, len(measurements.samples))
    for line in measurements.skipped:
        print(f"skipped {line}", file=sys.stderr)
    return measurements.samples


def _predictor(args: argparse.Namespace):
    """The predictor the command names, or None when it names none (evaluate then cross-validates calibration)."""
    from .latency.predictor import resolve_predictor

    if not (getattr(args, "predictor", None) or getattr(args, "device", None)):
        return None
    return resolve_predictor(args.device, args.predictor)


def _band_text(predictor) -> str:
    band = predictor.band
    if not band:
        return "no error band (calibrated by an older version)"
    return (f"error band {band['lower']:+.0%} / {band['upper']:+.0%} (quantiles {band['quantile_low']:g} and "
            f"{band['quantile_high']:g} of measured / predicted - 1, {band['split']}, {band['rows']} rows)")


def cmd_latency_calibrate(args: argparse.Namespace) -> None:
    from .latency import calibrate, read_measurements
    from .latency.evaluate import evaluate_predictor

    data = read_measurements(args.measurements, args.device_name)
    device = data.device_name(args.device_name)
    samples = _profiled(data, "profiling models")
    predictor = calibrate(samples, device, calibration={"measurements": [str(p) for p in args.measurements],
                                                        "device_rows": device, "skipped": len(data.skipped)},
                          progress=progress("measuring the error band (nested leave-one-family-out)"))
    fit = evaluate_predictor(predictor, data.of(device)).summary()
    predictor.calibration["in_sample"] = {k: fit[k] for k in ("mape", "within_10pct", "kendall_tau")}
    predictor.save(args.out)
    costs = ", ".join(f"{k} {v:.3g}" for k, v in predictor.costs.items() if v > 1e-9)
    others = len(samples) - len(data.of(device))
    print(f"wrote {args.out}: {predictor.device} from {len(data.of(device))} rows (and {others} of "
          f"{len(data.devices) - 1} other device(s)); form: {predictor.calibration['form_chosen_by']}: "
          f"{_form_text(predictor)}")
    print(f"intercept {predictor.intercept_ms:.3f} ms; ms per unit: {costs}")
    print(f"{_band_text(predictor)}; in-sample MAPE {fit['mape']:.1%} (run `nas latency evaluate --group family` "
          "for cross-validated figures)")


def _form_text(predictor) -> str:
    from .latency.fitting import ModelForm

    return ModelForm(**predictor.calibration["form"]).describe() if "form" in predictor.calibration else "unknown"


def cmd_latency_predict(args: argparse.Namespace) -> None:
    from .latency import predict_latency

    predictor = _predictor(args)
    ref = parse_model_ref(args.model)
    resolution = args.resolution or ref.default_resolution()
    ms = predict_latency(args.model, predictor, resolution)
    low, high = predictor.lower_ms(ms), predictor.upper_ms(ms)
    if args.json:
        print(json.dumps({"model": args.model, "latency_ms": round(ms, 4), "lower_ms": round(low, 4),
                          "upper_ms": round(high, 4), "device": predictor.device, "resolution": resolution}))
    else:
        band = f"; band {low:.3f}-{high:.3f} ms for an unseen family" if predictor.band else ""
        print(f"{ms:.3f} ms  ({args.model} at {resolution}x{resolution} on {predictor.device}, predicted{band})")


def cmd_latency_evaluate(args: argparse.Namespace) -> None:
    from .latency import read_measurements
    from .latency.evaluate import evaluate_calibration, evaluate_predictor

    predictor = _predictor(args)
    if predictor and args.group:
        raise UsageError("--group cross-validates calibration; it does not apply to a given --device or --predictor")
    data = read_measurements(args.measurements, args.device_name)
    requested = args.device_name or (predictor.device if predictor and len(data.devices) > 1 else None)
    device = data.device_name(requested)
    samples = _profiled(data, "profiling models")
    if predictor:
        result = evaluate_predictor(predictor, data.of(device))
    else:
        splits = ("row", "family") if args.group == "family" else ("row",)
        result = evaluate_calibration(samples, device, splits, progress=progress)
    procedures = None
    if not predictor and args.group == "family":  # what `calibrate` would ship, judged on the same split
        from .latency.calibration import CHOICE, judge_procedures

        judged = judge_procedures(samples, device, "family", known={CHOICE: result.predicted["family"]})
        procedures = {name: round(mape, 4) for name, (mape, _, _) in judged.items()}
    if args.json:
        print(json.dumps({**result.summary(), **({"procedures": procedures} if procedures else {})}))
        return
    _print_evaluation(result, len(samples), len(data.devices))
    if procedures:
        best = min(procedures, key=procedures.get)
        print("procedures, nested leave-one-family-out MAPE: " + ", ".join(f"{k} {v:.1%}" for k, v in
                                                                         procedures.items())
              + f"; `nas latency calibrate` ships the {best}")


_SPLIT_NAMES = {"fixed": "predictor", "row": "leave-one-row-out", "family": "leave-one-family-out"}


def _print_evaluation(result, rows_all: int, devices: int) -> None:
    splits = list(result.predicted)
    print(f"{result.mode}: {result.device}, {len(result.samples)} rows"
          + (f" ({rows_all} rows of {devices} devices used)" if "fixed" not in splits else ""))
    header = "".join(f"{_SPLIT_NAMES[s][:16]:>17}{'error':>7}{'MACs-only':>10}" for s in splits)
    print(f"{'model':<34}{'family':<18}{'res':>4}{'measured':>9}{header}")
    for i, sample in enumerate(result.samples):
        cells = ""
        for split in splits:
            predicted, baseline = result.predicted[split][i], result.baseline[split][i]
            cells += f"{predicted:>17.2f}{(predicted - sample.latency_ms) / sample.latency_ms:>+7.0%}{baseline:>10.2f}"
        print(f"{sample.model:<34}{sample.family:<18}{sample.resolution:>4}{sample.latency_ms:>9.2f}{cells}")
    for split in splits:
        scores = result.split_scores(split)
        print(f"{_SPLIT_NAMES[split]}: MAPE {scores['mape']:.1%}, within 10% {scores['within_10pct']:.0%}, Kendall "
              f"tau {scores['kendall_tau']:.2f} | MACs-only baseline: MAPE {scores['baseline_mape']:.1%}, within 10% "
              f"{scores['baseline_within_10pct']:.0%}, Kendall tau {scores['baseline_kendall_tau']:.2f}")
    if len(splits) > 1 or splits[0] == "family":
        print("per family (MAPE; bias = mean signed error; max |error| in ms):")
        print(f"{'family':<20}{'rows':>5}" + "".join(f"{_SPLIT_NAMES[s]:>22}{'bias':>7}{'max ms':>8}{'MACs-only':>10}"
                                                  for s in splits))
        for entry in result.families():
            cells = "".join(f"{entry['splits'][s]['mape']:>22.1%}{entry['splits'][s]['bias']:>+7.0%}"
                            f"{entry['splits'][s]['max_abs_ms']:>8.2f}{entry['splits'][s]['baseline_mape']:>10.1%}"
                            for s in splits)
            print(f"{entry['family']:<20}{entry['rows']:>5}{cells}")


def cmd_latency_measure(args: argparse.Namespace) -> None:
    from .latency.measure import append_csv, csv_header, measure

    if args.csv:
        csv_header(args.csv)  # a file without the calibration columns is refused before measuring
    result = measure(args.model, args.backend, args.resolution, warmup=args.warmup, runs=args.runs,
                     device=args.device_name)
    print(f"{result.median_ms:.3f} ms median (p10 {result.p10_ms:.3f}, p90 {result.p90_ms:.3f}) over {result.runs} "
          f"runs; {args.model} at {result.resolution}x{result.resolution}, {args.backend} on {result.device}")
    if args.csv:
        append_csv(args.csv, result)
        print(f"appended to {args.csv}")


def cmd_latency_lut(args: argparse.Namespace) -> None:
    from search_spaces import load_space

    from .latency.lut import build_table

    space = load_space(args.space)
    predictor = _predictor(args)
    table = build_table(space, predictor, progress(f"pricing parts of {space.name} for {predictor.device}"))
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} parts of space {space.name} priced for {predictor.device}")


def cmd_space_show(args: argparse.Namespace) -> None:
    from search_spaces import load_space

    print("\n".join(load_space(args.space).describe()))


def cmd_space_sample(args: argparse.Namespace) -> None:
    from search_spaces import load_space

    for arch in load_space(args.space).samples(args.n, seed=args.seed):
        print(json.dumps(arch.to_dict(), sort_keys=True))


def _downscale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1 (the architecture's resolution is "
                                         f"divided by it), got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _budget(text: str) -> float:
    try:
        return parse_latency_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_search(args: argparse.Namespace) -> None:
    from .search import SearchConfig, run_search
    from .training import ProxyConfig

    proxy = ProxyConfig(epochs=args.proxy_epochs, downscale=args.proxy_downscale, subset=args.proxy_subset,
                        seed=args.seed, val_fraction=args.val_fraction, val_seed=args.val_seed)
    cfg = SearchConfig(budget_ms=args.latency_budget, device=None if args.predictor else args.device,
                       predictor=args.predictor, space=args.space, data=args.data, trials=args.trials,
                       timeout_s=args.timeout, sampler=args.sampler, objective=args.objective, proxy=proxy,
                       seed=args.seed, out=args.out or "", study=args.study or "", storage=args.storage,
                       backend=args.backend, ray_address=args.ray_address, workers=args.workers,
                       train_device=args.train_device, cpus_per_trial=args.cpus_per_trial,
                       gpus_per_trial=args.gpus_per_trial, evaluator=args.evaluator,
                       storage_patience_s=args.storage_patience, latency_margin=args.latency_margin,
                       scoring=ScoringConfig(bn_images=args.supernet_bn_images, val_images=args.supernet_val_images,
                                             uncalibrated=args.supernet_uncalibrated))
    _, summary = run_search(cfg)
    _print_summary(cfg.out, summary)


def _recipe_changes(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` items, then the recipe options given by name (``keys``)."""
    changes: dict[str, object] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r} is not KEY=VALUE (e.g. --set mixup=0)")
        changes[key.strip()] = value.strip()
    for key in keys:
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return changes


def cmd_supernet_train(args: argparse.Namespace) -> None:
    from .supernet.train import SandwichConfig, SupernetSpec, train_supernet

    changes = _recipe_changes(args, ("epochs", "batch_size", "lr", "seed", "workers"))
    sandwich = SandwichConfig(random_subnets=args.random_subnets, distill=args.distill, downscale=args.downscale)
    train_supernet(SupernetSpec(space=args.space, data=args.data, out=Path(args.out), sandwich=sandwich,
                                recipe_changes=changes, recipe_file=args.recipe, train_device=args.train_device))


def cmd_retrain(args: argparse.Namespace) -> None:
    from .training.retrain import RetrainSpec, retrain

    changes = _recipe_changes(args, ("epochs", "batch_size", "lr", "resolution", "seed", "workers"))
    exports = tuple(f for f in args.export.split(",") if f and f != "none")
    bad = [f for f in exports if f not in ("onnx", "coreml")]
    if bad:
        raise UsageError(f"--export {args.export!r}: unknown format {bad[0]!r}; accepted: onnx, coreml, "
                         "onnx,coreml or none")
    if args.teacher_checkpoint and not args.teacher:
        raise UsageError("--teacher-checkpoint needs --teacher")
    retrain(RetrainSpec(ref=args.ref, data=args.data, out=Path(args.out), recipe_changes=changes,
                        recipe_file=args.recipe, teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint,
                        init=args.init, train_device=args.train_device, exports=exports))


def cmd_report(args: argparse.Namespace) -> None:
    from .search.report import load_run, write_outputs

    cfg, study = load_run(args.dir)
    _print_summary(args.dir, write_outputs(args.dir, study, cfg))


PROXY_OPTIONS = ("proxy_epochs", "proxy_downscale", "proxy_subset", "val_fraction", "val_seed")


def cmd_ablate(args: argparse.Namespace) -> None:
    from .ablation import AblationConfig, load_ablation, load_grid, run_ablation, write_outputs
    from .ablation.report import PLOT, STAGE_PLOT
    from .training import ProxyConfig

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
    if args.protocol == "reference" and given:
        raise UsageError(f"{given[0]} sets the proxy protocol; the reference protocol is fixed (see "
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
                         gpus_per_trial=args.gpus_per_trial)
    _, summary = run_ablation(cfg)
    print(summary)
    plots = PLOT + (f", {STAGE_PLOT}" if ablation == "placement" else "")
    print(f"outputs in {cfg.out}: ablation.csv, ablation.parquet, summary.csv, {plots}, report.md")


def _print_summary(out: str, summary: str) -> None:
    from .search.report import PLOT

    print(summary)
    print(f"outputs in {out}: trials.csv, trials.parquet, pareto.json, best_arch.json, {PLOT}, report.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Hardware-aware NAS over the SwiftFormer family.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_ref_help = "swiftformer:<xs|s|l1|l3>, timm:<name>, or an architecture .json file"

    model = commands.add_parser("model", help="inspect a model").add_subparsers(dest="model_command", required=True,
                                                                                metavar="SUBCOMMAND")
    info = model.add_parser("info", help="parameters, MACs and the per-part breakdown of a model")
    info.add_argument("model", help=model_ref_help)
    info.add_argument("--resolution", type=_positive_int, help="input side (default: the model's)")
    info.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    info.set_defaults(func=cmd_model_info)

    export = commands.add_parser("export", help="export a model, fused for inference, to ONNX or CoreML")
    export.add_argument("model", help=model_ref_help)
    export.add_argument("--format", choices=("onnx", "coreml"), required=True)
    export.add_argument("--out", required=True, help="output file (.onnx) or package (.mlpackage)")
    export.add_argument("--resolution", type=_positive_int, help="input side (default: the model's)")
    export.add_argument("--checkpoint", help="official or timm-port SwiftFormer checkpoint to load first")
    export.add_argument("--num-classes", type=_positive_int, help="classifier size (default: the model's)")
    export.add_argument("--precision", choices=("float16", "float32"), default="float16",
                        help="CoreML compute precision (default: float16, what the Neural Engine runs)")
    export.set_defaults(func=cmd_export)

    space = commands.add_parser("space", help="inspect search spaces").add_subparsers(
        dest="space_command", required=True, metavar="SUBCOMMAND")
    space_help = "a shipped space name (default: swiftformer) or a .yaml/.json space file"
    show = space.add_parser("show", help="the choices of a space and its size")
    show.add_argument("space", nargs="?", default="swiftformer", help=space_help)
    show.set_defaults(func=cmd_space_show)
    sample = space.add_parser("sample", help="random architectures of a space, one JSON object per line")
    sample.add_argument("space", nargs="?", default="swiftformer", help=space_help)
    sample.add_argument("-n", type=_positive_int, default=1, help="how many (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same list")
    sample.set_defaults(func=cmd_space_sample)

    latency = commands.add_parser("latency", help="predict, calibrate, evaluate and measure latency").add_subparsers(
        dest="latency_command", required=True, metavar="SUBCOMMAND")

    def add_predictor_choice(p: argparse.ArgumentParser, required: bool) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--device", help="a shipped predictor: iphone14 or iphone12")
        group.add_argument("--predictor", help="a predictor JSON made by `nas latency calibrate`")

    measurements_help = ("CSV file(s) with timm_name or model, resolution, latency_ms (optional: device, family, "
                         "graph, trust); rows of other devices help the fit")
    calibrate = latency.add_parser("calibrate", help="fit a predictor to measured latencies (its form chosen by "
                                                      "leave-one-family-out; other devices' rows help)")
    calibrate.add_argument("--measurements", required=True, nargs="+", help=measurements_help)
    calibrate.add_argument("--out", required=True, help="predictor JSON to write")
    calibrate.add_argument("--device-name", help="the device to calibrate for (needed when the files hold several; "
                                                 "names the rows of files without a device column)")
    calibrate.set_defaults(func=cmd_latency_calibrate)

    predict = latency.add_parser("predict", help="predicted latency of a model")
    add_predictor_choice(predict, required=True)
    predict.add_argument("--model", required=True, help=model_ref_help)
    predict.add_argument("--resolution", type=_positive_int, help="input side (default: the model's)")
    predict.add_argument("--json", action="store_true", help="one JSON object")
    predict.set_defaults(func=cmd_latency_predict)

    evaluate = latency.add_parser("evaluate", help="predicted against measured: a predictor, or cross-validated "
                                                    "calibration when none is given")
    evaluate.add_argument("--measurements", required=True, nargs="+", help=measurements_help)
    add_predictor_choice(evaluate, required=False)
    evaluate.add_argument("--device-name", help="whose rows to evaluate when the files hold several devices")
    evaluate.add_argument("--group", choices=("row", "family"),
                          help="what cross-validation holds out: row (default; one model at a time) or family "
                               "(reports leave-one-family-out next to leave-one-row-out, with per-family errors)")
    evaluate.add_argument("--json", action="store_true", help="the summary as one JSON object")
    evaluate.set_defaults(func=cmd_latency_evaluate)

    measure = latency.add_parser("measure", help="measure a model on a real runtime (median of repeated runs)")
    measure.add_argument("--backend", required=True, choices=("torch-cpu", "onnxruntime-cpu", "coreml"))
    measure.add_argument("--model", required=True, help=model_ref_help)
    measure.add_argument("--resolution", type=_positive_int, help="input side (default: the model's)")
    measure.add_argument("--runs", type=_positive_int, default=50, help="timed runs (default 50)")
    measure.add_argument("--warmup", type=_positive_int, default=10, help="untimed runs first (default 10)")
    measure.add_argument("--device-name", help="device label for the CSV row (default: host and backend)")
    measure.add_argument("--csv", help="append the result to this CSV (calibration schema)")
    measure.set_defaults(func=cmd_latency_measure)

    lut = latency.add_parser("lut", help="per-block latency table of a space for a device")
    lut.add_argument("--space", default="swiftformer", help=space_help)
    add_predictor_choice(lut, required=True)
    lut.add_argument("--out", required=True, help="table JSON to write")
    lut.set_defaults(func=cmd_latency_lut)

    search = commands.add_parser("search", help="the most accurate architectures within a latency budget")
    search.add_argument("--latency-budget", type=_budget, required=True, help="e.g. 1ms, 0.8 ms, 800us")
    add_predictor_choice(search, required=False)
    search.set_defaults(device="iphone14")
    search.add_argument("--latency-margin", choices=MARGINS, default="none",
                        help="none (default): a candidate fits if its predicted latency does; band: if the upper edge "
                             "of the predictor's error band (measured on families it never saw) does")
    search.add_argument("--space", default="swiftformer", help=space_help)
    search.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist (default), cifar10:PATH (folder or .tar.gz) or imagefolder:PATH "
                             "(train/ and val/ or test/)")
    search.add_argument("--trials", type=_positive_int, default=25,
                        help="architectures to train (default 25; over-budget ones are rejected without training)")
    search.add_argument("--timeout", type=_duration, help="stop starting trials after this long, e.g. 30m")
    search.add_argument("--sampler", choices=("tpe", "nsga2", "random", "evolution"), default="tpe")
    search.add_argument("--objective", choices=("constrained", "pareto"), default="constrained",
                        help="constrained: best accuracy under the budget (with pruning); pareto: accuracy "
                             "against latency (NSGA-II or MOTPE) with the budget as a constraint")
    search.add_argument("--proxy-epochs", type=_positive_int, default=2)
    search.add_argument("--proxy-downscale", type=_downscale, default=4.0,
                        help="train at the architecture's resolution divided by this (default 4: 224 px -> 56 px, "
                             "where stage 3 sees 4x4 tokens and stage 4 2x2)")
    search.add_argument("--proxy-subset", type=_positive_int, default=4000, help="training images per trial")
    search.add_argument("--val-fraction", type=_fraction, default=0.1,
                        help="the val hold-out carved from the training split, per class (default 0.1); the "
                             "search selects on it and never reads the test split")
    search.add_argument("--val-seed", type=int, default=0, help="which images the val hold-out holds")
    search.add_argument("--seed", type=int, default=0, help="sampler and proxy-training seed")
    search.add_argument("--out", help="output folder (default runs/<study>)")
    search.add_argument("--study", help="study name (default: from space, device and budget)")
    search.add_argument("--storage", help="an RDB URL (sqlite:///..., postgresql://user@host/db) or a journal file "
                                          "path; several processes or machines may share a PostgreSQL study")
    search.add_argument("--storage-patience", type=_positive_float, default=120.0, metavar="SECONDS",
                        help="how long workers retry an unreachable database (a restart, a failover) before they "
                             "stop with an error; the same command then resumes (default 120)")
    search.add_argument("--backend", choices=("local", "ray"), default="local")
    search.add_argument("--ray-address", help="a Ray cluster to run on (default: a local Ray)")
    search.add_argument("--workers", type=_positive_int, default=1, help="trials trained at once")
    search.add_argument("--train-device", default="auto",
                        help="where candidates train: auto (CUDA, then MPS, then CPU), cpu, cuda (each local worker "
                             "its own GPU), cuda:N or mps; --device is the phone whose latency is predicted")
    search.add_argument("--cpus-per-trial", type=_positive_int,
                        help="threads of each worker, and CPUs each Ray trial requests (default: the machine's "
                             "CPUs shared out between the workers; 1 per trial on a Ray cluster)")
    search.add_argument("--gpus-per-trial", type=float, default=0.0,
                        help="GPUs each Ray trial requests (e.g. 1 or 0.5; default 0)")
    search.add_argument("--evaluator", default="proxy",
                        help="proxy (default): train each candidate with the proxy; supernet:DIR: score it by its "
                             "weights inherited from the supernet `nas supernet train` wrote in DIR (calibrated BN); "
                             "callable:MODULE:FUNCTION: FUNCTION(arch) returns its val accuracy (a tabular "
                             "benchmark, a zero-cost score; importable on every worker)")
    search.add_argument("--supernet-bn-images", type=_positive_int, default=ScoringConfig.bn_images,
                        help="supernet evaluator: training images that re-estimate each candidate's BN "
                             f"(default {ScoringConfig.bn_images})")
    search.add_argument("--supernet-val-images", type=_positive_int, default=ScoringConfig.val_images,
                        help="supernet evaluator: val images scored, a fixed stratified subset "
                             f"(default {ScoringConfig.val_images})")
    search.add_argument("--supernet-uncalibrated", action="store_true",
                        help="supernet evaluator: also record each candidate's top-1 with the supernet's own BN "
                             "statistics (supernet_top1_uncalibrated; one more pass over val, not ranked on)")
    search.set_defaults(func=cmd_search)

    sn = commands.add_parser("supernet", help="a weight-sharing supernet over a space").add_subparsers(
        dest="supernet_command", required=True, metavar="SUBCOMMAND")
    snt = sn.add_parser("train", help="train a supernet (sandwich rule, in-place distillation), resumable; "
                                      "writes supernet.pth for --evaluator supernet:DIR and --init supernet:DIR")
    snt.add_argument("--space", default="swiftformer", help=space_help)
    snt.add_argument("--data", default="fashion-mnist",
                     help="fashion-mnist (default), cifar10:PATH or imagefolder:PATH, with the search's splits")
    snt.add_argument("--out", required=True, help="output folder; running the same command again resumes it")
    snt.add_argument("--downscale", type=_downscale, default=4.0,
                     help="train each architecture at its resolution divided by this, as the proxy (default 4)")
    snt.add_argument("--random-subnets", type=int, default=2,
                     help="random subnets per step besides the largest and the smallest (default 2)")
    snt.add_argument("--distill", choices=("soft", "none"), default="soft",
                     help="soft (default): the other subnets learn the largest's predictions; none: the labels")
    snt.add_argument("--recipe", help="a recipe YAML over the supernet's defaults")
    snt.add_argument("--set", action="append", metavar="KEY=VALUE", help="one recipe value (repeatable)")
    snt.add_argument("--epochs", type=_positive_int)
    snt.add_argument("--batch-size", type=_positive_int, help="per process")
    snt.add_argument("--lr", type=float, help="peak learning rate (default: 2e-3 scaled from a batch of 512)")
    snt.add_argument("--seed", type=int)
    snt.add_argument("--workers", type=int, help="DataLoader processes (default 2)")
    snt.add_argument("--train-device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, "
                                                            "mps; under torchrun each process takes its local GPU")
    snt.set_defaults(func=cmd_supernet_train)

    rt = commands.add_parser("retrain", help="train an architecture in full (official recipe), resumable; "
                                             "writes checkpoints, a model card and exports")
    rt.add_argument("ref", help="a search run directory (its best architecture), an architecture .json file or "
                                "swiftformer:<xs|s|l1|l3>")
    rt.add_argument("--data", default="fashion-mnist",
                    help="fashion-mnist (default), cifar10:PATH or imagefolder:PATH (read from disk), with the "
                         "search's train/val/test splits")
    rt.add_argument("--out", required=True, help="output folder; running the same command again resumes it")
    rt.add_argument("--recipe", help="a recipe YAML (e.g. a previous run's recipe.yaml) over the official recipe")
    rt.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="one recipe value, e.g. --set mixup=0 (repeatable; see recipe.yaml for the keys)")
    rt.add_argument("--epochs", type=_positive_int)
    rt.add_argument("--batch-size", type=_positive_int, help="per process")
    rt.add_argument("--lr", type=float, help="peak learning rate (default: 2e-3 scaled from a batch of 2048)")
    rt.add_argument("--resolution", type=_positive_int, help="training side (default: the architecture's)")
    rt.add_argument("--seed", type=int)
    rt.add_argument("--workers", type=int, help="DataLoader processes (default 2)")
    rt.add_argument("--teacher", help="hard token distillation from timm:NAME, swiftformer:<variant>, an "
                                      "architecture .json or a nas retrain directory")
    rt.add_argument("--teacher-checkpoint", help="the teacher's trained weights")
    rt.add_argument("--init", help="warm start: checkpoint:FILE, or supernet:DIR (the architecture's weights "
                                   "extracted from the supernet trained in DIR)")
    rt.add_argument("--train-device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, "
                                                           "mps; under torchrun each process takes its local GPU")
    rt.add_argument("--export", default="onnx,coreml", help="formats written at the end: onnx, coreml, "
                                                            "onnx,coreml (default) or none")
    rt.set_defaults(func=cmd_retrain)

    ab = commands.add_parser("ablate", help="ablations over paired seeds: attention placement, attention type, or "
                                            "a grid of your own; `nas ablate report DIR` redraws one")
    ab.add_argument("what", help="placement, type, a grid .yaml file, or report")
    ab.add_argument("dir", nargs="?", help="with report: the ablation's --out folder")
    ab.add_argument("--base", help=f"the architecture varied: {model_ref_help} of the SwiftFormer family "
                                   "(default: the grid's base, else swiftformer:xs)")
    ab.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or "
                                                            "imagefolder:PATH, with the search's splits")
    ab.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1, the same for every variant "
                                                                    "(default 3); more later adds runs")
    ab.add_argument("--protocol", choices=("proxy", "reference"), default="proxy",
                    help="proxy: the search's proxy (set by --proxy-*); reference: the fidelity benchmark's "
                         "reference protocol, which also reads test once per run")
    ab.add_argument("--kinds", help="type ablation: block kinds, comma-separated (default: every kind of "
                                    "swiftformer.arch.BLOCK_TYPES)")
    ab.add_argument("--max-runs", type=_positive_int, default=100,
                    help="refuse, before anything trains, an ablation of more variants x seeds (default 100)")
    ab.add_argument("--reuse", action="append", metavar="DIR",
                    help="another ablation's --out folder (repeatable): its finished runs of the same architecture, "
                         "seed, data and protocol are copied instead of trained again, each naming its source")
    ab.add_argument("--proxy-epochs", type=_positive_int)
    ab.add_argument("--proxy-downscale", type=_downscale)
    ab.add_argument("--proxy-subset", type=_positive_int)
    ab.add_argument("--val-fraction", type=_fraction)
    ab.add_argument("--val-seed", type=int)
    ab.add_argument("--timeout", type=_duration, help="stop starting runs after this long, e.g. 3h")
    ab.add_argument("--out", help="output folder (default runs/<study>)")
    ab.add_argument("--study", help="study name (default: ablate-<what>-<base>-<protocol>)")
    ab.add_argument("--storage", help="a journal file path (default: DIR/study.journal) or an RDB URL")
    ab.add_argument("--backend", choices=("local", "ray"), default="local")
    ab.add_argument("--ray-address", help="a Ray cluster to run on (default: a local Ray)")
    ab.add_argument("--workers", type=_positive_int, default=1, help="runs trained at once")
    ab.add_argument("--train-device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    ab.add_argument("--cpus-per-trial", "--threads", dest="cpus_per_trial", type=_positive_int,
                    help="threads of each worker, and CPUs each Ray trial requests (default: the machine's CPUs "
                         "shared out between the workers)")
    ab.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each Ray trial requests")
    ab.set_defaults(func=cmd_ablate)

    report = commands.add_parser("report", help="print a search's summary and redraw its outputs")
    report.add_argument("dir", help="the search's --out folder")
    report.set_defaults(func=cmd_report)
    return parser


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--latency-budget -1ms`` would read as a missing value; attach it so the budget check can explain."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] in ("--latency-budget", "--timeout") and item.startswith("-"):
            out[-1] = f"{out[-1]}={item}"
        else:
            out.append(item)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except (UsageError, *USER_ERRORS) as exc:
        parser.exit(2, f"nas: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "nas: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
