import json

import pytest

from swiftformer import VARIANTS, ArchitectureError, Block, Stage, SwiftFormerArch, as_arch, variant


def test_variants_are_the_official_layouts():
    xs = VARIANTS["xs"]
    assert xs.depths == (3, 3, 6, 4) and xs.widths == (48, 56, 112, 220) and xs.stem_width == 24
    assert [s.num_attn for s in xs.stages] == [1, 1, 1, 1]
    assert all(s.blocks[-1].type == "attn" for s in xs.stages)
    assert VARIANTS["l3"].stem_width == 32 and VARIANTS["l1"].depths == (4, 3, 10, 5)
    assert variant("SwiftFormer_L1") is VARIANTS["l1"]


def test_json_round_trip_and_hash(random_archs):
    for arch in [*VARIANTS.values(), *random_archs]:
        again = SwiftFormerArch.from_json(arch.to_json())
        assert again == arch and hash(again) == hash(arch) and again.digest() == arch.digest()
    assert len({*VARIANTS.values(), *VARIANTS.values()}) == 4


def test_save_load_and_as_arch(tmp_path):
    path = tmp_path / "a.json"
    VARIANTS["s"].save(path)
    assert as_arch(path) == as_arch(str(path)) == as_arch(path.read_text()) == VARIANTS["s"]
    assert as_arch(json.loads(path.read_text())) == VARIANTS["s"]


def test_shorthand_json_fills_defaults():
    arch = SwiftFormerArch.from_json('{"stages": [{"width": 16, "blocks": ["conv", {"type": "attn", "mlp_ratio": 2}]}]}')
    assert arch.stem_width == 8 and arch.downsample == () and arch.stages[0].blocks[1] == Block("attn", 2.0)
    assert arch.num_classes == 1000 and arch.distillation


@pytest.mark.parametrize("make, message", [
    (lambda: Stage(16, ()), "at least one block"),
    (lambda: Stage(0, (Block(),)), "positive integer"),
    (lambda: Stage(-4, (Block(),)), "positive integer"),
    (lambda: Block("mixer"), "'mixer' is unknown; accepted: conv, attn"),
    (lambda: Block("conv", 0), "mlp_ratio must be a positive number"),
    (lambda: SwiftFormerArch(8, ()), "at least one stage"),
    (lambda: SwiftFormerArch(0, (Stage(8, (Block(),)),)), "stem_width"),
    (lambda: SwiftFormerArch(8, (Stage(8, (Block(),)),) * 2, downsample=(True, False)), "downsample must list 1"),
    (lambda: SwiftFormerArch(8, (Stage(8, (Block(),)),), num_classes=-1), "num_classes"),
    (lambda: SwiftFormerArch.from_json("{not json"), "not valid JSON"),
    (lambda: SwiftFormerArch.from_json('{"stages": [], "depth": 3}'), "unknown field 'depth'"),
    (lambda: SwiftFormerArch.from_json('{"stages": []}'), "at least one stage"),
    (lambda: SwiftFormerArch.from_json('{"stages": [{"width": 8, "blocks": []}]}'), "stages[0]: a stage needs"),
    (lambda: SwiftFormerArch.from_json('{"stages": [{"width": 8, "blocks": ["mlp"]}]}'), "stages[0].blocks[0]"),
    (lambda: SwiftFormerArch.from_json('[1, 2]'), "must be a JSON object"),
    (lambda: SwiftFormerArch.standard([2], [16], attn_blocks=3), "attn_blocks 3"),
    (lambda: variant("xl"), "unknown SwiftFormer variant 'xl'"),
])
def test_invalid_descriptions_raise_clear_errors(make, message):
    with pytest.raises(ArchitectureError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ArchitectureError, match="cannot read architecture file"):
        SwiftFormerArch.load(tmp_path / "missing.json")


def test_summary_names_layout():
    assert VARIANTS["xs"].summary() == "s24-48:CCA-56:CCA-112:CCCCCA-220:CCCA"
    arch = SwiftFormerArch(8, (Stage(16, (Block("conv", 2),)), Stage(16, (Block("attn"),))), downsample=(False,),
                           resolution=96)
    assert arch.summary() == "s8-16:C2=16:A@96"
