"""``nas latency calibrate|predict|evaluate|measure|lut``: the latency predictors and the measurements behind them."""
from __future__ import annotations

import argparse
import json
import sys

from ..files import replacing
from ..models import parse_model_ref
from ..progress import progress
from .options import MODEL_REF_HELP, SPACE_HELP, UsageError, add_predictor_choice, positive_int

TABLES = ("nb201", "fbnet")


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
    from ..latency.predictor import resolve_predictor

    if not (getattr(args, "predictor", None) or getattr(args, "device", None)):
        return None
    return resolve_predictor(args.device, args.predictor)


def _band_text(predictor) -> str:
    band = predictor.band
    if not band:
        return "no error band (calibrated by an older version)"
    return (f"error band {band['lower']:+.0%} / {band['upper']:+.0%} (quantiles {band['quantile_low']:g} and "
            f"{band['quantile_high']:g} of measured / predicted - 1, {band['split']}, {band['rows']} rows)")


def _table_calibrate(args: argparse.Namespace) -> None:
    from ..benchmarks.few_shot import calibrate_few_shot, score_few_shot
    from ..benchmarks.tables import BenchmarkError, latency_table

    if not args.device_name:
        raise UsageError(f"--table {args.table} needs --device-name (one of its columns)")
    try:
        calibration = calibrate_few_shot(args.table, args.device_name, args.shots, args.seed)
    except BenchmarkError as exc:
        raise UsageError(str(exc)) from None
    scores = score_few_shot(calibration, args.table)
    frame = calibration.predicted.rename("predicted_ms").to_frame()
    frame["measured_ms"] = latency_table(args.table)[args.device_name]
    frame["calibrated_on"] = frame.index.isin(calibration.archs)
    with replacing(args.out) as tmp:  # (a folder that is not there, a full disk: one line naming the file)
        frame.to_csv(tmp, float_format="%.5g")
    print(f"wrote {args.out}: {len(frame)} architectures of {args.table} on {args.device_name}, predicted from "
          f"{args.shots} measured (seed {args.seed}; form {calibration.form})")
    print(f"on the {len(frame) - args.shots} not measured: Spearman {scores['spearman']:.3f}, Kendall "
          f"{scores['kendall']:.3f}, MAPE {scores['mape']:.1%}, within 10 % {scores['within_10']:.0%}")


def _table_evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..benchmarks.few_shot import FORMS, evaluate_few_shot
    from ..benchmarks.few_shot_report import markdown, resolve_devices, summarise, write_evaluation
    from ..benchmarks.tables import BenchmarkError

    try:
        devices = resolve_devices(args.table, args.devices)
        shots = [int(k) for k in args.shots.split(",")]
    except BenchmarkError as exc:
        raise UsageError(str(exc)) from None
    except ValueError:
        raise UsageError(f"--shots {args.shots!r}: comma-separated whole numbers, e.g. 10,20,50,100") from None
    forms = tuple(f.strip() for f in args.forms.split(",")) if args.forms else None
    if forms and any(f not in FORMS for f in forms):
        raise UsageError(f"--forms {args.forms!r}: accepted: {', '.join(FORMS)}")
    try:
        frame = evaluate_few_shot(args.table, devices, shots, args.draws, **({"forms": forms} if forms else {}),
                                  progress=progress(f"few-shot calibration on {len(devices)} device(s)"))
    except BenchmarkError as exc:
        raise UsageError(str(exc)) from None
    if args.out:
        try:
            path = write_evaluation(args.table, frame, Path(args.out), forms)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write there ({exc.strerror or exc}); choose a writable "
                             "folder") from None
        print(f"wrote {path} and the CSVs and plot beside it", file=sys.stderr)
    print(markdown(args.table, summarise(frame)))


def cmd_latency_calibrate(args: argparse.Namespace) -> None:
    if args.table:
        return _table_calibrate(args)
    from ..latency import calibrate, read_measurements
    from ..latency.evaluate import evaluate_predictor

    data = read_measurements(args.measurements, args.device_name)
    device = data.device_name(args.device_name)
    samples = _profiled(data, "profiling models")
    predictor = calibrate(samples, device, calibration={"measurements": [str(p) for p in args.measurements],
                                                        "device_rows": device, "skipped": len(data.skipped)},
                          progress=progress("measuring the error band (nested leave-one-family-out)"),
                          family_progress=progress("measuring each family's band (nested leave-one-model-out)"))
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
    from ..latency.fitting import ModelForm

    return ModelForm(**predictor.calibration["form"]).describe() if "form" in predictor.calibration else "unknown"


def cmd_latency_predict(args: argparse.Namespace) -> None:
    from ..latency import predict_latency

    predictor = _predictor(args)
    ref = parse_model_ref(args.model)
    resolution = args.resolution or ref.default_resolution()
    from ..latency.measurements import family_of

    ms = predict_latency(args.model, predictor, resolution)
    family = family_of(args.model)
    priced = predictor.for_family(family)  # a measured family's band is its own held-out errors
    low, high = priced.lower_ms(ms), priced.upper_ms(ms)
    if args.json:
        print(json.dumps({"model": args.model, "latency_ms": round(ms, 4), "lower_ms": round(low, 4),
                          "upper_ms": round(high, 4), "device": predictor.device, "resolution": resolution}))
    else:
        whose = (f"the {family} family's held-out errors" if priced is not predictor else "an unseen family")
        band = f"; band {low:.3f}-{high:.3f} ms from {whose}" if priced.band else ""
        print(f"{ms:.3f} ms  ({args.model} at {resolution}x{resolution} on {predictor.device}, predicted{band})")


