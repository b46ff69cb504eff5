"""What a finished retraining leaves in its directory, for the person who ships the model.

- ``model.pth`` and ``model_ema.pth``: bare state_dicts in the official key naming (``swiftformer.load_checkpoint``
  and timm's ``pretrained_cfg_overlay=dict(file=...)`` load them strictly);
- ``arch.json``, ``recipe.yaml`` (pass it back with ``--recipe``), ``log.csv`` and ``curve.png`` (per epoch);
- ``results.json`` and ``model_card.md``: accuracy on val and test, cost, predicted latency, recipe, how to load;
- ``model.onnx`` (checked in onnxruntime) and ``model.mlpackage`` (CoreML ML Program), fused for inference.
"""
from __future__ import annotations

import copy
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from swiftformer import count_macs, count_params
from swiftformer.export import AppInterface

from ..files import replacing, write_text
from .components import normalisation
from .runs import RetrainResult, RetrainSpec

if TYPE_CHECKING:
    from ..data.loaders import ImageSplits


def predicted_latencies(arch) -> dict[str, float]:
    """Predicted latency on every shipped phone at the architecture's resolution."""
    from ..latency import builtin_devices, load_device, profile_model
    from ..latency.predictor import SEARCHED_FAMILY
    from swiftformer import SwiftFormer

    with torch.random.fork_rng():
        torch.manual_seed(0)
        profile = profile_model(SwiftFormer(arch), (1, arch.in_chans, arch.resolution, arch.resolution))
    return {device: load_device(device).predict(profile, SEARCHED_FAMILY) for device in builtin_devices()}


def write_outputs(result: "RetrainResult", model: nn.Module, ema: nn.Module | None, spec: "RetrainSpec",
                  splits: "ImageSplits", source_name: str, recipe_note: str, lr: float, world: int, device: str,
                  say: Callable[[str], None]) -> None:
    out, arch, recipe = result.out, result.arch, result.recipe
    with replacing(out / "model.pth") as tmp:
        torch.save(model.state_dict(), tmp)
    if ema is not None:
        with replacing(out / "model_ema.pth") as tmp:
            torch.save(ema.state_dict(), tmp)
    shipped = ema if recipe.eval_model == "ema" and ema is not None else model
    headline = "ema_" if shipped is ema and ema is not None else ""
    latency = predicted_latencies(arch)
    images_per_s = [row["images_per_s"] for row in result.log]
    summary: dict[str, Any] = {
        "architecture": arch.summary(), "source": source_name, "data": spec.data, "splits": splits.describe(),
        "epochs": recipe.epochs, "seconds": round(result.seconds, 1), "processes": world, "device": device,
        "images_per_s": round(sum(images_per_s) / len(images_per_s), 1), "peak_lr": lr,
        "params": count_params(arch), "macs": count_macs(arch), "headline_weights": recipe.eval_model,
        **{k: round(v, 4) for k, v in result.final.items()},
        **{f"latency_{d}_ms": round(v, 4) for d, v in latency.items()},
        "teacher": spec.teacher, "init": spec.init,
    }
    mean, std = normalisation(arch.in_chans)
    app = AppInterface(mean=mean, std=std, labels=list(splits.classes), metadata={
        "architecture": arch.summary(), "data": spec.data,
        **{f"predicted_latency_{d}_ms": f"{v:.3f}" for d, v in latency.items()},
        **{f"{headline}{split}_top1": f"{summary[f'{headline}{split}_top1']:.2f} % ({split} split)"
           for split in ("val", "test") if f"{headline}{split}_top1" in summary}})
    exports = export_model(copy.deepcopy(shipped).cpu().eval(), out, spec.exports, say, app)
    summary["exports"] = exports
    write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    write_text(out / "model_card.md", model_card(summary, result, recipe_note, headline, latency))
    files = ["model.pth"] + (["model_ema.pth"] if ema is not None else []) + exports + [
        "model_card.md", "results.json", "log.csv", "curve.png", "recipe.yaml"]
    say(f"val top-1 {summary[headline + 'val_top1']:.2f} %, test top-1 {summary[headline + 'test_top1']:.2f} % "
        f"({recipe.eval_model}); outputs in {out}: {', '.join(files)}")


