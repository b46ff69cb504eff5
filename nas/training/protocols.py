"""Named training protocols and the one way a job trains an architecture under one with a seed.

The fidelity benchmark and ablations both train an architecture per trial under a fixed protocol and a seed, and
read val (what they select on) and, for a protocol that reads it, test. Keeping that here gives the two jobs one
recipe: an ablation under ``REFERENCE`` is trained with the benchmark reference's settings. Their pixels differ:
the benchmark decodes CIFAR-10 at its native 32 px (one decode serves every protocol's side) and resizes in torch,
an ablation decodes at its training side (56 px) with PIL, so the same seed follows another trajectory (the two
figures of XS are in experiments/RESULTS.md, "Figures that lived in docstrings"). Comparisons stay paired within
each job.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .proxy import ProxyConfig, ProxyTask

if TYPE_CHECKING:
    from search_spaces import Space


@dataclass(frozen=True)
class Protocol:
    name: str
    config: ProxyConfig
    reads_test: bool = False  # only the reference protocol's final evaluation reads the test split

    def with_seed(self, seed: int) -> "Protocol":
        return dataclasses.replace(self, config=dataclasses.replace(self.config, seed=seed))


# The reference protocol: every train image (the source's training split minus the val hold-out), 2 epochs, at
# 1/4 of the architecture's resolution (224 -> 56 px: stage 3 sees 4x4 tokens, stage 4 2x2).
REFERENCE = Protocol("reference", ProxyConfig(epochs=2, downscale=4.0, subset=None, val_subset=None), reads_test=True)

# Fidelity benchmark version 2's candidate references (issue 26's pilot picks one by seed-to-seed agreement). Each
# trains at 56 px or more (stage 3 sees at least 4x4 tokens, stage 4 at least 2x2) on all 45,000 train images (or
# the subset its name says) and scores all 5,000 val images; ``crop``: random resized crops and flips. They are
# named here, below the jobs, so the pilot and ``nas ablate --protocol NAME`` train them alike.
CANDIDATES = {
    "56px-10ep-flip": ProxyConfig(epochs=10, downscale=4.0, subset=None, val_subset=None),
    "56px-10ep-crop": ProxyConfig(epochs=10, downscale=4.0, subset=None, val_subset=None, augment="crop"),
    "56px-20ep-crop": ProxyConfig(epochs=20, downscale=4.0, subset=None, val_subset=None, augment="crop"),
    "112px-10ep-crop": ProxyConfig(epochs=10, downscale=2.0, subset=None, val_subset=None, augment="crop"),
    # (drawn clipped, as its pilot pairs recorded before crops were drawn as torchvision draws: it finishes as begun)
    "cpu-56px-4ep-10k-crop": ProxyConfig(epochs=4, downscale=4.0, subset=10000, val_subset=None, augment="crop",
                                         crop_draw="clipped"),
}


def named_protocol(name: str) -> Protocol:
    """``reference`` or a version-2 candidate by name, reading test once per run (for final figures)."""
    if name == REFERENCE.name:
        return REFERENCE
    if name not in CANDIDATES:
        raise ValueError(f"unknown protocol {name!r}; accepted: proxy, reference, {', '.join(CANDIDATES)}")
    return Protocol(name, CANDIDATES[name], reads_test=True)


@dataclass(frozen=True)
class Evaluation:
    """One training's scores: val accuracy (what jobs select on) and test accuracy where the protocol reads it."""

    val_accuracy: float
    test_accuracy: float | None
    seconds: float  # wall time of the training and its evaluations
    cpu_seconds: float
    resolution: int  # the side it was trained at
    loss_sum: float = float("nan")  # the sum over epochs of each epoch's mean training loss (a cheap score itself)
    final_loss: float = float("nan")  # the last epoch's mean training loss


def train_and_evaluate(task: ProxyTask, arch: Any, reads_test: bool,
                       report: Callable[[int, float], None] | None = None, space: "Space | None" = None) -> Evaluation:
    """Train ``arch`` (SwiftFormer's, or of ``space``) on ``task`` (whose config carries the seed); read test only
    when ``reads_test``."""
    result = task.train(arch, report, keep_model=reads_test, space=space)
    test = None
    if reads_test:
        # statistics as re-estimated for the last val evaluation (the same images): not again
        test = task.evaluate(result.model, "test", recalibrate=False, resolution=result.resolution)
    return Evaluation(result.accuracy, test, result.seconds, result.cpu_seconds, result.resolution, result.loss_sum,
                      result.final_loss)
