"""Paired statistics over seeds: what an ablation can and cannot conclude from n runs per variant.

Every variant is trained with the same seeds (initialisation, batch order, training subset), so a variant and
the base are compared seed by seed: the paired difference removes the share of the noise the seed puts on both.

- Intervals: each variant's mean gets a 95 % percentile bootstrap interval (descriptive); the paired difference,
  which every conclusion rests on, gets a 95 % Student-t interval. At 3-5 seeds the percentile bootstrap cannot
  leave the observed range and covers far less than it claims (``experiments/bench_interval_coverage.py``
  simulates both; its figures are in RESULTS.md): a flag read off it would call noise an effect.
- Test: an exact two-sided sign-flip permutation test of the paired differences (all 2^n sign patterns up to
  n = 16, 20,000 random ones beyond). Its smallest attainable p is 2 / 2^n: 0.25 with 3 seeds, 0.0625 with 5;
  no paired test of 3 or 5 seeds can reach 0.05, which is why the report also gives intervals and seeds needed.
  Wilcoxon's signed-rank test has the same floor at n = 3 and would add nothing.
- Holm's step-down correction across a report's variants (a local function: statsmodels is not a dependency).
- Do the variants differ at all: Friedman's rank test over the seeds every variant was trained with (seeds are
  the blocks, so it is paired like the rest). Holm guards each comparison with the base; this asks the question
  before them, and a large p says the table's spread of means is what seed noise alone would give.
- Inside seed noise: the t interval of the paired difference contains 0 (or fewer than 2 pairs).
- Planning (``seeds_needed``): the fewest pairs whose two-sided paired t-test at a = 0.05 reaches power 0.8
  against a difference d, from the noncentral t distribution (the normal formula n = ((z + z) sd / d)^2 promises
  0.8 and gives about 0.71 at n = 9); where the SD was itself estimated from few pairs it is taken at its 80 %
  upper confidence bound (chi-square with its degrees of freedom), so an SD estimated low does not shrink the
  plan; at least the n whose exact test can reach a at all (6).
- What a design can detect (``detectable``): the difference n pairs resolve at that power, from the paired SD. A
  design property, stated instead of "pairs that would resolve the observed difference" (post-hoc power from the
  observed difference says nothing the interval does not).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2, friedmanchisquare, nct, t

ALPHA = 0.05
POWER = 0.8
LEVEL = 0.95
BOOTSTRAP = 10_000
EXACT_UP_TO = 16


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) below 2 values (no spread to resample)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean; (nan, nan) below 2 values. Wider than the bootstrap's at 3-5 seeds (whose
    resamples cannot leave the observed range), so every paired difference of a handful of seeds uses it."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    half = t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def sign_flip_pvalue(differences: np.ndarray, resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of the mean paired difference under sign flips (exact up to ``EXACT_UP_TO`` pairs)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return math.nan
    observed = abs(d.mean())
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, len(d)))
    flipped = np.abs((signs * d).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12))


def smallest_p(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test of ``n`` pairs can give."""
    return 2.0 / 2 ** n if n else math.nan


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(indexed)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_t_power(n: int, difference: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test of ``n`` pairs at ``alpha`` against a true mean difference
    ``difference`` with paired SD ``sd`` (noncentral t)."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    critical = t.ppf(1 - alpha / 2, df)
    shift = abs(difference) * math.sqrt(n) / sd
    upper, lower = float(nct.sf(critical, df, shift)), float(nct.cdf(-critical, df, shift))
    # far in a tail scipy's series can give nan for what is 0 (the wrong side) or 1 (the right side, a huge shift)
    upper = (1.0 if shift > critical else 0.0) if math.isnan(upper) else upper
    return min(1.0, upper + (0.0 if math.isnan(lower) else lower))


def planning_sd(sd: float, sd_df: int | None, confidence: float = 0.8) -> float:
    """``sd``, or its one-sided ``confidence`` upper bound when it was estimated with ``sd_df`` degrees of freedom."""
    if not sd_df:
        return sd
    return sd * math.sqrt(sd_df / chi2.ppf(1 - confidence, sd_df))


def seeds_needed(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 sd_df: int | None = None, limit: int = 10_000) -> float:
    """Pairs a paired t-test needs to resolve ``difference`` at ``power`` against a paired SD of ``sd`` (taken at
    its 80 % upper bound when estimated with ``sd_df`` degrees of freedom); inf when the difference is 0 or more
    than ``limit`` pairs would be needed."""
    if math.isnan(difference) or math.isnan(sd):
        return math.nan
    floor = next(n for n in itertools.count(1) if smallest_p(n) <= alpha)
    if difference == 0:
        return math.inf
    sd = planning_sd(sd, sd_df)
    if sd == 0:
        return float(floor)
    n = max(2, floor)
    while paired_t_power(n, difference, sd, alpha) < power:
        n += 1
        if n > limit:
            return math.inf
    return float(n)


def detectable(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference ``n`` pairs with paired SD ``sd`` resolve at ``power`` (nan below 2 pairs)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while paired_t_power(n, high, sd, alpha) < power:
        high *= 2
    return float(brentq(lambda d: paired_t_power(n, d, sd, alpha) - power, 1e-12 * sd, high))


def paired(variant: dict[int, float], base: dict[int, float]) -> dict[str, float]:
    """Compare a variant with the base over the seeds both have: mean difference, its interval, p, noise flag,
    paired SD and the difference these pairs can detect at 80 % power."""
    seeds = sorted(set(variant) & set(base))
    d = np.array([variant[s] - base[s] for s in seeds])
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    low, high = t_interval(d)
    inside = n < 2 or low <= 0 <= high
    return {"pairs": n, "diff": mean, "diff_ci_low": low, "diff_ci_high": high, "diff_sd": sd,
            "p_value": sign_flip_pvalue(d), "t_p_value": paired_t_pvalue(d), "within_seed_noise": inside,
            "detectable": detectable(n, sd)}


def paired_t_pvalue(differences: np.ndarray) -> float:
    """Two-sided p of the paired t-test of ``differences`` (the test behind the t interval; nan below 2 pairs, 0
    or 1 when they do not vary)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(2 * t.sf(abs(d.mean()) / (sd / math.sqrt(len(d))), len(d) - 1))


def holm_decisions(rows: list[dict], alpha: float = ALPHA) -> None:
    """The one multiplicity rule of every report's words: Holm's adjustment of the paired t-tests of a table's
    comparisons (``t_p_value``), written to each row as ``t_p_holm``; a comparison is a decision (better or worse)
    when its adjusted p is below ``alpha``, so the table as a whole errs with probability at most ``alpha``."""
    adjusted = holm([float(r.get("t_p_value", math.nan)) for r in rows])
    for row, p in zip(rows, adjusted):
        row["t_p_holm"] = p
        row["decided"] = bool(p < alpha) if not math.isnan(p) else False


def omnibus(scores: dict[str, dict[int, float]]) -> dict[str, float]:
    """Friedman's test of "no variant differs" over the seeds all variants share: statistic, p, seeds and variants
    used (p is nan with fewer than 3 variants or 2 shared seeds, where the test is undefined)."""
    shared = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
    k, n = len(scores), len(shared)
    if k < 3 or n < 2:
        return {"statistic": math.nan, "p_value": math.nan, "seeds": n, "variants": k}
    table = np.array([[s[seed] for seed in shared] for s in scores.values()])
    if np.all(table == table[:1]):  # every seed ranks all variants equal: no evidence of a difference
        return {"statistic": 0.0, "p_value": 1.0, "seeds": n, "variants": k}
    result = friedmanchisquare(*table)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue), "seeds": n, "variants": k}
