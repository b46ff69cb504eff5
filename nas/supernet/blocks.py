"""The SwiftFormer blocks at their largest size, runnable at any prefix width.

Each class mirrors one module of ``swiftformer.model`` op for op and key for key (same parameter names and
shapes, same operation order), with every weight sliced to the subnet's width: this is what makes a subnet's
output equal the extracted ordinary model's (``tests/test_supernet.py`` checks it on perturbed weights). Layer
scales start as in the model family: 1.0 in conv encoders, ``layer_scale_init_value`` (1e-5) in attention
encoders, so a fresh attention block is close to the identity.

``BLOCK_KINDS`` maps each block type of ``swiftformer.arch.BLOCK_TYPES`` to its sliceable block; a new block
type becomes available to supernets by adding its entry here. A block is built as ``factory(width, hidden)`` at
the stage's largest sizes and provides ``forward(x, hidden_dim)`` (its width is the input's) and
``sort_hidden_channels()``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SlicedBatchNorm2d, SlicedConv2d, SlicedLinear, sort_hidden_channels


class SuperConvEncoder(nn.Module):
    """``swiftformer.model.ConvEncoder``: depthwise 3x3 -> BN -> 1x1 expand -> GELU -> 1x1 project, scaled."""

    def __init__(self, dim: int, hidden_dim: int, layer_scale_init_value: float = 1.0):
        super().__init__()
        self.layer_scale = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1))
        self.dwconv = SlicedConv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = SlicedBatchNorm2d(dim)
        self.pwconv1 = SlicedConv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.pwconv2 = SlicedConv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor, hidden_dim: int) -> torch.Tensor:
        dim = x.shape[1]
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)), hidden_dim)), dim)
        return x + self.layer_scale[:dim] * y

    def sort_hidden_channels(self) -> None:
        sort_hidden_channels(self.pwconv1, self.pwconv2)


class SuperAdditiveAttention(nn.Module):
    """``swiftformer.model.EfficientAdditiveAttention`` on tokens (B, N, C), C any prefix width.

    The scale is the subnet's own ``C ** -0.5``, as in the ordinary model at that width.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.to_query = SlicedLinear(dim, dim)
        self.to_key = SlicedLinear(dim, dim)
        self.w_g = nn.Parameter(torch.randn(dim, 1))
        self.Proj = SlicedLinear(dim, dim)
        self.final = SlicedLinear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        query = F.normalize(self.to_query(x, dim), dim=-1)
        key = F.normalize(self.to_key(x, dim), dim=-1)
        weights = F.normalize(query @ self.w_g[:dim] * dim ** -0.5, dim=1)
        global_query = torch.sum(weights * query, dim=1, keepdim=True)
        return self.final(self.Proj(global_query * key, dim) + query, dim)


class SuperMlp(nn.Module):
    """``swiftformer.model.Mlp``: BN -> 1x1 expand -> GELU -> 1x1 project (dropout 0, as the model's default)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.norm1 = SlicedBatchNorm2d(dim)
        self.fc1 = SlicedConv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = SlicedConv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor, hidden_dim: int) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm1(x), hidden_dim)), x.shape[1])


class SuperSwiftFormerEncoder(nn.Module):
    """``swiftformer.model.SwiftFormerEncoder``: local representation, then attention and MLP residuals."""

    def __init__(self, dim: int, hidden_dim: int, layer_scale_init_value: float = 1e-5):
        super().__init__()
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1))
        self.local_representation = SuperConvEncoder(dim, dim)
        self.attn = SuperAdditiveAttention(dim)
        self.linear = SuperMlp(dim, hidden_dim)

    def forward(self, x: torch.Tensor, hidden_dim: int) -> torch.Tensor:
        x = self.local_representation(x, x.shape[1])  # its hidden width is the block's width
        b, c, h, w = x.shape
        attn = self.attn(x.permute(0, 2, 3, 1).reshape(b, h * w, c)).reshape(b, h, w, c).permute(0, 3, 1, 2)
        x = x + self.layer_scale_1[:c] * attn
        return x + self.layer_scale_2[:c] * self.linear(x, hidden_dim)

    def sort_hidden_channels(self) -> None:
        sort_hidden_channels(self.linear.fc1, self.linear.fc2)


class SuperEmbedding(nn.Module):
    """``swiftformer.model.Embedding`` with stride 2: 3x3 conv + BN between stages."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.proj = SlicedConv2d(in_chans, out_chans, 3, stride=2, padding=1)
        self.norm = SlicedBatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor, out_chans: int) -> torch.Tensor:
        return self.norm(self.proj(x, out_chans))


class SuperStem(nn.Sequential):
    """``swiftformer.model.Stem``: two stride-2 3x3 conv-BN-ReLU layers (indices 0..5, the official keys)."""

    def __init__(self, in_chans: int, mid_chans: int, out_chans: int):
        super().__init__(
            SlicedConv2d(in_chans, mid_chans, 3, 2, 1), SlicedBatchNorm2d(mid_chans), nn.ReLU(),
            SlicedConv2d(mid_chans, out_chans, 3, 2, 1), SlicedBatchNorm2d(out_chans), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, mid_chans: int, out_chans: int) -> torch.Tensor:
        x = self[2](self[1](self[0](x, mid_chans)))
        return self[5](self[4](self[3](x, out_chans)))


#: Block type (``swiftformer.arch.BLOCK_TYPES``) -> its sliceable block, built as ``factory(dim, hidden_dim)``.
BLOCK_KINDS: Mapping[str, Callable[[int, int], nn.Module]] = {
    "conv": SuperConvEncoder,
    "attn": SuperSwiftFormerEncoder,
}
