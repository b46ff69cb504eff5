"""Export a model as deployed (fused, eval, batch 1 by default) to ONNX and to a CoreML ML Program.

Every export is checked by reading the saved file back: ONNX runs in onnxruntime and must match PyTorch;
CoreML's op list is read from the ``.mlpackage`` everywhere, and its outputs are compared where the CoreML
runtime exists (macOS).
"""
from __future__ import annotations

import contextlib
import io
import logging
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fusion import fuse


class ExportError(ValueError):
    """An export that was asked for wrongly (format options, output path)."""


@dataclass
class ExportResult:
    path: Path
    format: str
    input_shape: tuple[int, ...]
    ops: Counter = field(default_factory=Counter)  # op type -> count, read back from the saved file
    max_abs_diff: float | None = None  # against PyTorch; None where the runtime is unavailable
    note: str = ""


def input_shape_of(model: nn.Module, resolution: int | None = None, batch: int = 1) -> tuple[int, int, int, int]:
    """The deployment input: the given resolution, else the model's architecture or pretrained config."""
    arch = getattr(model, "arch", None)
    cfg_size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    chans = arch.in_chans if arch is not None else cfg_size[0]
    side = resolution or (arch.resolution if arch is not None else cfg_size[-1])
    return batch, chans, side, side


def deployable(model: nn.Module) -> nn.Module:
    """A fused eval copy in the plain NCHW layout that exporters trace cleanly."""
    return fuse(model).to(memory_format=torch.contiguous_format)


