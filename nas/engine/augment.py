"""Batched augmentation on the training device, with every random parameter drawn per image in advance.

An epoch's parameters are drawn at once on the CPU from the epoch's generator (``Augmentation.draw``), one row per
position of the epoch's order, moved to the device once, and sliced per batch: so an image's augmentation is a
function of (seed, epoch, position) alone, whatever the batch size, the device or the trainings sharing it.

Each step is timm's transform of the same name done for a whole batch at once:

- ``crop="none"``: the whole image resized to the training side (bilinear, antialiased; the proxy protocols).
- ``crop="resized"``: torchvision's ``RandomResizedCrop``, drawn as it draws (area fraction uniform in ``scale``,
  aspect ratio log-uniform in ``ratio``, width and height rounded to pixels, up to ten tries for a crop that
  fits, then its centre-crop fallback; position uniform over the pixels), for a batch at once; then resized to
  the side as ``torchvision.transforms.v2.functional.resized_crop`` does (antialiased when it shrinks), by two
  batched matrix products with each image's resampling weights.
- ``crop="resized-clipped"``: the draw before 2026-12-07 (one try, a box that does not fit clipped to the image,
  resampled by ``grid_sample`` without antialiasing), kept so the runs recorded with it resume and reproduce.
- horizontal flip with probability ``hflip``;
- colour jitter: brightness, contrast and saturation factors uniform in [1 - j, 1 + j], applied in that order
  (torchvision applies them in a random order per image; hue is not jittered, as timm's float ``color_jitter``);
- normalisation, then random erasing (timm's ``RandomErasing``: probability ``re_prob``, area 2-33 %, aspect
  ratio log-uniform in [0.3, 3.3], filled with per-pixel normal noise in ``pixel`` mode, one erasure per image).

Mixup and CutMix stay timm's ``Mixup``, which takes the device batch as it is. RandAugment has no batched form:
a recipe with it trains from the streaming path (``nas.engine.batches.StreamingBatches``) and says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

CROPS = ("none", "resized", "resized-clipped")
RESIZED_CROPS = {"torchvision": "resized", "clipped": "resized-clipped"}  # a protocol's crop draw -> ``crop``
CROP_TRIES = 10  # torchvision's RandomResizedCrop: tries for a crop that fits before its fallback
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
RE_MODES = ("pixel", "rand", "const")


@dataclass(frozen=True)
class Augmentation:
    """What a training batch goes through on the device; part of a protocol's identity."""

    crop: str = "none"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.0
    re_prob: float = 0.0
    re_mode: str = "pixel"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"augmentation crop {self.crop!r} is not supported; accepted: {', '.join(CROPS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"augmentation interpolation {self.interpolation!r} is not supported on the device; "
                             f"accepted: {', '.join(INTERPOLATIONS)}")
        if self.re_mode not in RE_MODES:
            raise ValueError(f"random erasing mode {self.re_mode!r} is not supported; accepted: {', '.join(RE_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def draw(self, n: int, generator: torch.Generator, size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Parameters for ``n`` positions, on the CPU, for images of ``size`` (height, width: a crop is drawn in
        pixels). The flips come first, so a flip-only augmentation draws exactly what the proxy drew before the
        engine (its recorded runs stay reproducible)."""
        params = {"flip": torch.rand(n, generator=generator) < self.hflip}
        if self.crop == "resized":
            if size is None:
                raise ValueError("a random resized crop is drawn in pixels: give the images' (height, width)")
            params["crop"] = resized_crop_boxes(n, size, self.scale, self.ratio, generator)
        elif self.crop == "resized-clipped":
            area = torch.empty(n).uniform_(*self.scale, generator=generator)
            log_ratio = torch.empty(n).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]),
                                                generator=generator)
            ratio = log_ratio.exp()
            width = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the image's side
            height = (area / ratio).sqrt().clamp(max=1.0)
            u = torch.rand(n, 2, generator=generator)
            params["box"] = torch.stack([u[:, 0] * (1 - width) + width / 2, u[:, 1] * (1 - height) + height / 2,
                                         width, height], dim=1)  # centre x, centre y, width, height
        if self.color_jitter > 0:
            j = self.color_jitter
            params["jitter"] = torch.empty(n, 3).uniform_(max(0.0, 1 - j), 1 + j, generator=generator)
        if self.re_prob > 0:
            erase = torch.rand(n, generator=generator) < self.re_prob
            area = torch.empty(n).uniform_(0.02, 1 / 3, generator=generator)
            log_ratio = torch.empty(n).uniform_(math.log(0.3), math.log(1 / 0.3), generator=generator)
            height = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
            width = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
            u = torch.rand(n, 2, generator=generator)
            params["erase"] = torch.stack([erase.float(), u[:, 1] * (1 - height), u[:, 0] * (1 - width), height,
                                           width], dim=1)  # on?, top, left, height, width (fractions)
            params["erase_seed"] = torch.randint(0, 2**31 - 1, (n,), generator=generator)
        return params

    @property
    def cacheable(self) -> bool:
        """Whether every image's resized, normalised view is the same each epoch (no crop, no jitter): it can then
        be computed once and only the flips and erasing drawn per epoch (what the proxy protocols do)."""
        return self.crop == "none" and self.color_jitter == 0

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor], side: int, mean: torch.Tensor,
              std: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> normalised float (B, C, side, side), channels_last, on the images' device."""
        x = images.float().div_(255)
        if self.crop == "resized":
            x = crop_resample(x, params["crop"], params["flip"], side, self.interpolation)
        elif self.crop == "resized-clipped":
            x = _crop_resize(x, params["box"], params["flip"], side, self.interpolation)
        else:
            x = resize(x, side, self.interpolation)
        if "jitter" in params:
            x = _jitter(x, params["jitter"])
        return self.finish((x - mean) / std, params)

    def finish(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The steps after normalisation: the flip (unless the crop's grid mirrored already) and erasing."""
        if self.crop == "none":
            x = torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
        if "erase" in params:
            x = erase(x, params["erase"], params["erase_seed"], self.re_mode)
        return x.contiguous(memory_format=torch.channels_last)


def resize(x: torch.Tensor, side: int, interpolation: str = "bilinear", crop_pct: float = 1.0) -> torch.Tensor:
    """The evaluation view: the central ``crop_pct`` of each image (timm's resize to side / crop_pct, then centre
    crop), resized to ``side`` with antialiasing. The proxy's view is the whole image (``crop_pct`` 1)."""
    if crop_pct < 1:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * crop_pct)), max(1, round(w * crop_pct))
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[..., top: top + ch, left: left + cw]
    if x.shape[-1] != side or x.shape[-2] != side:
        if interpolation == "nearest":
            x = F.interpolate(x, size=(side, side), mode="nearest")
        else:
            x = F.interpolate(x, size=(side, side), mode=interpolation, antialias=True, align_corners=False)
    return x


