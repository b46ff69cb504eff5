"""The graphs published latencies were measured on, where they differ from the graph we deploy.

A latency belongs to the graph that was converted and timed, not to the model's name. The SwiftFormer paper's
CoreML latencies were measured on models converted through the official code's ``CoreMLConversion=True`` path,
which drops the L2 normalisation of the attention's query and key (torch's ``F.normalize`` "is not supported
by the ANE", Amshaker/SwiftFormer issue #3). Calibrating on those rows with the normalised graph would charge
the normalisation's cost to the wrong ops. Our exporter (``swiftformer.export``) keeps the normalisation: the
search prices that graph, ``deployed``.
"""
from __future__ import annotations

import types

import swiftformer._torchvision_fix  # noqa: F401  (before timm)

import torch
import torch.nn.functional as F
from timm.models.swiftformer import EfficientAdditiveAttention as TimmAdditiveAttention
from torch import nn

from swiftformer.model import FusedAdditiveAttention, _l2_normalize

GRAPHS = {
    "deployed": "the model as our exporter deploys it (fused, eval, batch 1)",
    "no-qk-l2norm": "SwiftFormer attention without the query/key L2 normalisation (official CoreMLConversion path)",
}
DEFAULT_GRAPH = "deployed"


class GraphError(ValueError):
    """A graph name that is not known, or that does not apply to the model."""


def _timm_forward_without_qk_norm(self: TimmAdditiveAttention, x: torch.Tensor) -> torch.Tensor:
    # timm's forward with the two F.normalize calls of query and key removed (as the official CoreML path)
    b, _, h, w = x.shape
    x = x.flatten(2).permute(0, 2, 1)
    query, key = self.to_query(x), self.to_key(x)
    attn = F.normalize(query @ self.w_g * self.scale_factor, dim=1)
    attn = torch.sum(attn * query, dim=1, keepdim=True)
    out = self.final(self.proj(attn * key) + query)
    return out.permute(0, 2, 1).reshape(b, -1, h, w)


def _fused_forward_without_qk_norm(self: FusedAdditiveAttention, x: torch.Tensor) -> torch.Tensor:
    query, key = self.qk(x).chunk(2, dim=1)
    weights = _l2_normalize((query * self.w_g).sum(dim=1, keepdim=True), [2, 3])
    global_query = (weights * query).sum(dim=(2, 3), keepdim=True)
    return self.final(self.proj(global_query * key) + query)


_WITHOUT_QK_NORM = {TimmAdditiveAttention: _timm_forward_without_qk_norm,
                    FusedAdditiveAttention: _fused_forward_without_qk_norm}


def check_graph(graph: str) -> str:
    """``graph`` if it is known (an empty name is the deployed graph)."""
    graph = graph or DEFAULT_GRAPH
    if graph not in GRAPHS:
        raise GraphError(f"unknown graph {graph!r}; accepted: {', '.join(GRAPHS)}")
    return graph


def as_measured(deployed: nn.Module, graph: str, name: str = "the model") -> nn.Module:
    """The deployed module (changed in place) turned into the graph the measurement was taken on."""
    if check_graph(graph) == DEFAULT_GRAPH:
        return deployed
    changed = 0
    for module in deployed.modules():
        forward = _WITHOUT_QK_NORM.get(type(module))
        if forward is not None:
            module.forward = types.MethodType(forward, module)
            changed += 1
    if not changed:
        raise GraphError(f"graph {graph!r} applies to SwiftFormer attention, which {name} does not have")
    return deployed
