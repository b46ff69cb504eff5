"""``--sampler evolution``: regularised evolution (Real et al., 2019) over the space's mutate and crossover; and
the way out for any sampler stuck on known architectures (``enqueue_unseen``).

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

from .context import SearchContext
from ..trials.study import KNOWN, status_of

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
        arch = ctx.space.arch_from_dict(parent.user_attrs["arch"])
        if rng.random() < CROSSOVER:
            arch = ctx.space.crossover(arch, ctx.space.arch_from_dict(tournament().user_attrs["arch"]), rng)
        child = ctx.space.mutate(arch, rng)
        if child.digest() in known or ctx.checked_ms(ctx.table.predict(child)) > ctx.cfg.budget_ms:
            continue
        study.enqueue_trial(ctx.space.trial_params(child), user_attrs={"parent": parent.number})
        return True
    return False


def enqueue_unseen(study: optuna.Study, ctx: SearchContext) -> bool:
    """Queue a uniformly random architecture the study has not seen that fits the budget (False when ``ATTEMPTS``
    draws found none). A sampler that keeps proposing known architectures (NSGA-II's population converges to
    copies of itself on a small discrete space) gets a new one instead of ending the search early."""
    trials = study.get_trials(deepcopy=False)
    known = {t.user_attrs.get("digest") for t in trials}
    rng = random.Random(f"unseen:{ctx.cfg.seed}:{len(trials)}")
    for _ in range(ATTEMPTS):
        arch = ctx.space.sample(rng)
        if arch.digest() in known or ctx.checked_ms(ctx.table.predict(arch)) > ctx.cfg.budget_ms:
            continue
        study.enqueue_trial(ctx.space.trial_params(arch), user_attrs={"origin": "unseen, after known proposals"})
        return True
    return False
