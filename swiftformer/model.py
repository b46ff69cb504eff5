"""SwiftFormer, generalised to any architecture of the design space (``swiftformer.arch``).

Follows the official Amshaker/SwiftFormer code op for op and key for key, so official checkpoints load with
``strict=True`` and give the same outputs; timm-port checkpoints load after renaming. Every block knows how to
``fuse()`` itself for inference (BatchNorm and layer scale folded, attention run on the NCHW map with 1x1 convs),
which is what timm's ``reparameterize_model`` calls.

Every layer takes timm's ``device`` / ``dtype`` factory arguments. Annotations are evaluated (no postponed
annotations): ``torch.fx`` copies ``forward``'s hints into the code it generates, and TorchScript cannot resolve
them there when they are strings.
"""
import math
import re
from typing import Any, Callable, Mapping

from . import _torchvision_fix  # noqa: F401  (must precede timm)

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import (build_model_with_cfg, generate_default_cfgs, register_model, reparameterize_model,
                         resolve_pretrained_cfg)
from timm.models._features import feature_take_indices

from .arch import VARIANTS, Block, SwiftFormerArch, as_arch, mhsa_heads
from .fusion import (bn_affine, fold_bn_conv1x1, fold_bn_linear, fold_conv_bn, like, linear_as_conv1x1,
                     scale_conv_output)

__all__ = ["SwiftFormer", "convert_checkpoint", "load_checkpoint"]

DeviceLike = torch.device | str | None
GLOBAL_POOLS = ("avg", "")  # timm's names: average pooling, or none (forward_head keeps the map)


class ConvEncoder(nn.Module):
    """Depthwise 3x3 -> BN -> 1x1 expand -> GELU -> 1x1 project, scaled and added back.

    With ``hidden_dim == dim`` this is also the SwiftFormerEncoder's local representation, whose keys and ops
    are the same.
    """

    def __init__(self, dim: int, hidden_dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1.0,
                 device: DeviceLike = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.layer_scale = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1, **dd))
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm = nn.BatchNorm2d(dim, **dd)
        self.pwconv1 = nn.Conv2d(dim, hidden_dim, 1, **dd)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden_dim, dim, 1, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.drop_path(self.layer_scale * y)

    def fuse(self) -> "FusedConvEncoder":
        return FusedConvEncoder(fold_conv_bn(self.dwconv, self.norm), self.pwconv1,
                                scale_conv_output(self.pwconv2, self.layer_scale))


