"""Version 2's pilot: how well each candidate reference agrees with itself, and which to adopt.

A reference can only be trusted as far as a second seed of it ranks the architectures the same way: its
seed-to-seed Kendall tau is the ceiling of every scorer measured against it. For each candidate trained with two
seeds on the same architectures, this reports that tau with a bootstrap interval, the seed noise (SD of one run,
from the paired differences), the spread of the seed means across architectures, the share of the variance that
is seed noise, and the cost; then picks the cheapest candidate whose seed-to-seed tau is at least ``TARGET_TAU`` at
the *lower end* of its bootstrap interval, over at least ``MIN_PAIRS`` architectures (a point tau of 3 pairs says
next to nothing: its interval spans most of [-1, 1]), and whose stages 3 and 4 see at least 4x4 and 2x2 tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from swiftformer import VARIANTS
from swiftformer.counting import feature_sizes

from ..training.protocols import Protocol
from .benchmark import PILOT_PROTOCOLS
from .scoring import percentile_interval, tau_b

TARGET_TAU = 0.8
MIN_PAIRS = 10  # architectures with both seeds before a candidate's interval can decide anything
MIN_TOKENS = {3: 16, 4: 4}  # stage -> tokens it must see at the candidate's side (224 px architectures)


@dataclass(frozen=True)
class Candidate:
    protocol: str
    pairs: int  # architectures trained with both seeds
    tau: float
    tau_ci: tuple[float, float]
    seed_sd: float  # accuracy points: SD of one run, sqrt(var(seed 0 - seed 1) / 2)
    spread_sd: float  # accuracy points: SD of the seed means across architectures
    noise_share: float  # seed variance / (seed variance + variance of the architectures' true means)
    mean_val: float
    seconds: float  # mean wall seconds per training
    device: str
    tokens_ok: bool
    tau_v1: float = math.nan  # its seed mean against version 1's reference (seed 0) on the same architectures

    def row(self) -> dict:
        return {"protocol": self.protocol, "pairs": self.pairs,
                "tau (seed 1 vs 0)": f"{self.tau:.2f} [{self.tau_ci[0]:.2f}, {self.tau_ci[1]:.2f}]",
                "seed SD (pt)": self.seed_sd, "spread SD (pt)": self.spread_sd, "noise share": self.noise_share,
                "mean val": self.mean_val, "s / training": self.seconds, "device": self.device,
                "tokens ok": "yes" if self.tokens_ok else "no", "tau vs v1 reference": self.tau_v1}


def tokens_ok(protocol: Protocol, resolution: int = 224) -> bool:
    """Whether stages 3 and 4 of a ``resolution``-px architecture see ``MIN_TOKENS`` under ``protocol``."""
    side = protocol.config.resolution(resolution)
    _, sizes = feature_sizes(VARIANTS["xs"].replace(resolution=resolution), side)  # every variant downsamples alike
    return all(sizes[stage - 1][0] * sizes[stage - 1][1] >= tokens for stage, tokens in MIN_TOKENS.items())


def candidates(results: pd.DataFrame, n_boot: int = 2000, seed: int = 0,
               protocols: Mapping[str, Protocol] = PILOT_PROTOCOLS,
               version1: pd.Series | None = None) -> list[Candidate]:
    """One ``Candidate`` per protocol of ``results`` (the pilot's CSV as a frame) with at least 3 seed pairs;
    ``version1``: version 1's reference val accuracy by architecture name, to set each candidate beside."""
    out = []
    for protocol, rows in results.groupby("protocol"):
        if protocol not in protocols:
            raise ValueError(f"the pilot's results name protocol {protocol!r}, which is not a candidate; accepted: "
                             f"{', '.join(protocols)}")
        if "precision" in rows:  # a seed pair trained in two precisions is no pair (bf16 against fp32)
            mixed = rows.groupby("name")["precision"].nunique()
            rows = rows[~rows["name"].isin(mixed[mixed > 1].index)]
        wide = rows.pivot_table(index="name", columns="seed", values="val_accuracy")
        if 0 not in wide or 1 not in wide:
            continue
        wide = wide[[0, 1]].dropna()
        if len(wide) < 3:
            continue
        a, b = wide[0].to_numpy() * 100, wide[1].to_numpy() * 100
        rng = np.random.default_rng(seed)
        boot = [tau_b(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n_boot))]
        v1 = math.nan
        if version1 is not None:
            common = [n for n in wide.index if n in version1.index]
            if len(common) >= 3:
                v1 = tau_b(wide.loc[common].mean(axis=1).to_numpy(), version1[common].to_numpy())
        seed_var = float(np.var(a - b, ddof=1) / 2)
        means_var = float(np.var((a + b) / 2, ddof=1))
        true_var = max(means_var - seed_var / 2, 0.0)  # the mean of 2 seeds carries half a run's noise
        out.append(Candidate(str(protocol), len(wide), tau_b(a, b), percentile_interval(boot), math.sqrt(seed_var),
                             math.sqrt(means_var), seed_var / (seed_var + true_var) if seed_var + true_var else
                             math.nan, float((a.mean() + b.mean()) / 200), float(rows["seconds"].mean()),
                             ", ".join(sorted(set(rows["device"].astype(str)))), tokens_ok(protocols[protocol]),
                             v1))
    order = {name: i for i, name in enumerate(protocols)}
    return sorted(out, key=lambda c: order.get(c.protocol, len(order)))


