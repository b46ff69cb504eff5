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
                  deployment_target: str = "iOS16", check: bool = True) -> ExportResult:
    """Write a CoreML ML Program (``.mlpackage``) for the Neural Engine; read its op list back.

    The numerical check needs the CoreML runtime, which only macOS has; elsewhere the result says so.
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
    deployed = deployable(model)
    example = torch.randn(*shape)
    with torch.no_grad():
        traced = torch.jit.trace(deployed, example)
    with _quiet():
        mlmodel = ct.convert(
            traced, inputs=[ct.TensorType(name="image", shape=shape)], outputs=[ct.TensorType(name="logits")],
            convert_to="mlprogram", minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32)
    mlmodel.save(str(path))
    result = ExportResult(path, "coreml", shape, coreml_op_types(path))
    if check and platform.system() == "Darwin":
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
