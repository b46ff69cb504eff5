import json
import random
from pathlib import Path

import pytest

import swiftformer  # noqa: F401  (the torchvision fix must precede timm)
from swiftformer import Block, Stage, SwiftFormerArch

# Measured on the official Amshaker/SwiftFormer code (see its "counting_method" entries): every state_dict key
# and shape, params and MACs of XS/S/L1/L3. A copy of the project's shared/specs/swiftformer_state_dict.json.
SPEC_JSON = Path(__file__).parent / "data" / "swiftformer_state_dict.json"


@pytest.fixture(scope="session")
def spec():
    return json.loads(SPEC_JSON.read_text())


def random_arch(rng: random.Random, max_stages: int = 4) -> SwiftFormerArch:
    """A small random architecture that exercises every option of the description."""
    n_stages = rng.randint(1, max_stages)
    stages = []
    for _ in range(n_stages):
        depth = rng.randint(1, 3)
        blocks = tuple(Block(rng.choice(("conv", "attn")), rng.choice((1.0, 2.0, 3.5, 4.0))) for _ in range(depth))
        stages.append(Stage(rng.choice((8, 12, 16, 24, 32)), blocks))
    return SwiftFormerArch(
        stem_width=rng.choice((4, 8, 12)), stages=tuple(stages),
        downsample=tuple(rng.random() < 0.7 for _ in range(n_stages - 1)),
        num_classes=rng.choice((0, 5, 10)), distillation=rng.random() < 0.5, in_chans=rng.choice((1, 3)),
        resolution=rng.choice((32, 48, 57, 64)))


@pytest.fixture
def random_archs():
    rng = random.Random(1234)
    return [random_arch(rng) for _ in range(12)]