def images_seen(protocol: Protocol, train_images: int = 45000) -> float:
    """The cost rank of a candidate: images seen times pixels per image."""
    config = protocol.config
    side = config.resolution(224)
    return config.epochs * (config.subset or train_images) * side * side


def choose(found: list[Candidate], protocols: Mapping[str, Protocol] = PILOT_PROTOCOLS
           ) -> tuple[Candidate | None, str]:
    """The cheapest candidate meeting the target, or None, with one sentence saying why."""
    eligible = [c for c in found if c.tokens_ok and c.pairs >= MIN_PAIRS and c.tau_ci[0] >= TARGET_TAU]
    if eligible:
        best = min(eligible, key=lambda c: images_seen(protocols[c.protocol]))
        return best, (f"{best.protocol} is the cheapest candidate whose seed-to-seed tau reaches {TARGET_TAU} at the "
                      f"lower end of its interval ({best.tau:.2f} [{best.tau_ci[0]:.2f}, {best.tau_ci[1]:.2f}] on "
                      f"{best.pairs} architectures)")
    if not found:
        return None, "no candidate has 3 architectures with both seeds yet"
    closest = max(found, key=lambda c: c.tau_ci[0])
    few = f"; {MIN_PAIRS} architectures are needed before an interval decides" if closest.pairs < MIN_PAIRS else ""
    return None, (f"no candidate reaches tau {TARGET_TAU} at the lower end of its interval yet; closest: "
                  f"{closest.protocol} at {closest.tau:.2f} [{closest.tau_ci[0]:.2f}, {closest.tau_ci[1]:.2f}] on "
                  f"{closest.pairs} architectures{few}")


def pilot_report(results: pd.DataFrame, n_boot: int = 2000,
                 protocols: Mapping[str, Protocol] = PILOT_PROTOCOLS, version1: pd.Series | None = None) -> str:
    found = candidates(results, n_boot, protocols=protocols, version1=version1)
    if not found:
        return "the pilot holds no candidate with 3 architectures trained with both seeds yet"
    table = pd.DataFrame([c.row() for c in found])
    _, verdict = choose(found, protocols)
    header = ("Pilot of fidelity benchmark version 2: each candidate reference trained with seeds 0 and 1 on the same "
              "architectures; Kendall tau-b of seed 1 against seed 0 on val (all 5,000 images) with a bootstrap 95 % "
              "interval over architectures; seed SD: one run's SD from the paired differences; spread SD: SD of the "
              "seed means across architectures; noise share: seed variance over seed plus architecture variance; "
              "tokens ok: stage 3 sees at least 4x4 tokens and stage 4 at least 2x2; tau vs v1 reference: the seed "
              "means against version 1's reference (seed 0, val) on the same architectures; s / training: wall "
              "seconds, as loaded as the machine was.")
    return header + "\n\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n\n" + verdict + "\n"
