"""Parameter and MAC counts of any architecture, in closed form, without building the network.

MACs follow the convention of the spec's measured counts: the multiply-accumulates of every Conv2d and Linear
(both heads included), no bias additions, no norms or element-wise ops. Counting from the description costs
microseconds, so a search can filter thousands of candidates; tests check it against the built modules.

Multi-head self-attention (``mhsa``) adds its two products of activations, q^T k and v attn^T (``2 * N^2 *
heads * head_dim`` for N tokens): they are matrix products like a Linear's, and quadratic in the map size they
are most of the block's work at early stages, which a MAC budget must see. The additive attention (``attn``) has
no such product: its activation-activation ops are element-wise or a product with the single vector ``w_g``
(N * C, linear in N), outside the convention as in the spec's measured counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .arch import Block, SwiftFormerArch, mhsa_heads


@dataclass(frozen=True)
class PartCost:
    """One part of the network at a given input resolution."""

    name: str  # "stem", "stage2.block3", "embed1", "head"
    kind: str  # "stem", "conv", "attn", "mhsa", "embed", "head"
    channels: int
    h: int  # the part's output feature-map size
    w: int
    params: int
    macs: int


def _half(size: int) -> int:
    return (size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1


def _block_cost(block: Block, c: int, hw: int) -> tuple[int, int]:
    h = int(c * block.mlp_ratio)
    if block.type == "conv":
        return 2 * c * h + h + 14 * c, (9 * c + 2 * c * h) * hw
    if block.type == "attn":
        # local representation (a conv encoder without expansion) + four C x C linears + w_g + MLP + two layer scales
        return 6 * c * c + 25 * c + 2 * c * h + h, (9 * c + 6 * c * c + 2 * c * h) * hw
    # local representation + pre-norm + q/k/v (C -> 3i) and output (i -> C) projections + MLP + two layer scales
    heads, head_dim = mhsa_heads(c)
    i = heads * head_dim
    return (2 * c * c + 23 * c + 4 * c * i + 3 * i + 2 * c * h + h,
            (9 * c + 2 * c * c + 4 * c * i + 2 * c * h) * hw + attention_macs(i, hw))


def attention_macs(channels: int, tokens: int) -> int:
    """q^T k and v attn^T of multi-head self-attention over ``tokens`` with ``channels`` q/k/v channels in all."""
    return 2 * channels * tokens * tokens


def feature_sizes(arch: SwiftFormerArch, resolution: int | tuple[int, int] | None = None
                  ) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Map sizes: after the stem's first conv, and in each stage (default resolution: the architecture's)."""
    res = arch.resolution if resolution is None else resolution
    h, w = (res, res) if isinstance(res, int) else res
    h, w = _half(h), _half(w)
    stem_mid = (h, w)
    h, w = _half(h), _half(w)
    sizes = [(h, w)]
    for down in arch.downsample:
        if down:
            h, w = _half(h), _half(w)
        sizes.append((h, w))
    return stem_mid, sizes


def iter_costs(arch: SwiftFormerArch, resolution: int | tuple[int, int] | None = None) -> Iterator[PartCost]:
    """Every part of ``arch`` with its parameters and MACs at ``resolution`` (default: the architecture's)."""
    (h1, w1), sizes = feature_sizes(arch, resolution)
    mid, c = arch.stem_width, arch.stages[0].width
    h, w = sizes[0]
    stem_params = arch.in_chans * mid * 9 + 3 * mid + mid * c * 9 + 3 * c  # two conv+bias, two BN (weight, bias)
    yield PartCost("stem", "stem", c, h, w, stem_params, arch.in_chans * mid * 9 * h1 * w1 + mid * c * 9 * h * w)
    for s, stage in enumerate(arch.stages):
        h, w = sizes[s]
        if s > 0:
            prev = arch.stages[s - 1].width
            if arch.downsample[s - 1] or prev != stage.width:
                yield PartCost(f"embed{s}", "embed", stage.width, h, w, 9 * prev * stage.width + 3 * stage.width,
                               9 * prev * stage.width * h * w)
        for j, block in enumerate(stage.blocks):
            params, macs = _block_cost(block, stage.width, h * w)
            yield PartCost(f"stage{s + 1}.block{j + 1}", block.type, stage.width, h, w, params, macs)
    c_out, heads = arch.stages[-1].width, (2 if arch.distillation else 1) if arch.num_classes else 0
    yield PartCost("head", "head", c_out, 1, 1, 2 * c_out + heads * (c_out * arch.num_classes + arch.num_classes),
                   heads * c_out * arch.num_classes)


def count_params(arch: SwiftFormerArch) -> int:
    """Trainable parameters (BatchNorm running statistics excluded), as ``sum(p.numel())`` of the built model."""
    return sum(part.params for part in iter_costs(arch))


def count_macs(arch: SwiftFormerArch, resolution: int | tuple[int, int] | None = None) -> int:
    """Conv2d + Linear (and mhsa attention-product) multiply-accumulates for one image at ``resolution``
    (default: the architecture's)."""
    return sum(part.macs for part in iter_costs(arch, resolution))


def measure_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Conv2d + Linear MACs per image of any model, counted with forward hooks on one batch-1 pass.

    The same convention as ``count_macs``, for models that have no architecture description (timm's): the
    attention products are counted for this family's multi-head self-attention, not for other models' attention.
    """
    from .model import FusedMultiHeadSelfAttention, MultiHeadSelfAttention  # the model imports timm: only here

    total = 0

    def attention_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += attention_macs(module.qkv.out_channels // 3, output.shape[-2] * output.shape[-1])

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * per_output  # batch 1: every output element is one dot product

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles += [m.register_forward_hook(attention_hook) for m in model.modules()
                if isinstance(m, (MultiHeadSelfAttention, FusedMultiHeadSelfAttention))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape[1:]))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
