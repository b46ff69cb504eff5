"""``nas model info`` and ``nas export``: a model of the family (or timm's) inspected or exported."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..models import parse_model_ref
from .options import MODEL_REF_HELP, UsageError, positive_int


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

    ref, model = _build(args)
    out = Path(args.out)
    if args.format == "onnx":
        result = export_onnx(model, out, resolution=args.resolution)
    else:
        app = _app_interface(args, ref, model) if args.image_input or args.labels else None
        result = export_coreml(model, out, resolution=args.resolution, precision=args.precision, app=app)
    ops = ", ".join(f"{op} {n}" for op, n in result.ops.most_common() if op != "const")
    check = (f"max |diff| vs PyTorch {result.max_abs_diff:.2e}" if result.max_abs_diff is not None
             else result.note)
    print(f"wrote {result.path} ({args.format}, input {'x'.join(map(str, result.input_shape))}); {check}")
    print(f"ops: {ops}")


def _app_interface(args: argparse.Namespace, ref, model):
    """An iPhone app's interface for the export: the model's normalisation (its ``pretrained_cfg``), the labels
    of ``--labels`` (one a line), and what is known of the model as metadata: its architecture, its predicted
    latency on each shipped phone (the family's), and a retraining's figures with their splits (``results.json``
    beside its ``arch.json``)."""
    from swiftformer.export import AppInterface

    from ..files import read_text

    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    labels = None
    if args.labels:
        labels = [line.strip() for line in read_text(args.labels, "labels file", "give --labels a text file with "
                                                     "one class label a line").splitlines() if line.strip()]
    metadata = {"model": args.model}
    if ref.arch is not None:
        from ..latency import builtin_devices, load_device, predict_latency

        metadata["architecture"] = ref.arch.summary()
        for device in builtin_devices():
            metadata[f"predicted_latency_{device}_ms"] = f"{predict_latency(args.model, load_device(device)):.3f}"
        results = Path(args.model).with_name("results.json")
        if Path(args.model).suffix == ".json" and results.is_file():
            from ..files import read_json

            figures = read_json(results, "retraining's results")
            for split in ("val", "test"):
                if f"{split}_top1" in figures:
                    metadata[f"{split}_top1"] = f"{figures[f'{split}_top1']:.2f} % ({split} split)"
    return AppInterface(mean=mean, std=std, labels=labels, metadata=metadata)


def register(commands) -> None:
    model = commands.add_parser("model", help="inspect a model").add_subparsers(dest="model_command", required=True,
                                                                                metavar="SUBCOMMAND")
    info = model.add_parser("info", help="parameters, MACs and the per-part breakdown of a model")
    info.add_argument("model", help=MODEL_REF_HELP)
    info.add_argument("--resolution", type=positive_int, help="input side (default: the model's)")
    info.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    info.set_defaults(func=cmd_model_info)

    export = commands.add_parser("export", help="export a model, fused for inference, to ONNX or CoreML")
    export.add_argument("model", help=MODEL_REF_HELP)
    export.add_argument("--format", choices=("onnx", "coreml"), required=True,
                        help="onnx: one file, checked in onnxruntime; coreml: an ML Program package (required)")
    export.add_argument("--out", required=True, help="output file (.onnx) or package (.mlpackage)")
    export.add_argument("--resolution", type=positive_int, help="input side (default: the model's)")
    export.add_argument("--checkpoint", help="official or timm-port SwiftFormer checkpoint to load first")
    export.add_argument("--num-classes", type=positive_int, help="classifier size (default: the model's)")
    export.add_argument("--precision", choices=("float16", "float32"), default="float16",
                        help="CoreML compute precision (default: float16, what the Neural Engine runs)")
    export.add_argument("--image-input", action="store_true",
                        help="CoreML: an image input (a camera frame's 0-255 pixels; the model's normalisation "
                             "inside) and the model's description as metadata, for an iPhone app (default: a float "
                             "tensor input, already normalised)")
    export.add_argument("--labels", help="CoreML: a text file of class labels, one a line: the package becomes a "
                                         "classifier (top label and every label's probability); implies "
                                         "--image-input (default: logits out)")
    export.set_defaults(func=cmd_export)