class LayoutAgnosticGELU(nn.GELU):
    """Exact GELU that runs at full speed on channels-last maps too.

    On CPU, torch's GELU is about 2x slower on a channels-last NCHW tensor than on the same memory viewed as a
    contiguous NHWC tensor; the fused model keeps its activations channels-last, so it takes that view.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)


class FusedConvEncoder(nn.Module):
    def __init__(self, dwconv: nn.Conv2d, pwconv1: nn.Conv2d, pwconv2: nn.Conv2d):
        super().__init__()
        self.dwconv, self.pwconv1, self.act, self.pwconv2 = dwconv, pwconv1, LayoutAgnosticGELU(), pwconv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwconv2(self.act(self.pwconv1(self.dwconv(x))))


class EfficientAdditiveAttention(nn.Module):
    """Additive attention over tokens (B, N, C): a single global query pooled with L2-normalised token weights.

    Official op order, including the scale that the later normalisation makes redundant (spec section 2.4).
    """

    def __init__(self, dim: int, device: DeviceLike = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.to_query = nn.Linear(dim, dim, **dd)
        self.to_key = nn.Linear(dim, dim, **dd)
        self.w_g = nn.Parameter(torch.randn(dim, 1, **dd))
        self.scale_factor = dim ** -0.5
        self.Proj = nn.Linear(dim, dim, **dd)
        self.final = nn.Linear(dim, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = F.normalize(self.to_query(x), dim=-1)
        key = F.normalize(self.to_key(x), dim=-1)
        weights = F.normalize(query @ self.w_g * self.scale_factor, dim=1)
        global_query = torch.sum(weights * query, dim=1, keepdim=True)
        return self.final(self.Proj(global_query * key) + query)

    def fused_with_scale(self, out_scale: torch.Tensor | None = None) -> "FusedAdditiveAttention":
        qk = nn.Linear(self.to_query.in_features, 2 * self.to_query.out_features, **like(self.to_query.weight))
        with torch.no_grad():
            qk.weight.copy_(torch.cat([self.to_query.weight, self.to_key.weight]))
            qk.bias.copy_(torch.cat([self.to_query.bias, self.to_key.bias]))
        w_g = (self.w_g.detach() * self.scale_factor).reshape(1, -1, 1, 1)
        return FusedAdditiveAttention(linear_as_conv1x1(qk), w_g, linear_as_conv1x1(self.Proj),
                                      linear_as_conv1x1(self.final, out_scale))


class FusedAdditiveAttention(nn.Module):
    """The same attention on the NCHW map: query and key in one 1x1 conv, no permutes, no reshapes."""

    def __init__(self, qk: nn.Conv2d, w_g: torch.Tensor, proj: nn.Conv2d, final: nn.Conv2d):
        super().__init__()
        self.qk, self.proj, self.final = qk, proj, final
        self.w_g = nn.Parameter(w_g, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key = self.qk(x).chunk(2, dim=1)
        query, key = _l2_normalize(query, [1]), _l2_normalize(key, [1])
        weights = _l2_normalize((query * self.w_g).sum(dim=1, keepdim=True), [2, 3])
        global_query = (weights * query).sum(dim=(2, 3), keepdim=True)
        return self.final(self.proj(global_query * key) + query)


def _l2_normalize(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """``F.normalize`` over ``dims`` (same eps rule), written as plain reductions: on an NCHW map this is ~8x
    faster on CPU than ``linalg_vector_norm`` over the strided channel axis, and maps to basic CoreML ops.

    ``dims`` is a list, not a variadic tuple, so that the fused model can be scripted."""
    return x / x.square().sum(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)


class Mlp(nn.Module):
    """Pre-normalised 1x1-conv MLP of the SwiftFormerEncoder."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, device: DeviceLike = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = nn.BatchNorm2d(dim, **dd)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1, **dd)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm1(x))))))

    def fused_with_scale(self, out_scale: torch.Tensor) -> nn.Sequential:
        return nn.Sequential(fold_bn_conv1x1(self.norm1, self.fc1), LayoutAgnosticGELU(),
                             scale_conv_output(self.fc2, out_scale))