def export_model(model: nn.Module, out: Path, formats: tuple[str, ...], say: Callable[[str], None],
                 app: "AppInterface | None" = None) -> list[str]:
    """Fused ONNX (compared with PyTorch in onnxruntime) and CoreML exports, the CoreML one app-ready when
    ``app`` is given (an image input with the normalisation inside, the data's class labels, the run's figures as
    metadata); a CoreML failure is reported, not fatal, since the checkpoints are the product and conversion can be
    retried with ``nas export``."""
    from swiftformer.export import export_coreml, export_onnx

    written = []
    if "onnx" in formats:
        result = export_onnx(model, out / "model.onnx")
        say(f"ONNX export checked in onnxruntime: max |diff| {result.max_abs_diff:.1e}")
        written.append("model.onnx")
    if "coreml" in formats:
        try:
            export_coreml(model, out / "model.mlpackage", app=app)
            written.append("model.mlpackage")
        except Exception as exc:  # noqa: BLE001 (coremltools raises many kinds; the run's weights are safe)
            say(f"warning: CoreML export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                f"retry with: nas export {out / 'arch.json'} --checkpoint {out / 'model.pth'} --format coreml "
                f"--out {out / 'model.mlpackage'}")
    return written


def model_card(summary: dict[str, Any], result: "RetrainResult", recipe_note: str, headline: str,
               latency: dict[str, float]) -> str:
    arch, recipe, out = result.arch, result.recipe, result.out
    rows = []
    for weights, prefix in (("model", ""), ("EMA", "ema_")):
        if f"{prefix}val_top1" in summary:
            rows.append(f"| {weights} | {summary[prefix + 'val_top1']:.2f} | {summary[prefix + 'val_top5']:.2f} | "
                        f"{summary[prefix + 'test_top1']:.2f} | {summary[prefix + 'test_top5']:.2f} |")
    phones = "\n".join(f"| {d} | {ms:.3f} |" for d, ms in latency.items())
    recipe_lines = ", ".join(f"{k} {v}" for k, v in recipe.to_dict().items())
    return f"""# {arch.summary()}

Retrained by `nas retrain` from {summary['source']} on `{summary['data']}`.

## Architecture
`{arch.summary()}`: {summary['params'] / 1e6:.2f} M parameters, {summary['macs'] / 1e6:.1f} M MACs at
{arch.resolution} px, {arch.in_chans} input channel(s), {arch.num_classes} classes (`arch.json`).

Predicted latency (CoreML, calibrated predictors shipped with SwiftNAS; predictions, not measurements):

| phone | ms |
|---|---|
{phones}

## Accuracy
{summary['splits']}. val is the hold-out the search selected on; test was read once, after training.
The headline weights are the **{summary['headline_weights']}** (`eval_model` in the recipe).

| weights | val top-1 % | val top-5 % | test top-1 % | test top-5 % |
|---|---|---|---|---|
{chr(10).join(rows)}

One training run (seed {recipe.seed}): compare models with several seeds before drawing conclusions.

## Training
{recipe.epochs} epochs, {summary['processes']} process(es) on {summary['device']}, {summary['seconds']:.0f} s,
{summary['images_per_s']:.0f} images/s on average, peak lr {summary['peak_lr']:.3g}
({'distilled from ' + summary['teacher'] if summary['teacher'] else 'no teacher'}{', ' + summary['init'] if summary['init'] else ''}).
{recipe_note}. Recipe (`recipe.yaml`): {recipe_lines}. Per-epoch figures: `log.csv`, `curve.png`.
Machine: {platform.machine()}, torch {torch.__version__}.

## Use it
```python
import swiftformer, timm
model = timm.create_model("swiftnas_arch", arch="{out / 'arch.json'}", pretrained=True,
                          pretrained_cfg_overlay=dict(file="{out / ('model_ema.pth' if headline else 'model.pth')}"))
# or: model = swiftformer.create_model("{out / 'arch.json'}"); swiftformer.load_checkpoint(model, "{out / 'model.pth'}")
```
Inputs: {arch.in_chans} x {arch.resolution} x {arch.resolution}, normalised with mean
{list(_stats(arch.in_chans)[0])} and std {list(_stats(arch.in_chans)[1])}.
Exports (fused for inference): {', '.join(summary['exports']) or 'none'}; again with
`nas export {out / 'arch.json'} --checkpoint {out / 'model.pth'} --format coreml --out model.mlpackage`.
"""


def _stats(channels: int):
    return normalisation(channels)