def export_onnx(model: nn.Module, path: str | Path, resolution: int | None = None, opset: int = 18,
                check: bool = True, atol: float = 1e-4) -> ExportResult:
    """Write a single-file ONNX model with a dynamic batch axis; check it in onnxruntime against PyTorch."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = input_shape_of(model, resolution)
    deployed = deployable(model)
    example = torch.randn(*shape)
    with _quiet():
        torch.onnx.export(deployed, (example,), str(path), input_names=["image"], output_names=["logits"],
                          opset_version=opset, dynamo=True, external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
    result = ExportResult(path, "onnx", shape, Counter(node.op_type for node in onnx.load(str(path)).graph.node))
    if check:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch = torch.randn(2, *shape[1:])  # a batch other than the traced one exercises the dynamic axis
        with torch.inference_mode():
            expected = deployed(batch).numpy()
        got = session.run(None, {"image": batch.numpy()})[0]
        result.max_abs_diff = float(np.abs(got - expected).max())
        if result.max_abs_diff > atol:
            raise RuntimeError(f"ONNX export of {path} differs from PyTorch by {result.max_abs_diff:.2e} > {atol}")
    return result


def export_coreml(model: nn.Module, path: str | Path, resolution: int | None = None, precision: str = "float16",
                  deployment_target: str = "iOS16", check: bool = True,
                  app: AppInterface | None = None) -> ExportResult:
    """Write a CoreML ML Program (``.mlpackage``) for the Neural Engine; read its op list back.

    ``app``: an image input with the normalisation inside, class labels and metadata (``AppInterface``);
    without it, a float tensor in (already normalised) and the logits out. The numerical check needs the CoreML
    runtime, which only macOS has: there the app-ready package is compared with PyTorch on the same images;
    elsewhere the result says so.
    """
    import coremltools as ct

    if precision not in ("float16", "float32"):
        raise ExportError(f"precision {precision!r} is not supported; accepted: float16, float32")
    target = getattr(ct.target, deployment_target, None)
    if target is None:
        raise ExportError(f"deployment target {deployment_target!r} is unknown to coremltools; e.g. iOS16, iOS17")
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ExportError(f"a CoreML ML Program is saved as a .mlpackage directory, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = input_shape_of(model, resolution)
    if app is not None and len(app.mean) != shape[1]:
        raise ExportError(f"the image input's mean has {len(app.mean)} channels; the model takes {shape[1]}")
    deployed = deployable(model) if app is None else app_model(model, app)
    example = torch.randn(*shape) if app is None else torch.rand(*shape)  # (an app's pixels, scaled to 0-1)
    with torch.no_grad():
        traced = torch.jit.trace(deployed, example)
    if app is None:
        inputs, outputs, classifier = [ct.TensorType(name="image", shape=shape)], [ct.TensorType(name="logits")], None
    else:
        layout = ct.colorlayout.RGB if shape[1] == 3 else ct.colorlayout.GRAYSCALE
        inputs = [ct.ImageType(name="image", shape=shape, scale=1 / 255.0, bias=[0.0] * shape[1],
                               color_layout=layout)]
        outputs = None if app.labels else [ct.TensorType(name="logits")]
        classifier = ct.ClassifierConfig(list(app.labels)) if app.labels else None
        if app.labels and len(app.labels) != _classes(model, shape):
            raise ExportError(f"{len(app.labels)} labels for a model of {_classes(model, shape)} classes")
    with _quiet():
        mlmodel = ct.convert(
            traced, inputs=inputs, outputs=outputs, classifier_config=classifier,
            convert_to="mlprogram", minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32)
    if app is not None:
        mlmodel.short_description = app.metadata.get("description", "an image classifier of the SwiftFormer family")
        mlmodel.author = app.metadata.get("author", "SwiftNAS")
        for key, value in app.metadata.items():
            mlmodel.user_defined_metadata[key] = str(value)
    mlmodel.save(str(path))
    result = ExportResult(path, "coreml", shape, coreml_op_types(path))
    if check and platform.system() == "Darwin" and app is not None:
        from PIL import Image

        pixels = (torch.rand(shape[2], shape[3], shape[1]) * 255).round().to(torch.uint8)
        with torch.inference_mode():
            expected = deployed(pixels.permute(2, 0, 1)[None].float() / 255.0).numpy()[0]
        image = Image.fromarray(pixels.numpy() if shape[1] == 3 else pixels.numpy()[..., 0])
        predicted = ct.models.MLModel(str(path)).predict({"image": image})
        if app.labels:  # a classifier's outputs: the top label and a dict of every label's probability
            probabilities = next(v for v in predicted.values() if isinstance(v, dict))
            got = np.array([probabilities[label] for label in app.labels])
        else:
            got = predicted["logits"][0]
        result.max_abs_diff = float(np.abs(got - expected).max())
        if result.max_abs_diff > (5e-2 if precision == "float16" else 1e-3) * max(1.0, float(np.abs(expected).max())):
            raise RuntimeError(f"CoreML export of {path} differs from PyTorch by {result.max_abs_diff:.2e}")
    elif check and platform.system() == "Darwin":
        with torch.inference_mode():
            expected = deployed(example).numpy()
        got = ct.models.MLModel(str(path)).predict({"image": example.numpy()})["logits"]
        result.max_abs_diff = float(np.abs(got - expected).max())
        tolerance = (5e-2 if precision == "float16" else 1e-3) * max(1.0, float(np.abs(expected).max()))
        if result.max_abs_diff > tolerance:
            raise RuntimeError(f"CoreML export of {path} differs from PyTorch by {result.max_abs_diff:.2e}")
    elif check:
        result.note = "converted and read back; outputs not compared (the CoreML runtime needs macOS)"
    return result


@dataclass
class AppInterface:
    """What an iPhone app needs of a classifier: a camera frame in (CoreML's ``ImageType``, 0-255 pixels, the
    training normalisation inside the model), class labels and probabilities out (``ClassifierConfig``), and the
    model described (``metadata``: shown in Xcode, read with ``MLModel.modelDescription``).

    CoreML's ``ImageType`` takes one scale for every channel and a bias per channel; a per-channel standard
    deviation (ImageNet's) does not fit it, so the image type only scales to 0-1 and the normalisation is the
    graph's first op, exact for any statistics."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: list[str] | None = None  # None: the logits stay a tensor output
    metadata: dict[str, str] = field(default_factory=dict)


class _AppModel(nn.Module):
    """The deployed model behind the app's input and output: 0-255 pixels in, normalised as in training, and
    (with labels) softmax probabilities out."""

    def __init__(self, model: nn.Module, app: AppInterface):
        super().__init__()
        self.model, self.classify = model, app.labels is not None
        self.register_buffer("scale", 1.0 / torch.tensor(app.std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", -torch.tensor(app.mean, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # image: pixels already scaled to 0-1 by CoreML
        logits = self.model((image + self.shift) * self.scale)
        return logits.softmax(-1) if self.classify else logits


def app_model(model: nn.Module, app: AppInterface) -> nn.Module:
    """The module an app-ready export converts (tested against the float model on the same images)."""
    return _AppModel(deployable(model), app).eval()


def coreml_op_types(path: str | Path) -> Counter:
    """Op type -> count of a saved ML Program, read from its spec (works without the CoreML runtime)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    if not spec.HasField("mlProgram"):
        raise ValueError(f"{path} is not an ML Program")
    ops: Counter = Counter()
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            ops.update(op.type for op in block.operations)
    return ops


def _classes(model: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.inference_mode():
        return int(deployable(model)(torch.zeros(1, *shape[1:])).shape[-1])


@contextlib.contextmanager
def _quiet():
    """Silence converters' progress bars and chatter; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("coremltools", "torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