class AttentionEncoder(nn.Module):
    """Local representation, then a token mixer and an MLP, each a layer-scaled residual branch: the frame both
    attention kinds share (``attn`` and ``mhsa`` differ only in the mixer and the token layout it takes).
    ``mixer`` builds the mixer at ``dim`` after the local representation, so parameters are created (and drawn
    from the random stream) in the official order."""

    def __init__(self, mixer: Callable[..., nn.Module], dim: int, hidden_dim: int, drop: float = 0.0,
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-5, device: DeviceLike = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1, **dd))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1, **dd))
        self.local_representation = ConvEncoder(dim, dim, **dd)
        self.attn = mixer(dim, **dd)
        self.linear = Mlp(dim, hidden_dim, drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def fuse(self) -> "FusedSwiftFormerEncoder":
        return FusedSwiftFormerEncoder(self.local_representation.fuse(), self.attn.fused_with_scale(self.layer_scale_1),
                                       self.linear.fused_with_scale(self.layer_scale_2))


class SwiftFormerEncoder(AttentionEncoder):
    """The ``attn`` block: efficient additive attention over the map's tokens."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-5, device: DeviceLike = None, dtype: torch.dtype | None = None):
        super().__init__(EfficientAdditiveAttention, dim, hidden_dim, drop, drop_path, layer_scale_init_value,
                         device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        b, c, h, w = x.shape
        attn = self.attn(x.permute(0, 2, 3, 1).reshape(b, h * w, c)).reshape(b, h, w, c).permute(0, 3, 1, 2)
        x = x + self.drop_path(self.layer_scale_1 * attn)
        return x + self.drop_path(self.layer_scale_2 * self.linear(x))


class FusedSwiftFormerEncoder(nn.Module):
    """Either attention encoder (``attn`` or ``mhsa``) fused: the same three residual branches, nothing to scale."""

    def __init__(self, local_representation: nn.Module, attn: nn.Module, linear: nn.Module):
        super().__init__()
        self.local_representation, self.attn, self.linear = local_representation, attn, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.attn(x)
        return x + self.linear(x)


class MultiHeadSelfAttention(nn.Module):
    """Softmax self-attention over the map's H*W tokens, EfficientFormer-style, on the NCHW map.

    Heads follow ``arch.mhsa_heads``: 32 channels each, ``max(1, dim // 32)`` of them (one head as wide as
    ``dim`` below 32), so q, k and v have ``num_heads * head_dim <= dim`` channels. A BatchNorm pre-norm (it folds
    into the q/k/v projection, unlike a LayerNorm) and 1x1 convs on the map for the projections. No
    position bias: EfficientFormer's is learned per map size, and these blocks must run at any resolution. The
    output projection is ``out_proj``: ``.attn.proj.`` keys are renamed as timm-port checkpoint keys on loading.
    """

    def __init__(self, dim: int, device: DeviceLike = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads, self.head_dim = mhsa_heads(dim)
        inner = self.num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.norm = nn.BatchNorm2d(dim, **dd)
        self.qkv = nn.Conv2d(dim, 3 * inner, 1, **dd)
        self.out_proj = nn.Conv2d(inner, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(_softmax_attention(self.qkv(self.norm(x)), self.num_heads, self.scale))

    def fused_with_scale(self, out_scale: torch.Tensor) -> "FusedMultiHeadSelfAttention":
        """Pre-norm folded into q/k/v, the 1/sqrt(head_dim) into q's weights, the layer scale into ``out_proj``."""
        qkv = fold_bn_conv1x1(self.norm, self.qkv)
        q_scale = qkv.weight.new_ones(qkv.out_channels)
        q_scale[: self.num_heads * self.head_dim] = self.scale
        return FusedMultiHeadSelfAttention(scale_conv_output(qkv, q_scale),
                                           scale_conv_output(self.out_proj, out_scale), self.num_heads)


class FusedMultiHeadSelfAttention(nn.Module):
    def __init__(self, qkv: nn.Conv2d, out_proj: nn.Conv2d, num_heads: int):
        super().__init__()
        self.qkv, self.out_proj, self.num_heads = qkv, out_proj, num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(_softmax_attention(self.qkv(x), self.num_heads, 1.0))


def _softmax_attention(qkv: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """Multi-head attention of a (B, 3 * heads * head_dim, H, W) q/k/v map, back to (B, heads * head_dim, H, W).

    ``scaled_dot_product_attention`` rather than explicit matmuls and softmax: with explicit matmuls (over
    (B, heads) or over B * heads) ``torch.onnx.export`` specialises the dynamic batch axis to the traced batch of
    1, while this op exports with it, converts to CoreML (as matmul and softmax for iOS 16), scripts and traces,
    and the latency profiler counts it as attention work. The output is made contiguous for the same reason:
    with one head its reshape would be a view whose strides make the next conv specialise the batch (with
    several heads the reshape copies anyway).
    """
    b, _, h, w = qkv.shape
    q, k, v = qkv.reshape(b, 3, num_heads, -1, h * w).transpose(-2, -1).unbind(1)  # each (B, heads, N, head_dim)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.transpose(-2, -1).contiguous().reshape(b, -1, h, w)


class MHSAEncoder(AttentionEncoder):
    """The ``mhsa`` block: SwiftFormerEncoder's structure with multi-head softmax self-attention as token mixer.

    Local representation, then attention and MLP, each a layer-scaled residual branch, as EfficientFormer's
    meta-block; it differs from ``SwiftFormerEncoder`` only in the mixer, so an ablation compares mixers alone.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-5, device: DeviceLike = None, dtype: torch.dtype | None = None):
        super().__init__(MultiHeadSelfAttention, dim, hidden_dim, drop, drop_path, layer_scale_init_value,
                         device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.drop_path(self.layer_scale_1 * self.attn(x))
        return x + self.drop_path(self.layer_scale_2 * self.linear(x))


class Embedding(nn.Module):
    """3x3 conv + BN between stages: halves the resolution (stride 2) and/or changes the width."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 2, device: DeviceLike = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, device=device, dtype=dtype)
        self.norm = nn.BatchNorm2d(out_chans, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    def fuse(self) -> nn.Conv2d:
        return fold_conv_bn(self.proj, self.norm)


class Stem(nn.Sequential):
    """Two stride-2 3x3 conv-BN-ReLU layers (indices 0..5, as the official ``patch_embed``)."""

    def __init__(self, in_chans: int, mid_chans: int, out_chans: int, device: DeviceLike = None,
                 dtype: torch.dtype | None = None):
        dd = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Conv2d(in_chans, mid_chans, 3, 2, 1, **dd), nn.BatchNorm2d(mid_chans, **dd), nn.ReLU(),
            nn.Conv2d(mid_chans, out_chans, 3, 2, 1, **dd), nn.BatchNorm2d(out_chans, **dd), nn.ReLU(),
        )

    def fuse(self) -> nn.Sequential:
        return nn.Sequential(fold_conv_bn(self[0], self[1]), nn.ReLU(), fold_conv_bn(self[3], self[4]), nn.ReLU())


def make_block(block: Block, dim: int, drop_rate: float = 0.0, drop_path: float = 0.0,
               layer_scale_init_value: float = 1e-5, device: DeviceLike = None,
               dtype: torch.dtype | None = None) -> nn.Module:
    """The module for one block of the description at width ``dim``."""
    hidden = int(dim * block.mlp_ratio)
    if block.type in ("attn", "mhsa"):
        encoder = SwiftFormerEncoder if block.type == "attn" else MHSAEncoder
        return encoder(dim, hidden, drop_rate, drop_path, layer_scale_init_value, device=device, dtype=dtype)
    # official: conv encoders get no drop path and layer scale 1.0
    return ConvEncoder(dim, hidden, device=device, dtype=dtype)


def _square_size(img_size: int | tuple[int, int] | list[int] | None) -> int | None:
    """timm's ``img_size`` (an int or ``(H, W)``) as the architecture's square resolution."""
    if isinstance(img_size, (tuple, list)):
        if len(img_size) != 2 or img_size[0] != img_size[1]:
            raise ValueError(f"img_size {tuple(img_size)!r} is not supported; accepted: an int or a square (H, W)")
        return img_size[0]
    return img_size


def _check_global_pool(global_pool: str) -> str:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool {global_pool!r} is not supported; accepted: 'avg', '' (no pooling)")
    return global_pool


class SwiftFormer(nn.Module):
    """A SwiftFormer built from an architecture description.

    Outputs follow the official code: with the distillation head, training mode returns ``(head, dist_head)``
    logits (unless ``set_distilled_training(False)``) and eval mode their mean; ``num_classes=0`` returns pooled features. ``num_classes``, ``in_chans``,
    ``img_size`` and ``distillation`` override the description's values (timm passes the first three).
    ``global_pool`` is ``'avg'`` or ``''`` (timm's "no pooling": ``forward_head`` keeps the map, and the heads, if
    any, classify every position like a 1x1 conv). ``device`` and ``dtype`` place every parameter and buffer at
    creation, as timm's ``create_model`` asks.
    """

    def __init__(
            self,
            arch: SwiftFormerArch,
            num_classes: int | None = None,
            in_chans: int | None = None,
            img_size: int | tuple[int, int] | None = None,
            distillation: bool | None = None,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            proj_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            layer_scale_init_value: float = 1e-5,
            device: DeviceLike = None,
            dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        overrides = dict(num_classes=num_classes, in_chans=in_chans, resolution=_square_size(img_size),
                         distillation=distillation)
        arch = arch.replace(**{k: v for k, v in overrides.items() if v is not None})
        self.arch = arch
        self.num_classes = arch.num_classes
        self.in_chans = arch.in_chans
        self.global_pool = _check_global_pool(global_pool)
        self.num_features = self.head_hidden_size = arch.stages[-1].width
        self.fused = False
        self.grad_checkpointing = False
        self.distilled_training = True  # official: training mode returns both heads' logits

        self.patch_embed = Stem(arch.in_chans, arch.stem_width, arch.stages[0].width, **dd)
        network: list[nn.Module] = []
        total_blocks, block_index = arch.num_blocks, 0
        self.feature_info = []
        reduction = 4
        for s, stage in enumerate(arch.stages):
            if s > 0:
                prev, down = arch.stages[s - 1].width, arch.downsample[s - 1]
                reduction *= 2 if down else 1
                network.append(Embedding(prev, stage.width, 2 if down else 1, **dd) if down or prev != stage.width
                               else nn.Identity())
            blocks = []
            for block in stage.blocks:
                dpr = drop_path_rate * block_index / max(total_blocks - 1, 1)
                blocks.append(make_block(block, stage.width, proj_drop_rate, dpr, layer_scale_init_value, **dd))
                block_index += 1
            network.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=stage.width, reduction=reduction, module=f"network.{2 * s}"))
        self.network = nn.Sequential(*network)

        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head, self.dist_head = self._make_heads(arch.num_classes, arch.distillation, **dd)
        self.apply(self._init_weights)

    def _make_heads(self, num_classes: int, distillation: bool, device: DeviceLike = None,
                    dtype: torch.dtype | None = None) -> tuple[nn.Module, nn.Module | None]:
        if num_classes == 0:  # features: one identity head (official: two, whose mean is the same features)
            return nn.Identity(), None
        return (nn.Linear(self.num_features, num_classes, device=device, dtype=dtype),
                nn.Linear(self.num_features, num_classes, device=device, dtype=dtype) if distillation else None)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------ timm hooks
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()  # official: layer scales and w_g are decayed; timm exempts 1-D params and biases itself

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^patch_embed", blocks=r"^network\.(\d+)" if coarse else [
            (r"^network\.(\d+)\.(\d+)", None), (r"^network\.(\d+)", (0,)), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        """timm's switch: off, training mode returns the heads' mean (what a plain classification loss trains)."""
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New heads for ``num_classes`` (0: none), on the model's device and dtype and in its train/eval mode.

        ``global_pool`` (``'avg'`` or ``''``) changes the pooling; ``None`` keeps it.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if global_pool is not None:
            self.global_pool = _check_global_pool(global_pool)
        param = next(self.parameters(), None)
        dd = {} if param is None else {"device": param.device, "dtype": param.dtype}
        self.num_classes = num_classes
        self.arch = self.arch.replace(num_classes=num_classes)
        self.head, self.dist_head = self._make_heads(num_classes, self.arch.distillation, **dd)
        for head in (self.head, self.dist_head):
            if head is not None:
                self._init_weights(head)
                head.train(self.training)

    # --------------------------------------------------------------------------------------------- forward
    def _num_stages(self) -> int:
        return (len(self.network) + 1) // 2  # network[2s] is stage s; network[2s-1] the embedding before it

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stage feature maps (timm's API): ``indices`` picks stages, ``norm`` applies the final norm to the last."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r} is not supported; accepted: 'NCHW'")
        num_stages = self._num_stages()
        take, max_index = feature_take_indices(num_stages, indices)
        intermediates = []
        x = self.patch_embed(x)
        for idx, module in enumerate(self.network[: 2 * max_index + 1] if stop_early else self.network):
            x = module(x)
            stage = idx // 2
            if idx % 2 == 0 and stage in take:
                intermediates.append(self.norm(x) if norm and stage == num_stages - 1 else x)
        if intermediates_only:
            return intermediates
        reached_last_stage = not stop_early or max_index == num_stages - 1
        return (self.norm(x) if reached_last_stage else x), intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the norm and head), as timm's feature getter asks.

        When stages are dropped the final norm and the heads go too (they are sized for the last stage), and
        ``num_features`` becomes the width of the last kept stage.
        """
        take, max_index = feature_take_indices(self._num_stages(), indices)
        prune_end = max_index < self._num_stages() - 1
        self.network = self.network[: 2 * max_index + 1]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            for module in self.network:
                x = checkpoint(module, x, use_reentrant=False)
        else:
            x = self.network(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        if pre_logits:
            return x
        if self.global_pool == "":
            x = x.permute(0, 2, 3, 1)  # the linear heads then classify every position, as a 1x1 conv would
        if self.dist_head is None:
            return self._logits_layout(self.head(x))
        logits, dist_logits = self._logits_layout(self.head(x)), self._logits_layout(self.dist_head(x))
        if self.training and self.distilled_training and not torch.jit.is_scripting():
            return logits, dist_logits
        return (logits + dist_logits) / 2

    def _logits_layout(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled logits back to NCHW."""
        return x.permute(0, 3, 1, 2) if self.global_pool == "" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x))

    # -------------------------------------------------------------------------------------------- deploy
    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every BatchNorm and layer scale into convs/linears, in place, for inference.

        After this the model gives the same eval outputs (the head and distillation head become one averaged
        linear) and can no longer be trained as the original. Conv weights are stored channels-last, which
        oneDNN runs faster on CPU; conv outputs follow the weights' layout, so inputs need no conversion, and
        exported graphs (ONNX, CoreML) are unaffected.
        """
        if self.fused:
            return
        self.eval()
        reparameterize_model(self, inplace=True)  # calls each block's fuse()
        # the final BN commutes with the spatial mean and acts per position: fold it into the linear head
        scale, shift = bn_affine(self.norm)
        if self.num_classes == 0:
            head = nn.Linear(self.num_features, self.num_features, **like(scale))
            head.weight.copy_(torch.eye(self.num_features))
            head.bias.zero_()
        elif self.dist_head is not None:
            head = nn.Linear(self.num_features, self.num_classes, **like(self.head.weight))
            head.weight.copy_((self.head.weight + self.dist_head.weight) / 2)
            head.bias.copy_((self.head.bias + self.dist_head.bias) / 2)
        else:
            head = self.head
        self.head = fold_bn_linear(scale, shift, head)
        self.norm, self.dist_head = nn.Identity(), None
        self.to(memory_format=torch.channels_last)
        self.fused = True


# ------------------------------------------------------------------------------------------------ checkpoints
_TIMM_TO_OFFICIAL = (
    (re.compile(r"^stem\."), "patch_embed."),
    (re.compile(r"^head_dist\."), "dist_head."),
    (re.compile(r"\.attn\.proj\."), ".attn.Proj."),
    (re.compile(r"\.(layer_scale(?:_1|_2)?)\.gamma$"), r".\1"),
)


def convert_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An official-naming state_dict from an official or timm-port checkpoint.

    Accepts a bare state_dict or a training checkpoint holding it under ``model`` or ``state_dict``, and strips
    a DistributedDataParallel ``module.`` prefix.
    """
    for key in ("model", "state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    out = {}
    for key, value in checkpoint.items():
        key = key.removeprefix("module.")
        for pattern, repl in _TIMM_TO_OFFICIAL:  # none of these patterns matches an official key
            key = pattern.sub(repl, key)
        m = re.match(r"^stages\.(\d+)\.(blocks|downsample)\.(.*)$", key)
        if m:
            s, part, rest = int(m.group(1)), m.group(2), m.group(3)
            key = f"network.{2 * s if part == 'blocks' else 2 * s - 1}.{rest}"
        out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn`` hook.

    A model built with ``distillation=False`` has no ``dist_head``: the checkpoint's is dropped (timm's loader
    only drops the heads that the pretrained config names, and only when the class count changes).
    """
    state_dict = convert_checkpoint(state_dict)
    if getattr(model, "dist_head", None) is None:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("dist_head.")}
    return state_dict


def load_checkpoint(model: SwiftFormer, checkpoint: str | Mapping[str, Any], strict: bool = True) -> None:
    """Load an official or timm-port checkpoint (a path or an already loaded dict) into ``model``."""
    if not isinstance(checkpoint, Mapping):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(convert_checkpoint(checkpoint), strict=strict)


# --------------------------------------------------------------------------------------------- timm registry
def feature_map_size(arch: SwiftFormerArch, resolution: int | None = None) -> tuple[int, int]:
    """The final feature map's side at ``resolution`` (default: the architecture's), timm's ``pool_size``.

    The stem's two stride-2 convs and each downsampling embedding (3x3, padding 1) map a side ``n`` to
    ``ceil(n / 2)``; transitions without downsampling keep it.
    """
    side = arch.resolution if resolution is None else resolution
    for _ in range(2 + sum(arch.downsample)):
        side = math.ceil(side / 2)
    return side, side


def _arch_cfg(arch: SwiftFormerArch) -> dict[str, Any]:
    """The pretrained_cfg fields the architecture decides: its weights' head and input, its final map, and the
    classifier modules it has (timm's loader and tests look each of them up in the state_dict)."""
    return {
        "num_classes": arch.num_classes, "input_size": (arch.in_chans, arch.resolution, arch.resolution),
        "pool_size": feature_map_size(arch), "classifier": ("head", "dist_head") if arch.distillation else "head",
    }


def _cfg(arch: SwiftFormerArch) -> dict[str, Any]:
    return {
        **_arch_cfg(arch),
        "crop_pct": 0.875, "interpolation": "bicubic",  # official eval: resize 256, centre crop 224
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "first_conv": "patch_embed.0",
        "license": "apache-2.0", "paper_ids": "arXiv:2303.15446",
        "paper_name": "SwiftFormer: Efficient Additive Attention for Transformer-based Real-time Mobile Vision "
                      "Applications",
        "origin_url": "https://github.com/Amshaker/SwiftFormer",
    }


#: What ``swiftnas_arch`` builds without ``arch=``, so that tools looping over ``timm.list_models()`` can build it.
DEFAULT_ARCH = "xs"

# No weights are hosted: pretrained=True needs pretrained_cfg_overlay=dict(file=...) pointing at a checkpoint.
default_cfgs = generate_default_cfgs({
    **{f"swiftnas_{name}": _cfg(arch) for name, arch in VARIANTS.items()},
    "swiftnas_arch": _cfg(VARIANTS[DEFAULT_ARCH]),
})

_WEIGHT_SOURCES = ("file", "state_dict", "url", "hf_hub_id")


def _create_swiftformer(variant: str, arch: SwiftFormerArch, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's ``build_model_with_cfg`` with a pretrained_cfg that describes ``arch``.

    The registry's config (no ``pretrained_cfg``, or a tag) is completed from the architecture; an explicit
    config, e.g. a saved model's read back by ``create_model("local-dir:...")``, already describes its weights
    and is kept. ``pretrained_cfg_overlay`` applies last either way.
    """
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg).to_dict()
    if pretrained_cfg is None or isinstance(pretrained_cfg, str):
        distillation = kwargs.get("distillation")
        cfg.update(_arch_cfg(arch if distillation is None else arch.replace(distillation=distillation)))
    resolved = resolve_pretrained_cfg(variant, cfg, overlay).to_dict()
    if pretrained and not any(resolved.get(k) for k in _WEIGHT_SOURCES):
        raise ValueError(f"{variant} has no downloadable weights; pass "
                         "pretrained_cfg_overlay=dict(file='path/to/checkpoint.pth') to load a local checkpoint")
    return build_model_with_cfg(
        SwiftFormer, variant, pretrained, arch=arch, pretrained_cfg=cfg, pretrained_cfg_overlay=overlay,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(len(arch.stages)))),
        **kwargs,
    )


def _register_variant(name: str) -> None:
    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _create_swiftformer(f"swiftnas_{name}", VARIANTS[name], pretrained, **kwargs)
    entry.__name__ = entry.__qualname__ = f"swiftnas_{name}"
    entry.__doc__ = f"SwiftFormer-{name.upper()} exactly as released (ICCV 2023), official state_dict naming."
    entry.__module__ = __name__
    register_model(entry)


for _name in VARIANTS:
    _register_variant(_name)


@register_model
def swiftnas_arch(pretrained: bool = False, arch: SwiftFormerArch | Mapping[str, Any] | str | None = None,
                  **kwargs: Any) -> nn.Module:
    """Any architecture of the design space: ``arch`` is a SwiftFormerArch, its dict, its JSON, or a JSON path.

    Without ``arch`` it builds SwiftFormer-XS (``DEFAULT_ARCH``), so that tools which build every model of
    ``timm.list_models()`` can build this one too.
    """
    return _create_swiftformer("swiftnas_arch", VARIANTS[DEFAULT_ARCH] if arch is None else as_arch(arch),
                               pretrained, **kwargs)
