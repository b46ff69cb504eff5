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


@pytest.fixture(scope="session")
def tiny_imagefolder(tmp_path_factory):
    """A 3-class ImageFolder of 16x16 images whose class is their dominant colour (learnable in one epoch)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 12)):
        for label, cls in enumerate(("red", "green", "blue")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 90, size=(16, 16, 3), dtype=np.uint8)
                pixels[..., label] += 160
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


TINY_SPACE = """
name: tiny
resolution: [64]
stages:
  - {depth: [1, 2], width: [8, 16], mlp_ratio: [2], attention: last, attn_blocks: [0, 1]}
  - {depth: [1, 2], width: [16, 24, 32], mlp_ratio: [2, 4], attention: last, attn_blocks: [0, 1]}
"""


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="session")
def priced(tmp_path_factory):
    """A folder holding the default space's latency table for the default data, priced once per session: the
    distributed-search tests copy it into each run's --out instead of pricing the space again."""
    from nas.search import SearchConfig
    from nas.search.context import build_context

    folder = tmp_path_factory.mktemp("priced")
    build_context(SearchConfig(budget_ms=1.0, out=str(folder)), quiet=True)
    return folder


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for every test that needs one (each test creates its own database)."""
    from swiftnas_testing.postgres_server import ThrowawayPostgres, why_unavailable

    if why_unavailable():
        pytest.skip(why_unavailable())
    server = ThrowawayPostgres().start()
    yield server
    server.remove()



@pytest.fixture(scope="session", autouse=True)
def command_output():
    """The messages a command shows (``nas.console.configure``), for the tests that call jobs directly and read
    their stderr; importing nas sets up nothing itself (``tests/test_python_api.py`` checks that, in a process of
    its own)."""
    from nas.console import configure

    configure()
