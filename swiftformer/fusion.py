"""Exact algebra for folding inference-time affine ops into neighbouring convs and linears.

Each function returns new layers whose eval output equals the original sequence up to float rounding. PyTorch's
``fuse_conv_bn_eval`` covers conv-then-BN; SwiftFormer also needs BN-then-conv (the pre-norm MLP), BN-then-linear
(the classifier after the final norm) and a per-channel scale after a conv (layer scale).
"""
from __future__ import annotations

import copy

from . import _torchvision_fix  # noqa: F401  (must precede timm)

import torch
from timm.models import reparameterize_model
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The model as deployed: eval mode, BatchNorms folded, reparameterisable branches merged.

    Works for SwiftFormer (every block and the head fold) and for any timm model (its own ``fuse`` /
    ``reparameterize`` hooks, through timm's ``reparameterize_model``).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    reparameterize_model(model, inplace=True)
    if hasattr(model, "reparameterize"):  # the root itself, which timm's walk does not visit
        model.reparameterize()
    return model


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BN as ``y = scale * x + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return scale.detach(), shift.detach()


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv -> BN as one conv."""
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


def fold_bn_conv1x1(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN -> 1x1 conv as one 1x1 conv (exact because a 1x1 conv has no padding to see the BN's shift)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError("only a dense 1x1 conv can absorb a preceding BatchNorm")
    scale, shift = bn_affine(bn)
    fused = _clone_conv(conv)
    with torch.no_grad():
        weight = conv.weight.detach()
        fused.weight.copy_(weight * scale.view(1, -1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        fused.bias.copy_(bias + weight.flatten(1) @ shift)
    return fused


def fold_bn_linear(scale: torch.Tensor, shift: torch.Tensor, linear: nn.Linear) -> nn.Linear:
    """``linear(scale * x + shift)`` as one linear."""
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True, **like(linear.weight))
    with torch.no_grad():
        fused.weight.copy_(linear.weight * scale.view(1, -1))
        bias = linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features)
        fused.bias.copy_(bias + linear.weight @ shift)
    return fused


def scale_conv_output(conv: nn.Conv2d, scale: torch.Tensor) -> nn.Conv2d:
    """``scale * conv(x)`` per output channel as one conv (how layer scale disappears at inference)."""
    fused = _clone_conv(conv)
    with torch.no_grad():
        scale = scale.detach().reshape(-1)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        fused.bias.copy_(bias * scale)
    return fused


def linear_as_conv1x1(linear: nn.Linear, out_scale: torch.Tensor | None = None) -> nn.Conv2d:
    """A token-wise linear as a 1x1 conv on the NCHW map, optionally scaling its output channels."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=True, **like(linear.weight))
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, linear.in_features, 1, 1))
        conv.bias.copy_(linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features))
    return conv if out_scale is None else scale_conv_output(conv, out_scale)


def like(tensor: torch.Tensor) -> dict:
    """Keyword arguments that put a new layer on ``tensor``'s device, in its dtype."""
    return {"device": tensor.device, "dtype": tensor.dtype}


def _clone_conv(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode, **like(conv.weight))
