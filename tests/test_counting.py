import pytest

from swiftformer import VARIANTS, SwiftFormer, count_macs, count_params
from swiftformer.counting import iter_costs, measure_macs

NAMES = {"xs": "XS", "s": "S", "l1": "L1", "l3": "L3"}


@pytest.mark.parametrize("name", list(NAMES))
def test_counts_match_the_measured_official_counts(spec, name):
    reference = spec[NAMES[name]]
    arch = VARIANTS[name]
    assert count_params(arch) == reference["params"]
    assert count_macs(arch) == reference["macs"]
    no_dist = arch.replace(distillation=False)
    assert count_params(no_dist) == reference["no_distillation"]["params"]
    assert count_macs(no_dist) == reference["no_distillation"]["macs"]


def test_spec_breakdown_for_xs():
    parts = list(iter_costs(VARIANTS["xs"]))
    stage3 = sum(p.params for p in parts if p.name.startswith("stage3."))
    assert stage3 == 690_704 and parts[0].params == 11_232
    assert round(sum(p.macs for p in parts if p.name.startswith("stage1.")) / 1e6, 2) == 220.82


def test_closed_forms_agree_with_built_models_at_any_resolution(random_archs):
    for arch in random_archs:
        model = SwiftFormer(arch)
        assert count_params(arch) == sum(p.numel() for p in model.parameters()), arch.summary()
        for resolution in (arch.resolution, 37, (40, 72)):
            h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
            hooked = measure_macs(model, (1, arch.in_chans, h, w))
            assert count_macs(arch, resolution) == hooked, (arch.summary(), resolution)


def test_hook_counter_on_a_variant_at_another_resolution():
    model = SwiftFormer(VARIANTS["xs"])
    assert measure_macs(model, (1, 3, 256, 256)) == count_macs(VARIANTS["xs"], 256)
    assert count_macs(VARIANTS["xs"], 256) > count_macs(VARIANTS["xs"])
