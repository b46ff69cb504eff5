"""Spaces of fixed positions, each taking one of a few operations: NAS-Bench-201's 6 edges, FBNet's 22 layers.

Everything a search does with such a space is the same whatever the positions mean, so it lives here once:
define-by-run suggestion (one categorical parameter per position), uniform sampling, mutation (positions redrawn to
another operation), uniform crossover, size, one-hot codes, and the counts of a network summed over its parts. A
subclass says what the positions and operations are, how an architecture is written, and what its parts are.
"""
from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Any, Iterator, Mapping, Sequence

from torch import nn

from swiftformer.counting import measure_macs

from .interface import PartKey, resolve_rng
from .space import SpaceError


class PositionalArch(ABC):
    """An architecture as one operation per position (``ops``), in the space's position order."""

    ops: tuple[str, ...]

    @abstractmethod
    def digest(self) -> str: ...

    def summary(self) -> str:
        return self.digest()


class PositionalSpace(ABC):
    """A space of ``len(positions)`` decisions, position ``i`` taking one of ``choices[i]``."""

    name: str
    positions: tuple[str, ...]  # the Optuna parameter name of each position
    choices: tuple[tuple[str, ...], ...]  # the operations each position may take

    @abstractmethod
    def make(self, ops: Sequence[str]) -> PositionalArch:
        """The architecture of one operation per position (checked)."""

    @abstractmethod
    def arch_from_dict(self, data: Mapping[str, Any]) -> PositionalArch: ...

    @abstractmethod
    def part_keys(self, arch: PositionalArch) -> list[PartKey]: ...

    @abstractmethod
    def part_module(self, key: PartKey) -> tuple[nn.Module, tuple[int, ...]]: ...

    @abstractmethod
    def every_part_key(self) -> list[PartKey]: ...

    def check_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        """``ops`` as a tuple, or SpaceError naming the first position whose operation the space lacks."""
        ops = tuple(ops)
        if len(ops) != len(self.positions):
            raise SpaceError(f"space {self.name!r} has {len(self.positions)} positions, got {len(ops)} operations")
        for name, op, options in zip(self.positions, ops, self.choices):
            if op not in options:
                raise SpaceError(f"{name} = {op!r} is outside space {self.name!r} (choices: {', '.join(options)})")
        return ops

    # ------------------------------------------------------------------------------------------ proposing
    def suggest(self, trial: Any) -> PositionalArch:
        return self.make([options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))
                          for name, options in zip(self.positions, self.choices)])

    def trial_params(self, arch: PositionalArch) -> dict[str, Any]:
        return {name: op for name, op, options in zip(self.positions, arch.ops, self.choices) if len(options) > 1}

    def sample(self, rng: random.Random | int | None = None) -> PositionalArch:
        rng = resolve_rng(rng)
        return self.make([rng.choice(options) for options in self.choices])

    def samples(self, n: int, seed: int = 0) -> Iterator[PositionalArch]:
        rng = random.Random(seed)
        for _ in range(n):
            yield self.sample(rng)

    def mutate(self, arch: PositionalArch, rng: random.Random | int | None = None, n: int = 1) -> PositionalArch:
        rng = resolve_rng(rng)
        ops = list(arch.ops)
        mutable = [i for i, options in enumerate(self.choices) if len(options) > 1]
        for i in rng.sample(mutable, k=min(n, len(mutable))):
            ops[i] = rng.choice([o for o in self.choices[i] if o != ops[i]])
        return self.make(ops)

    def crossover(self, a: PositionalArch, b: PositionalArch,
                  rng: random.Random | int | None = None) -> PositionalArch:
        """Each position's operation from ``a`` or ``b`` with equal chance (uniform crossover)."""
        rng = resolve_rng(rng)
        return self.make([x if rng.random() < 0.5 else y for x, y in zip(a.ops, b.ops)])

    def __contains__(self, arch: object) -> bool:
        try:
            self.check_ops(getattr(arch, "ops"))
        except (SpaceError, AttributeError, TypeError):
            return False
        return type(arch) is type(self.sample(0))

    def size(self) -> int:
        return math.prod(len(options) for options in self.choices)

    def encode(self, arch: PositionalArch) -> list[float]:
        """One-hot codes of every position's operation, concatenated."""
        return [float(op == option) for op, options in zip(arch.ops, self.choices) for option in options]

    @property
    def encoding_size(self) -> int:
        return sum(len(options) for options in self.choices)

    # ------------------------------------------------------------------------------------------ counts
    def counts(self, arch: PositionalArch) -> dict[str, int]:
        """Parameters and MACs of the network, summed over its parts (each part counted once, then cached)."""
        total = {"params": 0, "macs": 0}
        for key in self.part_keys(arch):
            for name, value in self._part_counts(key).items():
                total[name] += value
        return total

    @lru_cache(maxsize=None)
    def _part_counts(self, key: PartKey) -> dict[str, int]:
        module, shape = self.part_module(key)
        return {"params": sum(p.numel() for p in module.parameters()), "macs": measure_macs(module, shape)}
