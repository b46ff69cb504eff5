"""Zero-cost scores: rank architectures at initialisation, without training, from one batch or none.

Four from the literature, as Abdelfattah et al. (ICLR 2021) score NAS with them (higher means better, all). Two read
no labels:

- ``synflow`` (Tanaka et al. 2020, as Abdelfattah et al. 2021 score NAS with it): with every parameter and
  buffer replaced by its absolute value and an all-ones input, the sum over the weights of every conv and linear
  layer (not their biases, not BatchNorm, not layer scales) of |w * dR/dw|, where R is the sum of the outputs.
  Data-free, in float64, BatchNorm in eval mode (at initialisation an identity, as their copy without BatchNorm),
  reported as log10 so that the deepest architectures' products stay comparable.
- ``jacob_cov`` (Mellor et al. 2020, "NAS without training", version 1, as Abdelfattah et al. score it): the
  correlation matrix of the input Jacobians of a batch of ``JACOB_COV_IMAGES`` (128) real images; architectures
  whose Jacobians are less correlated across images score higher: ``-sum(log(lambda + k) + 1 / (lambda + k))``
  over its eigenvalues, ``k = 1e-5``.

and two that read the loss's gradient on a labelled batch (the same images; model in training mode, cross-entropy,
summed over the weights of every conv and linear layer, as Abdelfattah et al.'s code sums them):

- ``snip`` (Lee et al. 2019): the sum of |w * dL/dw|, the loss's sensitivity to removing each weight;
- ``grad_norm``: the sum over layers of the Euclidean norm of dL/dw.

All are deterministic for a seed (initialisation; the batch is the task's first training images). All
score an architecture of any space through its interface (``space.build_model``, ``space.input_shape``): a
SwiftFormer architecture by default, a NAS-Bench-201 or FBNet one with its space.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from search_spaces import SearchSpace, Space
from swiftformer import SwiftFormerArch

ZERO_COST = ("synflow", "jacob_cov", "snip", "grad_norm")
JACOB_COV_IMAGES = 128  # the batch Abdelfattah et al. score jacob_cov on
_SWIFTFORMER = SearchSpace("swiftformer", ())  # builds any SwiftFormer architecture (its choices are not used)


def _fresh(arch: Any, seed: int, space: Space | None) -> torch.nn.Module:
    from ..engine import seed_init

    seed_init(seed)
    return (space or _SWIFTFORMER).build_model(arch)


def synflow(arch: SwiftFormerArch | Any, seed: int = 0, space: Space | None = None) -> float:
    """log10 of the synaptic-flow score of ``arch`` (as trained: classes, channels and side already set), an
    architecture of ``space`` (default: SwiftFormer's)."""
    model = _fresh(arch, seed, space).double().eval()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.abs_()
    x = torch.ones((space or _SWIFTFORMER).input_shape(arch), dtype=torch.float64)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    out.sum().backward()
    total = sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(model) if w.grad is not None)
    return math.log10(total) if total > 0 else -math.inf


def jacob_cov(arch: SwiftFormerArch | Any, images: torch.Tensor, seed: int = 0, space: Space | None = None) -> float:
    """The Jacobian-covariance score of ``arch`` (of ``space``, default SwiftFormer's) on ``images`` (a normalised
    batch at the architecture's side)."""
    model = _fresh(arch, seed, space).train()  # as at the first training step: BatchNorm on batch statistics
    x = images.detach().float().clone().requires_grad_(True)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    out.backward(torch.ones_like(out))
    jacobians = x.grad.reshape(len(x), -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero Jacobian row: NaN, answered below
        correlations = np.corrcoef(jacobians)
    if not np.all(np.isfinite(correlations)):
        return -math.inf  # a constant Jacobian: no image is told apart
    eigenvalues = np.linalg.eigvalsh(correlations)
    k = 1e-5
    return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def loss_gradient_scores(arch: SwiftFormerArch | Any, images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                         space: Space | None = None) -> dict[str, float]:
    """``snip`` and ``grad_norm`` of ``arch`` from one backward pass of the cross-entropy of ``images``
    (normalised, at the architecture's side) against ``labels``."""
    model = _fresh(arch, seed, space).train()
    out = model(images.detach().float())
    out = out[0] if isinstance(out, tuple) else out
    torch.nn.functional.cross_entropy(out, labels).backward()
    weights = [w for w in _weights(model) if w.grad is not None]
    return {"snip": float(sum((w.detach() * w.grad).abs().sum() for w in weights)),
            "grad_norm": float(sum(w.grad.norm() for w in weights))}


def zero_cost_scores(arch: SwiftFormerArch | Any, images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                     space: Space | None = None) -> dict[str, float]:
    """Every zero-cost score of ``arch`` by name (the names of ``ZERO_COST``)."""
    return {"synflow": synflow(arch, seed, space), "jacob_cov": jacob_cov(arch, images, seed, space),
            **loss_gradient_scores(arch, images, labels, seed, space)}
