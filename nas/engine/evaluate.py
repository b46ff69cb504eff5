"""The one evaluator: top-1, top-5 and mean cross-entropy over a split, in large batches, read back once.

Every count is accumulated on the device; the only transfer to the host is the final three numbers, so a GPU is
never made to wait per batch. ``batches`` is any iterable of (inputs, targets) on the device: a resident split
(``nas.engine.batches.eval_batches``) or a streaming loader's batches. Under ``torchrun`` the sums are added over
processes (each evaluates its shard) before the division.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from .policy import Policy


@dataclass(frozen=True)
class Scores:
    top1: float  # fractions, not per cent
    top5: float
    loss: float
    images: int

    def percent(self) -> dict[str, float]:
        """``top1``/``top5`` in per cent and ``loss``, as a retraining's log writes them."""
        return {"top1": 100 * self.top1, "top5": 100 * self.top5, "loss": self.loss}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], policy: Policy,
             distributed: bool = False) -> Scores:
    """Scores of ``model`` (put in eval mode, and left in the mode it was in) over every batch."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=policy.device)  # top-1 hits, top-5 hits, summed loss
    count = 0
    for inputs, targets in batches:
        with policy.autocast():
            logits = model(inputs)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(targets[:, None])
        sums += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(),
                             F.cross_entropy(logits, targets, reduction="sum")]).double()
        count += len(targets)  # known on the host: no transfer
    model.train(was_training)
    totals = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64).to(policy.device)])
    if distributed and torch_dist.is_initialized():
        torch_dist.all_reduce(totals)
    top1, top5, loss, count = totals.tolist()  # the one read-back
    count = max(count, 1.0)
    return Scores(top1 / count, top5 / count, loss / count, int(count))
