#!/usr/bin/env bash
# Attention kind at XS's attention positions on CIFAR-10, reference protocol, 3 paired seeds: additive attention
# (as released), multi-head self-attention where this version's BLOCK_TYPES has `mhsa`, and a conv encoder.
# 3 variants x 3 seeds; "attn" (as released) and "conv" (no attention) are runs of the placement ablation too,
# copied from it with --reuse where it has finished them, so only mhsa trains (3 runs; an estimated 15 min on 2 cores).
# Resumable like placement-xs-cifar10.sh; extra arguments go to `nas ablate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m nas ablate type --base swiftformer:xs \
    --data cifar10:../shared/datasets/cifar10-jpeg.tar.gz --seeds 3 --protocol reference \
    --out experiments/ablation/type-xs-cifar10-reference \
    --reuse experiments/ablation/placement-xs-cifar10-reference "$@"