def cmd_latency_evaluate(args: argparse.Namespace) -> None:
    if args.table:
        if _predictor(args) or args.group:
            raise UsageError("--table judges the few-shot calibration; --device, --predictor and --group do not apply")
        return _table_evaluate(args)
    from ..latency import read_measurements
    from ..latency.evaluate import evaluate_calibration, evaluate_predictor

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
        from ..latency.calibration import CHOICE, judge_procedures

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
    from ..latency.measure import append_csv, csv_header, measure

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

    from ..latency.lut import build_table

    space = load_space(args.space)
    predictor = _predictor(args)
    table = build_table(space, predictor, progress(f"pricing parts of {space.name} for {predictor.device}"))
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} parts of space {space.name} priced for {predictor.device}")


def register(commands) -> None:
    latency = commands.add_parser("latency", help="predict, calibrate, evaluate and measure latency").add_subparsers(
        dest="latency_command", required=True, metavar="SUBCOMMAND")

    measurements_help = ("CSV file(s) with timm_name or model, resolution, latency_ms (optional: device, family, "
                         "graph, trust); rows of other devices help the fit")
    calibrate = latency.add_parser("calibrate", help="fit a predictor to measured latencies (its form chosen by "
                                                      "leave-one-family-out; other devices' rows help)")
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--measurements", nargs="+", help=measurements_help)
    source.add_argument("--table", choices=TABLES, help="a benchmark's latency table instead (nb201, fbnet): "
                        "--device-name is measured on --shots random architectures, HELP's known devices are the "
                        "prior, and the rest of the table is predicted")
    calibrate.add_argument("--out", required=True, help="predictor JSON to write (with --table: a CSV of every "
                                                        "architecture's predicted and measured ms)")
    calibrate.add_argument("--device-name", help="the device to calibrate for (needed when the files hold several; "
                                                 "names the rows of files without a device column)")
    calibrate.add_argument("--shots", type=positive_int, default=10,
                           help="with --table: measured architectures of the device (default 10)")
    calibrate.add_argument("--seed", type=int, default=0, help="with --table: which architectures (default 0)")
    calibrate.set_defaults(func=cmd_latency_calibrate)

    predict = latency.add_parser("predict", help="predicted latency of a model")
    add_predictor_choice(predict, required=True)
    predict.add_argument("--model", required=True, help=MODEL_REF_HELP)
    predict.add_argument("--resolution", type=positive_int, help="input side (default: the model's)")
    predict.add_argument("--json", action="store_true", help="one JSON object")
    predict.set_defaults(func=cmd_latency_predict)

    evaluate = latency.add_parser("evaluate", help="predicted against measured: a predictor, or cross-validated "
                                                    "calibration when none is given")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--measurements", nargs="+", help=measurements_help)
    source.add_argument("--table", choices=TABLES, help="judge the few-shot calibration on a benchmark's latency "
                        "table (nb201, fbnet) with HELP's split")
    evaluate.add_argument("--devices", default="test", help="with --table: test or validation (HELP's split) or a "
                          "comma-separated list (default test)")
    evaluate.add_argument("--shots", default="10,20,50,100", help="with --table: k values (default 10,20,50,100)")
    evaluate.add_argument("--draws", type=positive_int, default=10,
                          help="with --table: random draws of the k architectures per device and k (default 10)")
    evaluate.add_argument("--forms", help="with --table: the forms tried, the best by leave-one-out on the shots "
                          "(comma-separated: devices, work, devices+work; default devices)")
    evaluate.add_argument("--out", help="with --table: folder for the CSVs, the Markdown table and the plot")
    add_predictor_choice(evaluate, required=False)
    evaluate.add_argument("--device-name", help="whose rows to evaluate when the files hold several devices")
    evaluate.add_argument("--group", choices=("row", "family"),
                          help="what cross-validation holds out: row (default; one model at a time) or family "
                               "(reports leave-one-family-out next to leave-one-row-out, with per-family errors)")
    evaluate.add_argument("--json", action="store_true", help="the summary as one JSON object")
    evaluate.set_defaults(func=cmd_latency_evaluate)

    measure = latency.add_parser("measure", help="measure a model on a real runtime (median of repeated runs)")
    measure.add_argument("--backend", required=True, choices=("torch-cpu", "onnxruntime-cpu", "coreml"),
                         help="the runtime that runs the model (coreml: on macOS only; required)")
    measure.add_argument("--model", required=True, help=MODEL_REF_HELP)
    measure.add_argument("--resolution", type=positive_int, help="input side (default: the model's)")
    measure.add_argument("--runs", type=positive_int, default=50, help="timed runs (default 50)")
    measure.add_argument("--warmup", type=positive_int, default=10, help="untimed runs first (default 10)")
    measure.add_argument("--device-name", help="device label for the CSV row (default: host and backend)")
    measure.add_argument("--csv", help="append the result to this CSV (calibration schema)")
    measure.set_defaults(func=cmd_latency_measure)

    lut = latency.add_parser("lut", help="per-block latency table of a space for a device")
    lut.add_argument("--space", default="swiftformer", help=SPACE_HELP)
    add_predictor_choice(lut, required=True)
    lut.add_argument("--out", required=True, help="table JSON to write")
    lut.set_defaults(func=cmd_latency_lut)
