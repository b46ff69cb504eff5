"""Proxy-training throughput: images per second of the default proxy protocol on this machine's training device.

    .venv/bin/python experiments/bench_proxy.py [--train-device cuda] [--models xs s l1] [--downscale 4]

Synthetic images in memory (the data's content does not change the arithmetic); each model trains one epoch
of 4,000 images after a warm-up epoch, exactly as a search trial does (channels-last; AMP on CUDA).
"""
from __future__ import annotations

import argparse
import platform
import time

import swiftformer  # noqa: F401  (the torchvision fix precedes timm)
import numpy as np
import torch

from nas.data import ImageData
from nas.training import ProxyConfig, ProxyTask, resolve_train_device
from swiftformer import VARIANTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-device", default="auto")
    parser.add_argument("--models", nargs="+", default=["xs", "s", "l1"])
    parser.add_argument("--downscale", type=float, default=4.0)
    parser.add_argument("--images", type=int, default=4000)
    args = parser.parse_args()
    device = resolve_train_device(args.train_device)
    rng = np.random.default_rng(0)
    n = args.images + 1000
    data = ImageData("synthetic", rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n),
                     rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 10),
                     tuple(map(str, range(10))))
    config = ProxyConfig(epochs=1, downscale=args.downscale, subset=args.images)
    task = ProxyTask(data, config, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# {name}, {torch.get_num_threads()} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print("| model | input side | images/s (train epoch incl. val + BN re-estimation) |\n|---|---|---|")
    for model in args.models:
        arch = VARIANTS[model].replace(num_classes=10)
        task.train(arch)  # warm-up: kernels, caches, prepared tensors
        start = time.perf_counter()
        result = task.train(arch)
        seconds = time.perf_counter() - start
        print(f"| {model} | {result.resolution} | {args.images / seconds:.0f} |")


if __name__ == "__main__":
    main()
