"""BatchNorm re-estimation ("precise BN"), the one routine the proxy, the supernet's scorer and its calibration use.

After a few hundred steps the running averages lag far behind the weights (on Fashion-MNIST they put XS at 0.19
after one epoch against 0.75 with re-estimated statistics), and a supernet's running statistics are a blur over
every subnet trained through them; so statistics are reset and re-estimated as the plain mean over a fixed set of
batches before scoring.

This is ``torch.optim.swa_utils.update_bn``'s cumulative average, computed the way it is without its host sync:
``update_bn`` sets ``momentum=None``, which makes every BatchNorm read its ``num_batches_tracked`` counter back to
the host (``1 / float(n)``) on every batch, one sync per layer per batch. Setting the momentum of batch ``k`` to
the Python float ``1 / (k + 1)`` is the same arithmetic (the same factor, the same update) with no read-back.
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor],
                  autocast: contextlib.AbstractContextManager | None = None) -> None:
    """Reset every BatchNorm's running statistics of ``model`` and set them to the mean over ``batches``.

    ``autocast`` is the context the forward passes run in (a ``Policy.autocast()``; None: float32). The model is
    left in eval mode, its BatchNorm momenta as they were."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    try:
        for k, batch in enumerate(batches):
            for m in norms:
                m.momentum = 1.0 / (k + 1)
            with autocast or contextlib.nullcontext():
                model(batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
