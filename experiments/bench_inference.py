"""CPU inference: our SwiftFormer-XS (unfused and fused) against timm's ``swiftformer_xs`` with the same weights.

Run by hand (not a test); record the printed table in experiments/RESULTS.md:

    .venv/bin/python experiments/bench_inference.py --batch 1 32

Timing on a shared VM drifts by several percent over a minute, so the models are timed in interleaved rounds
(each round times every model once, in rotating order) and the ratios are taken per round, then the median.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import swiftformer  # noqa: F401  (registers models, fixes torchvision before timm)
import timm
import torch
from timm.models.swiftformer import checkpoint_filter_fn as timm_filter

from swiftformer import create_model, fuse
from swiftformer.testing import perturb_weights


def time_once(model: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        model(x)
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()

    ours = create_model("xs").eval()
    perturb_weights(ours)
    theirs = timm.create_model("swiftformer_xs").eval()
    theirs.load_state_dict(timm_filter(ours.state_dict(), theirs), strict=True)
    fused = fuse(ours)
    models = {"timm swiftformer_xs": theirs, "ours": ours, "ours fused": fused}

    print(f"# torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}")
    print("| batch | model | median ms/batch | ratio to timm (median of rounds) |")
    print("|---|---|---|---|")
    with torch.inference_mode():
        for batch in args.batch:
            x = torch.randn(batch, 3, args.resolution, args.resolution)
            reference = theirs(x)
            for name, model in models.items():
                diff = (model(x) - reference).abs().max().item()
                assert diff < 1e-4, f"{name} differs from timm by {diff}"
            iters = max(1, round(0.3 / time_once(theirs, x, 1)))  # ~0.3 s per model per round
            times = {name: [] for name in models}
            names = list(models)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    times[name].append(time_once(models[name], x, iters))
            base = times["timm swiftformer_xs"]
            for name in names:
                ratio = statistics.median(t / b for t, b in zip(times[name], base))
                print(f"| {batch} | {name} | {1000 * statistics.median(times[name]):.2f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
