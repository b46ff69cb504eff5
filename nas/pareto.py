"""The Pareto front of accuracy against latency, one rule for every job that reports one (a search's trials, an
ablation's variants)."""
from __future__ import annotations

import pandas as pd


def pareto_front(frame: pd.DataFrame, accuracy: str, latency: str) -> pd.DataFrame:
    """The rows of ``frame`` no other row is both as accurate and as fast as (and strictly better in one), fastest
    first; rows without an accuracy are not candidates."""
    done = frame.dropna(subset=[accuracy]).sort_values([latency, accuracy], ascending=[True, False])
    keep, best = [], -float("inf")
    for index, value in done[accuracy].items():
        if value > best:
            keep.append(index)
            best = value
    return done.loc[keep]
