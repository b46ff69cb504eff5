"""The device's RandomResizedCrop against torchvision's: the draws' distributions, the resized pixels, the speed.

    .venv/bin/python experiments/bench_crops.py [--draws 100000]

- Draws: ``--draws`` crops of ``nas.engine.augment.resized_crop_boxes`` (batched) and as many of torchvision's
  ``RandomResizedCrop.get_params`` (one at a time), per image size and smallest area: quantiles of the area
  fraction and of the aspect (width / height), the two-sample Kolmogorov-Smirnov distance and p-value of each
  against torchvision's, and the same for the clipped draw used before 2026-12-07 (with the share of its draws
  that torchvision would have drawn again: a box that did not fit the image).
- Pixels: the largest difference between ``crop_resample`` and ``torchvision.transforms.v2.functional
  .resized_crop(antialias=True)`` on random float64 images, per interpolation, shrinking and enlarging.
- Speed: one training batch resized on this machine's CPU by the new batched products and by the clipped draw's
  ``grid_sample``, median of 20 (a ratio measured side by side in one run).

``retrain`` (a separate command): ``nas retrain`` with torchvision's draw but each crop resampled by the clipped
draw's ``grid_sample`` (no antialiasing, Keys' a = -0.75, reflection at the edges), to tell which of the two
changes moves a retraining's accuracy:

    .venv/bin/python experiments/bench_crops.py retrain swiftformer:xs --data ... --out DIR --seed 0 ...

Record the output, command, machine and date in experiments/RESULTS.md.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from nas.engine.augment import Augmentation, _crop_resize, crop_resample, resized_crop_boxes

RATIO = (3 / 4, 4 / 3)
SETTINGS = [((32, 32), 0.08), ((32, 32), 0.35), ((224, 224), 0.08), ((224, 224), 0.35), ((375, 500), 0.08)]


def draws(n: int) -> None:
    print(f"\n### {n:,} draws each: ours (batched) and torchvision's `get_params`, and the clipped draw\n")
    print("| image | scale | area q10 / q50 / q90: torchvision | ours | KS D (p) | clipped: KS D (p) | "
          "aspect q10 / q50 / q90: torchvision | ours | KS D (p) | clipped: KS D (p) | clipped draws reshaped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (height, width), smin in SETTINGS:
        torch.manual_seed(1)
        image = torch.zeros(1, height, width)
        theirs = np.array([v2.RandomResizedCrop.get_params(image, [smin, 1.0], list(RATIO)) for _ in range(n)])
        ours = resized_crop_boxes(n, (height, width), (smin, 1.0), RATIO, torch.Generator().manual_seed(2)).numpy()
        box = Augmentation(crop="resized-clipped", scale=(smin, 1.0)).draw(n, torch.Generator().manual_seed(3))["box"]
        # the clipped draw's box before clipping: did it fit?
        generator = torch.Generator().manual_seed(3)
        torch.rand(n, generator=generator)  # (its flips come first)
        area = torch.empty(n).uniform_(smin, 1.0, generator=generator)
        ratio = torch.empty(n).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator).exp()
        reshaped = float((((area * ratio).sqrt() > 1) | ((area / ratio).sqrt() > 1)).float().mean())
        box = box.numpy()
        cells = []
        for name, t, o, c in (("area", theirs[:, 2] * theirs[:, 3] / (height * width),
                               ours[:, 2] * ours[:, 3] / (height * width), box[:, 2] * box[:, 3]),
                              ("aspect", theirs[:, 3] / theirs[:, 2], ours[:, 3] / ours[:, 2],
                               (box[:, 2] * width) / (box[:, 3] * height))):
            q = lambda a: " / ".join(f"{v:.3f}" for v in np.quantile(a, [0.1, 0.5, 0.9]))  # noqa: E731
            ks, kc = ks_2samp(t, o), ks_2samp(t, c)
            cells += [q(t), q(o), f"{ks.statistic:.4f} ({ks.pvalue:.2f})", f"{kc.statistic:.4f} ({kc.pvalue:.1g})"]
        print(f"| {height}x{width} | {smin:g} | " + " | ".join(cells) + f" | {reshaped:.1%} |")


def pixels() -> None:
    print("\n### Pixels: largest |ours - torchvision's resized_crop(antialias=True)|, float64\n")
    print("| interpolation | shrinking (40x52 crops -> 24) | enlarging (-> 64) |\n|---|---|---|")
    x = torch.rand(6, 3, 40, 52, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    crops = torch.tensor([[0, 0, 40, 52], [3, 5, 20, 17], [10, 2, 7, 9], [1, 1, 39, 30], [5, 8, 33, 44],
                          [0, 0, 4, 4]])
    flip = torch.zeros(6, dtype=torch.bool)
    for mode in ("bilinear", "bicubic", "nearest"):
        cells = []
        for side in (24, 64):
            ours = crop_resample(x, crops, flip, side, mode)
            theirs = torch.stack([TF.resized_crop(x[k], *crops[k].tolist(), [side, side],
                                                  interpolation=InterpolationMode(mode), antialias=True)
                                  for k in range(len(x))])
            theirs = theirs.clamp(0, 1) if mode == "bicubic" else theirs
            cells.append(f"{(ours - theirs).abs().max().item():.1e}")
        print(f"| {mode} | " + " | ".join(cells) + " |")


def speed() -> None:
    print(f"\n### Speed: one batch on this CPU ({torch.get_num_threads()} threads), median of 20\n")
    print("| batch | ours (batched products) ms | clipped draw (grid_sample) ms | ratio |\n|---|---|---|---|")
    for b, size, side in ((128, 32, 56), (128, 32, 32), (32, 224, 224)):
        x = torch.rand(b, 3, size, size)
        new = Augmentation(crop="resized", interpolation="bicubic").draw(b, torch.Generator().manual_seed(0),
                                                                          (size, size))
        old = Augmentation(crop="resized-clipped", interpolation="bicubic").draw(b, torch.Generator().manual_seed(0))
        times = {}
        for name, run in (("new", lambda: crop_resample(x, new["crop"], new["flip"], side, "bicubic")),
                          ("old", lambda: _crop_resize(x, old["box"], old["flip"], side, "bicubic"))):
            run()
            samples = []
            for _ in range(20):
                start = time.perf_counter()
                run()
                samples.append(time.perf_counter() - start)
            times[name] = statistics.median(samples) * 1e3
        print(f"| {b} x 3 x {size} px -> {side} px | {times['new']:.2f} | {times['old']:.2f} | "
              f"{times['new'] / times['old']:.2f} |")


def retrain_with_grid_sample(argv: list[str]) -> None:
    """``nas retrain ARGV`` with torchvision's crop draw resampled by ``grid_sample`` (the clipped draw's filter)."""
    import nas.engine.augment as augment
    from nas.cli import main as nas_main

    def grid_sample_resample(x, crop, flip, side, mode):
        height, width = x.shape[-2:]
        crop = crop.to(x.device, x.dtype)
        box = torch.stack([(crop[:, 1] + crop[:, 3] / 2) / width, (crop[:, 0] + crop[:, 2] / 2) / height,
                           crop[:, 3] / width, crop[:, 2] / height], dim=1)
        return _crop_resize(x, box, flip, side, mode)

    augment.crop_resample = grid_sample_resample
    nas_main(["retrain", *argv])


def main() -> None:
    import sys

    if sys.argv[1:2] == ["retrain"]:
        retrain_with_grid_sample(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=100_000)
    args = parser.parse_args()
    print(f"# {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    draws(args.draws)
    pixels()
    speed()


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
