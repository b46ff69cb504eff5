"""Layers whose subnets use the first channels of the largest weights (OFA's and AutoFormer's prefix slicing).

A subnet at width ``c`` and hidden width ``h`` uses ``weight[:h, :c]``: the input's own channel count selects
the input slice, and the caller names the output width where it is not the input's. Keeping the parameter and
buffer names of ``swiftformer.model``'s layers means a subnet's state_dict is the supernet's, sliced to the
shapes of the ordinary model (``SuperNet.sub_state_dict``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SlicedConv2d(nn.Conv2d):
    """A dense or depthwise Conv2d run on the first input channels, giving the first ``out_channels`` outputs.

    A depthwise conv (``groups == in == out``) has one filter per channel, so its output width is the input's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.depthwise = self.groups > 1
        if self.depthwise and not self.groups == self.in_channels == self.out_channels:
            raise ValueError("SlicedConv2d slices dense or depthwise convs only, not grouped ones")

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        in_channels = x.shape[1]
        if self.depthwise:
            weight, bias, groups = self.weight[:in_channels], self.bias[:in_channels], in_channels
        else:
            out = self.out_channels if out_channels is None else out_channels
            weight, bias, groups = self.weight[:out, :in_channels], self.bias[:out], 1
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class SlicedLinear(nn.Linear):
    """A Linear on the first input features, giving the first ``out_features`` outputs."""

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        out = self.out_features if out_features is None else out_features
        return F.linear(x, self.weight[:out, : x.shape[-1]], self.bias[:out])


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the input's (first) channels; in training mode only their running statistics move.

    Same arithmetic as ``nn.BatchNorm2d`` (including a float momentum of 1/(k+1), the cumulative average that
    ``nas.engine.reestimate_bn`` sets, and ``momentum=None``), applied to prefix views of the weights and buffers:
    the running
    statistics update in place through the views, so channels beyond the subnet's width keep theirs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)


@torch.no_grad()
def sort_hidden_channels(expand: nn.Module, project: nn.Module) -> None:
    """Reorder an MLP's hidden channels by importance, most important first (OFA's
    ``re_organize_middle_weights``): the L1 norm of the weights that read each hidden channel.

    Only a permutation of the hidden units between two layers with an element-wise activation, so the largest
    MLP computes the same function; a narrower subnet's prefix then keeps the strongest units. Optimiser state
    indexed by these parameters (Adam moments) does not follow, so sort between training phases.
    """
    importance = project.weight.abs().sum(dim=tuple(d for d in range(project.weight.dim()) if d != 1))
    order = torch.argsort(importance, descending=True, stable=True)
    expand.weight.copy_(expand.weight[order])
    expand.bias.copy_(expand.bias[order])
    project.weight.copy_(project.weight[:, order])