def resized_crop_boxes(n: int, size: tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float],
                       generator: torch.Generator) -> torch.Tensor:
    """``n`` crops (top, left, height, width in pixels, int64) of an image of ``size`` as torchvision's
    ``RandomResizedCrop.get_params`` draws them, all tries of all crops at once: the first of ``CROP_TRIES`` tries
    whose rounded width and height fit; where none does, the centre crop of the image clamped to ``ratio``."""
    height, width = size
    area = torch.empty(n, CROP_TRIES, dtype=torch.float64).uniform_(*scale, generator=generator) * (height * width)
    log_ratio = torch.empty(n, CROP_TRIES, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    w = (area * log_ratio.exp()).sqrt().round()  # (round half to even, as Python's round)
    h = (area / log_ratio.exp()).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    w, h, any_fits = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1), fits.any(dim=1)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = (u[:, 0] * (height - h + 1)).floor().clamp(max=height - h)
    left = (u[:, 1] * (width - w + 1)).floor().clamp(max=width - w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    fallback = torch.tensor([(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w],
                            dtype=torch.float64)
    boxes = torch.stack([top, left, h, w], dim=1)
    return torch.where(any_fits.view(-1, 1), boxes, fallback).to(torch.int64)


def crop_resample(x: torch.Tensor, crop: torch.Tensor, flip: torch.Tensor, side: int, mode: str) -> torch.Tensor:
    """Each image's crop (top, left, height, width in pixels) resized to side x side as torchvision's
    ``resized_crop`` with ``antialias=True`` does (the separable filters of ``F.interpolate``'s antialiased
    modes; ``nearest`` as ``F.interpolate``'s), mirrored where ``flip``: the weights of every image's rows and
    columns as matrices, applied by two batched products."""
    b, _, height, width = x.shape
    crop = crop.to(x.device)
    rows = _resample_weights(crop[:, 0], crop[:, 2], height, side, mode).to(x.dtype)  # (B, side, H)
    cols = _resample_weights(crop[:, 1], crop[:, 3], width, side, mode).to(x.dtype)  # (B, side, W)
    cols = torch.where(flip.to(x.device).view(b, 1, 1), cols.flip(1), cols)
    out = torch.matmul(torch.matmul(rows.unsqueeze(1), x), cols.transpose(1, 2).unsqueeze(1))
    return out.clamp_(0, 1) if mode == "bicubic" else out


def _resample_weights(start: torch.Tensor, length: torch.Tensor, size: int, out: int, mode: str) -> torch.Tensor:
    """(B, out, size) weights resampling each image's span ``[start, start + length)`` of a side of ``size`` pixels
    to ``out`` pixels, as ``F.interpolate(..., align_corners=False)`` computes them for that span alone
    (antialiased for bilinear and bicubic: the filter widened by the scale when shrinking, PIL's)."""
    device = start.device
    length = length.to(torch.float64).view(-1, 1, 1)
    local = torch.arange(size, device=device, dtype=torch.float64).view(1, 1, -1) - start.view(-1, 1, 1)
    i = torch.arange(out, device=device, dtype=torch.float64).view(1, -1, 1)
    scale = length / out
    if mode == "nearest":
        source = (i.float() * scale.float()).floor().double().minimum(length - 1)  # (in float32, as the kernel)
        return (local == source).to(torch.float64)
    support = {"bilinear": 1.0, "bicubic": 2.0}[mode] * scale.clamp(min=1.0)
    center = scale * (i + 0.5)
    low = (center - support + 0.5).floor().clamp(min=0)
    high = (center + support + 0.5).floor().minimum(length)
    t = ((local - center + 0.5) / scale.clamp(min=1.0)).abs()
    if mode == "bilinear":
        weight = (1 - t).clamp(min=0)
    else:  # Keys' cubic with a = -0.5, as the antialiased kernel (and PIL)
        a = -0.5
        weight = torch.where(t < 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                             torch.where(t < 2, (((t - 5) * t + 8) * t - 4) * a, torch.zeros_like(t)))
    weight = weight * ((local >= low) & (local < high))
    total = weight.sum(dim=2, keepdim=True)
    return weight / torch.where(total == 0, torch.ones_like(total), total)


def _crop_resize(x: torch.Tensor, box: torch.Tensor, flip: torch.Tensor, side: int, mode: str) -> torch.Tensor:
    """Each image's box (centre x, centre y, width, height as fractions) resampled to side x side, mirrored where
    ``flip``: one affine grid and one ``grid_sample`` for the batch."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    sign = 1 - 2 * flip.to(x.dtype)
    theta[:, 0, 0] = box[:, 2] * sign
    theta[:, 0, 2] = box[:, 0] * 2 - 1
    theta[:, 1, 1] = box[:, 3]
    theta[:, 1, 2] = box[:, 1] * 2 - 1
    grid = F.affine_grid(theta, [b, x.shape[1], side, side], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out.clamp_(0, 1) if mode == "bicubic" else out


def _jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation (torchvision's formulas) with per-image factors (B, 3), on [0, 1] pixels."""
    b = factors.shape[0]
    x = (x * factors[:, 0].view(b, 1, 1, 1)).clamp_(0, 1)
    gray = _gray(x)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factors[:, 1].view(b, 1, 1, 1) + mean).clamp_(0, 1)
    gray = _gray(x)
    return ((x - gray) * factors[:, 2].view(b, 1, 1, 1) + gray).clamp_(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def erase(x: torch.Tensor, rect: torch.Tensor, seeds: torch.Tensor, mode: str,
          everywhere: bool | None = None) -> torch.Tensor:
    """Random erasing of one rectangle per image where ``rect[:, 0]`` is set; the fill is normal noise per pixel
    (``pixel``), per channel (``rand``) or zero (``const``), as timm's ``RandomErasing`` after normalisation.

    The noise of image ``i`` is a function of ``seeds[i]`` and the element's place alone (the same whatever else
    is in the batch). On a GPU it is computed for every element and selected (no host sync); on the CPU only for
    the erased elements (a quarter of the images, a third of their area at most), where finding them costs
    nothing (``everywhere`` chooses either way; the values are the same)."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1) / h
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w) / w
    top, left, height, width = (rect[:, i].view(b, 1, 1) for i in range(1, 5))
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    inside &= rect[:, 0].view(b, 1, 1).bool()
    inside = inside.unsqueeze(1).expand(b, c, h, w)
    if mode == "const":
        return x.masked_fill(inside, 0.0)
    per_pixel = mode == "pixel"
    seeds = seeds.to(x.device, torch.int64)
    if not (x.device.type != "cpu" if everywhere is None else everywhere):
        where = inside.nonzero(as_tuple=True)
        image, channel, row, col = where
        element = channel * (h * w) + row * w + col if per_pixel else channel
        out = x.clone()
        out[where] = _seeded_normal(seeds[image], element).to(x.dtype)
        return out
    element = torch.arange(c * h * w if per_pixel else c, device=x.device).view(1, -1)
    noise = _seeded_normal(seeds.view(b, 1), element).view(b, c, h if per_pixel else 1, w if per_pixel else 1)
    return torch.where(inside, noise.to(x.dtype).expand(b, c, h, w), x)


def _seeded_normal(seeds: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
    """Standard normal noise for (image seed, element index) pairs (broadcast together), computed on their device
    without a generator per image: a counter-based hash of the pair through Box-Muller."""
    state = seeds * 0x9E3779B1 + element * 2 + 1
    u1 = _hash_uniform(state)
    u2 = _hash_uniform(state + 0x632BE5AB)
    return (-2 * u1.log()).sqrt() * torch.cos(2 * math.pi * u2)


def _hash_uniform(state: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) from int64 counters: a 31-bit mixing hash (multiplications modulo 2**31 stay exact in
    int64)."""
    z = state & 0x7FFFFFFF
    z = ((z ^ (z >> 15)) * 0x2C1B3C6D) & 0x7FFFFFFF
    z = ((z ^ (z >> 12)) * 0x297A2D39) & 0x7FFFFFFF
    z = z ^ (z >> 15)
    return (z.double() + 0.5) / 2**31
