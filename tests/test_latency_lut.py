import pytest

from nas.latency import load_device, profile_model
from nas.latency.lut import LatencyTable, TableMissError, build_table
from search_spaces import load_space, space_from_dict
from swiftformer import VARIANTS, SwiftFormer


@pytest.fixture(scope="module")
def iphone14():
    return load_device("iphone14")


@pytest.mark.parametrize("device", ["iphone14", "iphone12"])  # MACs alone; every term
def test_table_agrees_with_the_whole_model_predictor_on_random_architectures(device, tmp_path):
    predictor = load_device(device)
    space = space_from_dict({"name": "small", "resolution": [160, 224], "stages": [
        {"depth": [1, 2], "width": [24, 32], "mlp_ratio": [2, 4], "attention": "mask"},
        {"depth": [1, 3], "width": [48, 64], "attention": "last", "attn_blocks": [0, 1, 2]},
        {"depth": [2], "width": [96, 100], "mlp_ratio": [3]}]})
    table = build_table(space, predictor)
    table.save(tmp_path / "t.json")
    table = LatencyTable.load(tmp_path / "t.json")
    for arch in space.samples(12, seed=3):
        whole = predictor.predict(profile_model(SwiftFormer(arch), (1, 3, arch.resolution, arch.resolution)),
                                  "swiftformer")  # a space's architectures are priced by their family's own line
        assert abs(table.predict(arch) - whole) <= 0.05 * whole, arch.summary()


@pytest.mark.slow
def test_default_space_table(iphone14):
    space = load_space("swiftformer")
    table = build_table(space, iphone14)
    for arch in [*VARIANTS.values(), *space.samples(4, seed=11)]:
        whole = iphone14.predict(profile_model(SwiftFormer(arch), (1, 3, 224, 224)), "swiftformer")
        assert abs(table.predict(arch) - whole) <= 0.05 * whole


def test_parts_outside_the_table_are_a_clear_error(iphone14, tmp_path):
    space = space_from_dict({"name": "one", "stages": [{"depth": [1], "width": [16]}]})
    table = build_table(space, iphone14)
    with pytest.raises(TableMissError, match="has no entry for"):
        table.predict(VARIANTS["xs"].replace(resolution=64))
    (tmp_path / "t.json").write_text('{"device": "x", "entries": [[1')
    with pytest.raises(ValueError):  # a truncated file is refused, never half-read (the search rebuilds it)
        LatencyTable.load(tmp_path / "t.json")
