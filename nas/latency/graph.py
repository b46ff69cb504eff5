"""What a model does at inference, as counted work per kind of operation.

The model is taken as deployed (``swiftformer.fuse``: BatchNorm folded, reparameterisable branches merged, eval
mode), run once at batch 1 under a dispatch mode that sees every aten op, whatever Python code produced it
(timm models, functional calls, attention kernels). Ops whose inputs are all weights are constant-folded by
converters and are skipped; pure views are free.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import prod

import swiftformer._torchvision_fix  # noqa: F401

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from swiftformer import fuse

from .measured_graphs import DEFAULT_GRAPH, as_measured

# Work units the predictors fit a cost to: MACs for convs and matmuls, elements touched for the rest.
FEATURES = (
    "conv_macs",       # dense convolutions (k x k and 1x1)
    "dwconv_macs",     # depthwise convolutions
    "matmul_macs",     # linear layers (one operand is a weight) on 2-D or 4-D (NHWC) activations
    "token_macs",      # linear layers on token sequences (B, N, C), the ViT layout
    "attn_macs",       # products of two activations (attention scores and their use)
    "elementwise",     # arithmetic and activations (output elements)
    "norm",            # normalisation layers: layer, group, unfolded batch norms (input elements)
    "reduction",       # sums, means, pooling, vector norms (input elements)
    "softmax",         # softmax inputs (elements)
    "layout",          # transposes, concatenations, copies that move data (elements moved)
    "ops",             # number of operations that run (each costs dispatch/launch overhead)
    "activation_io",   # activation elements read and written by the ops that run (memory traffic)
    "weight_io",       # weight elements read by convs and linears
)

# Classified by op name (in-place variants included): the level at which ops reach a dispatch mode differs
# between torch versions (``conv2d`` or ``convolution``, ``linear`` or ``addmm``).
_CONV = {"conv2d", "convolution", "_convolution", "conv1d", "conv_transpose2d"}
_MATMUL = {"linear", "matmul", "mm", "addmm", "bmm", "baddbmm", "einsum"}
_ATTENTION = {"scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_attention_math"}
_BATCH_NORM = {"batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training"}
_NORMS = {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "rms_norm", "instance_norm"} | _BATCH_NORM
_SOFTMAX = {"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"}
_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "avg_pool2d", "max_pool2d", "max_pool2d_with_indices",
               "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d", "var_mean", "var", "std",
               "logsumexp", "cumsum", "linalg_vector_norm", "norm"}  # an L2 norm is a sum of squares
_LAYOUT = {"clone", "cat", "stack", "permute_copy", "constant_pad_nd", "pad", "im2col", "col2im", "unfold",
           "fold", "pixel_shuffle", "pixel_unshuffle", "roll", "upsample_nearest2d", "upsample_bilinear2d",
           "upsample_bicubic2d", "interpolate", "_unsafe_view", "copy", "contiguous", "repeat", "flip",
           "index_select", "gather", "_to_copy", "to"}
_TRANSPOSES = {"permute", "transpose", "t", "swapaxes", "movedim"}  # views here, materialised by converters
_FREE = {"view", "reshape", "expand", "expand_as", "unsqueeze", "squeeze", "slice",
         "select", "split", "split_with_sizes", "unbind", "detach", "alias", "flatten", "unflatten", "chunk",
         "as_strided", "lift_fresh", "empty", "zeros", "ones", "arange", "full", "scalar_tensor", "new_empty",
         "new_zeros", "new_ones", "sym_size", "dropout", "native_dropout", "empty_like", "zeros_like", "ones_like",
         "full_like", "fill", "zero", "_local_scalar_dense", "size", "dim", "is_same_size", "view_as",
         "reshape_as", "narrow", "identity", "item", "_unsafe_index", "index",
         "linspace", "meshgrid", "tensor", "sym_numel", "stride"}


@dataclass
class OpProfile:
    """Counted work of one forward pass, per feature, plus the op histogram for inspection."""

    features: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    op_counts: Counter = field(default_factory=Counter)

    def __add__(self, other: "OpProfile") -> "OpProfile":
        return OpProfile({k: self.features[k] + other.features[k] for k in FEATURES},
                         self.op_counts + other.op_counts)

    @property
    def macs(self) -> float:
        return sum(self.features[k] for k in ("conv_macs", "dwconv_macs", "matmul_macs", "token_macs", "attn_macs"))


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


class _Recorder(TorchDispatchMode):
    def __init__(self, constants: set[int]):
        super().__init__()
        self.constants = constants  # ids of tensors whose values are known before the input arrives
        self.conv_outputs: set[int] = set()
        self.profile = OpProfile()
        self._alive: list[torch.Tensor] = []  # ids above stay unique only while their tensors live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if all(id(t) in self.constants for t in inputs):  # weights only: folded at conversion
            self.constants.update(id(o) for o in outputs)
            self._alive.extend(outputs)
            return out
        self._count(func, args, inputs, outputs)
        return out

    def _count(self, func, args, inputs, outputs) -> None:
        name = func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__
        if name in _FREE:
            return
        f = self.profile.features
        first_out = outputs[0] if outputs else None
        if name in _BATCH_NORM and id(inputs[0]) in self.conv_outputs:
            return  # conv -> BN is folded by every converter
        self.profile.op_counts[name] += 1
        f["ops"] += 1
        out_numel = _numel(first_out)
        act_io = out_numel + sum(t.numel() for t in inputs if id(t) not in self.constants)
        weights = sum(t.numel() for t in inputs if id(t) in self.constants) if name in _CONV | _MATMUL else 0
        f["activation_io"] += act_io
        f["weight_io"] += weights
        if name in _CONV:
            x, weight = args[0], args[1]
            groups = args[-1] if isinstance(args[-1], int) else 1
            depthwise = groups > 1 and groups == x.shape[1]
            f["dwconv_macs" if depthwise else "conv_macs"] += out_numel * prod(weight.shape[1:])
            if first_out is not None:
                self.conv_outputs.add(id(first_out))
                self._alive.append(first_out)
        elif name in _MATMUL and name != "einsum":
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            weighted = id(b) in self.constants or id(a) in self.constants
            kind = ("token_macs" if a.dim() == 3 else "matmul_macs") if weighted else "attn_macs"
            f[kind] += out_numel * a.shape[-1]
        elif name in _ATTENTION:
            q, k = args[0], args[1]
            scores = prod(q.shape[:-1]) * k.shape[-2]
            f["attn_macs"] += 2 * scores * q.shape[-1]
            f["softmax"] += scores
        elif name in _NORMS:
            f["norm"] += _numel(inputs[0])
        elif name in _SOFTMAX:
            f["softmax"] += _numel(inputs[0])
        elif name in _REDUCTIONS:
            f["reduction"] += _numel(inputs[0])
        elif name in _LAYOUT or name in _TRANSPOSES:
            f["layout"] += out_numel
        else:  # element-wise arithmetic and activations
            f["elementwise"] += out_numel


def profile_module(module: nn.Module, inputs: torch.Tensor) -> OpProfile:
    """Record ``module(inputs)`` as it runs (no fusing here: pass a deployed module)."""
    constants = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}
    recorder = _Recorder(constants)
    with torch.inference_mode(), recorder:
        module(inputs)
    return recorder.profile


def profile_model(model: nn.Module, input_shape: tuple[int, int, int, int], graph: str = DEFAULT_GRAPH) -> OpProfile:
    """The deployed graph's work for one image of ``input_shape`` (batch forced to 1); ``graph`` names another
    graph a published latency was measured on (``measured_graphs.GRAPHS``)."""
    deployed = as_measured(fuse(model).to(memory_format=torch.contiguous_format), graph, type(model).__name__)
    return profile_module(deployed, torch.randn(1, *input_shape[1:]))
