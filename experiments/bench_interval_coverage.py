"""How often the ablation report's two 95 % intervals of a mean cover the true mean at a few seeds: the percentile
bootstrap (each variant's mean, descriptive) and Student's t (the paired difference every conclusion rests on).

Normal data with mean 0, ``--draws`` data sets per seed count, through ``nas.ablation.stats``'s own functions. Run
by hand (not a test); record the output in experiments/RESULTS.md:

    PYTHONPATH=. .venv/bin/python experiments/bench_interval_coverage.py [--draws 400] [--seed 0]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from nas.ablation.stats import bootstrap_ci, t_interval


def coverage(n: int, draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """Shares of ``draws`` normal samples of size ``n`` whose bootstrap and t intervals contain the true mean."""
    boot = t = 0
    for _ in range(draws):
        x = rng.normal(0.0, 1.0, n)
        lo, hi = bootstrap_ci(x)
        boot += lo <= 0.0 <= hi
        lo, hi = t_interval(x)
        t += lo <= 0.0 <= hi
    return boot / draws, t / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {platform.node()} | {args.draws} draws, seed "
          f"{args.seed}")
    print("| seeds | percentile bootstrap covers | Student t covers |\n|---|---|---|")
    for n in (3, 5, 10):
        boot, t = coverage(n, args.draws, rng)
        print(f"| {n} | {boot:.1%} | {t:.1%} |")


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
