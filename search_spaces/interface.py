"""What the search, the latency tables and the scorers ask of a space: one interface, three spaces.

The SwiftFormer space (``space.SearchSpace``), NAS-Bench-201's cell space (``nb201``) and HW-NAS-Bench's FBNet space
(``fbnet``) all implement it, so a sampler, evolution's mutation and crossover, de-duplication, resumption, a
per-part latency table and a zero-cost scorer never need to know which one they are given.

An architecture is any value with ``digest()`` (the key a study de-duplicates on: for the tabular spaces the
benchmark's own string), ``summary()`` (one line for people) and ``to_dict()`` (what a trial records; the space's
``arch_from_dict`` reads it back).

Latency is priced per part: ``part_keys(arch)`` lists the parts an architecture is made of (repeated parts
repeated) and ``part_module(key)`` builds one part alone in its deployed form with the input shape it sees. A
predictor that is linear in the deployed graph's work prices the parts once and sums them: the same figure as the
whole network's, in microseconds per candidate.
"""
from __future__ import annotations

import random
from typing import Any, Hashable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from torch import nn

PartKey = tuple[Hashable, ...]


@runtime_checkable
class Architecture(Protocol):
    def digest(self) -> str: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Space(Protocol):
    """A search space as every job uses it (see the module docstring)."""

    name: str

    # ------------------------------------------------------------------ proposing architectures
    def suggest(self, trial: Any) -> Any:
        """Define-by-run: ask an Optuna trial for each decision, return the architecture."""

    def trial_params(self, arch: Any) -> dict[str, Any]:
        """The parameters ``suggest`` asks for that yield ``arch`` (for ``study.enqueue_trial``)."""

    def sample(self, rng: random.Random | int | None = None) -> Any:
        """A uniformly random architecture."""

    def samples(self, n: int, seed: int = 0) -> Iterator[Any]: ...

    def mutate(self, arch: Any, rng: random.Random | int | None = None, n: int = 1) -> Any:
        """``arch`` with ``n`` decisions redrawn, each to another value."""

    def crossover(self, a: Any, b: Any, rng: random.Random | int | None = None) -> Any: ...

    def __contains__(self, arch: object) -> bool: ...

    def size(self) -> int: ...

    def encode(self, arch: Any) -> list[float]:
        """A fixed-length numeric vector (for surrogate models and predictors)."""

    # ------------------------------------------------------------------ records
    def arch_from_dict(self, data: Mapping[str, Any]) -> Any:
        """The architecture ``arch.to_dict()`` recorded."""

    def for_task(self, num_classes: int, in_chans: int) -> "Space":
        """The space whose networks classify ``num_classes`` classes of ``in_chans``-channel images."""

    # ------------------------------------------------------------------ networks, parts and counts
    def build_model(self, arch: Any) -> nn.Module:
        """The network, randomly initialised, in training form."""

    def input_shape(self, arch: Any) -> tuple[int, int, int, int]:
        """Batch-1 input shape the network is deployed and priced at."""

    def part_keys(self, arch: Any) -> list[PartKey]:
        """The parts ``arch`` is made of, in network order; a part used twice is listed twice."""

    def part_module(self, key: PartKey) -> tuple[nn.Module, tuple[int, ...]]:
        """One part alone, in deployed (eval) form, and the input shape it receives."""

    def every_part_key(self) -> list[PartKey]:
        """Every part an architecture of the space can need (what a latency table prices)."""

    def counts(self, arch: Any) -> dict[str, int]:
        """``params`` and ``macs`` (conv and linear multiply-accumulates per image)."""

    # ------------------------------------------------------------------ description
    def describe(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


def resolve_rng(rng: random.Random | int | None) -> random.Random:
    """A seeded ``random.Random`` from a generator, a seed, or None (fresh)."""
    return rng if isinstance(rng, random.Random) else random.Random(rng)


def options_text(options: Sequence[Any]) -> str:
    return ", ".join(map(str, options))
