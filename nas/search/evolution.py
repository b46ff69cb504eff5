"""``--sampler evolution``: regularised evolution (Real et al., 2019) over the space's mutate and crossover.

The child of a tournament among the most recent trained architectures is enqueued into the study, so
``study.ask()`` proposes it and the study records its parent. Children are mutated until one fits the budget and
is not a known result (the latency table prices a child in microseconds), so rejections and re-proposals do not
eat the search. The generator is seeded with the study's trial count, which grows with every trial: a rejected or
duplicate proposal is never followed by the same child.
"""
from __future__ import annotations

import random

import optuna
from optuna.trial import TrialState

from swiftformer import SwiftFormerArch

from .context import SearchContext
from .study import KNOWN, status_of

POPULATION, TOURNAMENT, WARMUP, ATTEMPTS, CROSSOVER = 20, 5, 10, 200, 0.3


def enqueue_child(study: optuna.Study, ctx: SearchContext) -> bool:
    """Queue one child; False while fewer than ``WARMUP`` architectures are trained (the random sampler proposes
    those), when something is queued already, or when no new child within the budget was found."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False  # references and retries go first
    pool = [t for t in trials if status_of(t) in ("trained", "reference")]
    if len(pool) < WARMUP:
        return False
    known = {t.user_attrs.get("digest") for t in trials if status_of(t) in KNOWN or t.state == TrialState.RUNNING}
    rng = random.Random(f"{ctx.cfg.seed}:{len(trials)}")
    recent = pool[-POPULATION:]

    def tournament() -> optuna.trial.FrozenTrial:
        return max(rng.sample(recent, min(TOURNAMENT, len(recent))), key=lambda t: t.values[0])

    for _ in range(ATTEMPTS):
        parent = tournament()
        arch = SwiftFormerArch.from_dict(parent.user_attrs["arch"])
        if rng.random() < CROSSOVER:
            arch = ctx.space.crossover(arch, SwiftFormerArch.from_dict(tournament().user_attrs["arch"]), rng)
        child = ctx.space.mutate(arch, rng)
        if child.digest() in known or ctx.table.predict(child) > ctx.cfg.budget_ms:
            continue
        study.enqueue_trial(ctx.space.trial_params(child), user_attrs={"parent": parent.number})
        return True
    return False
