#!/usr/bin/env bash
# Attention kind at XS's attention positions on CIFAR-10, reference protocol, 7 paired seeds: additive attention
# (as released), multi-head self-attention where this version's BLOCK_TYPES has `mhsa`, and a conv encoder.
# 3 variants x 7 seeds. Why 7: the differences the placement ablation found are small (under 0.02), and 7 pairs is
# the fewest at which an exact sign-flip test, Holm-corrected over the two comparisons, can reach p < 0.05
# (2/2^7 x 2 = 0.031; at 3 seeds it cannot go below 0.25). "attn" (as released) and "conv" (no attention) are runs
# of the placement ablation too: its seeds 0-2 are copied from it with --reuse, so 7 mhsa runs and 4 each of attn
# and conv train (15 runs, about 4.5-5.5 min each on 2 threads: about 75 min).
# Resumable like placement-xs-cifar10.sh; extra arguments go to `nas ablate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m nas ablate type --base swiftformer:xs \
    --data cifar10:../shared/datasets/cifar10-jpeg.tar.gz --seeds 7 --protocol reference \
    --out experiments/ablation/type-xs-cifar10-reference \
    --reuse experiments/ablation/placement-xs-cifar10-reference "$@"
