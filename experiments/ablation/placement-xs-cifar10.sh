#!/usr/bin/env bash
# Attention placement in SwiftFormer-XS on CIFAR-10, fidelity benchmark's reference protocol, 3 paired seeds:
# 16 distinct variants x 3 seeds = 48 trainings (3.6-5 min each on 2 threads, measured: about 3.5 h). Resumable: run the
# same script again after a kill and only unfinished runs train. Extra arguments go to `nas ablate`
# (e.g. --timeout 3h, --workers 2 --threads 1, --train-device cuda).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m nas ablate placement --base swiftformer:xs \
    --data cifar10:../shared/datasets/cifar10-jpeg.tar.gz --seeds 3 --protocol reference \
    --out experiments/ablation/placement-xs-cifar10-reference "$@"
