"""The weight-sharing supernet: extraction equality, weight sharing rules, BN calibration, channel sorting.

Weights are perturbed (``swiftformer.testing.perturb_weights``) so that every tensor, BN statistics and layer
scales included, changes the outputs; at the initialisation a wrong slice of a BN or an attention weight could
still match to 1e-7.
"""
import dataclasses
import random

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

import swiftformer
from nas.supernet import BLOCK_KINDS, BNCalibration, SuperNet, SupernetError, calibrated
from search_spaces import SearchSpace, load_space
from swiftformer import Block, Stage, SwiftFormer, SwiftFormerArch
from swiftformer.counting import iter_costs
from swiftformer.export import export_onnx
from swiftformer.fusion import fuse
from swiftformer.testing import perturb_weights

# Small enough to run dozens of architectures in seconds, and exercising what a space can vary: resolution, stem
# width, non-integer MLP ratios, attention as "last k" and as any mask, one input channel, a 5-class task.
SMALL_SPACE = """
name: small
resolution: [32, 48]
stem_width: [4, 6, 8]
num_classes: 5
in_chans: 1
distillation: true
stages:
  - {depth: [1, 2], width: [8, 12], mlp_ratio: [1.5, 2], attention: last, attn_blocks: [0, 2]}
  - {depth: [1, 2, 3], width: [8, 16, 20], mlp_ratio: [2, 2.5, 4], attention: mask}
  - {depth: [2, 3], width: [16, 24], mlp_ratio: [2, 3], attention: last, attn_blocks: [0, 1]}
"""
DEFAULT_SPACE_INPUT = 64  # the default space's architectures run at 64 px here: the same weights, 12x cheaper
CALIBRATION = BNCalibration(images=32, batch_size=16, seed=0)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def small_space(tmp_path_factory):
    path = tmp_path_factory.mktemp("spaces") / "small.yaml"
    path.write_text(SMALL_SPACE)
    return load_space(path)


def _supernet(space: SearchSpace, seed: int = 0, **kwargs) -> SuperNet:
    torch.manual_seed(seed)
    return perturb_weights(SuperNet(space, **kwargs), seed=seed)


@pytest.fixture(scope="module")
def small_supernet(small_space):
    return _supernet(small_space)


@pytest.fixture(scope="module")
def default_space():
    return load_space("swiftformer")


@pytest.fixture(scope="module")
def default_supernet(default_space):
    return _supernet(default_space)


def _images(n: int, chans: int, side: int, seed: int) -> torch.Tensor:
    return torch.randn(n, chans, side, side, generator=torch.Generator().manual_seed(seed))


def _max_diff(a, b) -> float:
    if isinstance(a, tuple):
        return max(_max_diff(x, y) for x, y in zip(a, b, strict=True))
    return (a - b).abs().max().item()


@torch.no_grad()
def _assert_extraction_matches(supernet: SuperNet, arch: SwiftFormerArch, side: int) -> None:
    """Eval outputs of the supernet and of the extracted model, with the supernet's own statistics and after
    calibrating each on the same images."""
    x = _images(3, supernet.in_chans, side, seed=1)
    batches = CALIBRATION.batches(_images(40, supernet.in_chans, side, seed=2))
    supernet.eval()
    model = supernet.extract(arch)
    assert type(model) is SwiftFormer and not model.training
    assert _max_diff(supernet(x, arch), model(x)) < TOLERANCE, arch.summary()
    with calibrated(supernet, arch, batches):
        expected = supernet(x, arch)
    update_bn(batches, model)
    assert _max_diff(expected, model(x)) < TOLERANCE, arch.summary()


def test_extraction_equals_the_supernet_on_the_default_space(default_space, default_supernet):
    archs = [default_supernet.largest_arch(), default_supernet.smallest_arch(), *default_space.samples(24, seed=3)]
    assert sum(a.stages[s].num_attn for a in archs for s in range(4)) > 20  # attention positions are covered
    for arch in archs:
        _assert_extraction_matches(default_supernet, arch, DEFAULT_SPACE_INPUT)


def test_extraction_equals_the_supernet_on_a_space_file(small_space, small_supernet):
    archs = [small_supernet.largest_arch(), small_supernet.smallest_arch(), *small_space.samples(38, seed=4)]
    assert len({a.resolution for a in archs}) == 2 and len({a.stem_width for a in archs}) == 3
    for arch in archs:
        _assert_extraction_matches(small_supernet, arch, arch.resolution)


@pytest.mark.parametrize("kwargs", [dict(distillation=False), dict(num_classes=0)], ids=["one-head", "features"])
def test_extraction_with_other_heads(small_space, kwargs):
    supernet = _supernet(small_space, **kwargs)
    assert (supernet.dist_head is None) and (supernet.num_classes == 0) == ("num_classes" in kwargs)
    for arch in small_space.samples(10, seed=5):
        model = supernet.extract(arch)
        assert model.dist_head is None and model.num_classes == supernet.num_classes
        _assert_extraction_matches(supernet, arch, arch.resolution)


def test_training_mode_outputs_match_too(small_space, small_supernet):
    """Training mode: both heads' logits, BN on batch statistics; the extracted model computes the same."""
    for arch in small_space.samples(4, seed=6):
        x = _images(4, 1, arch.resolution, seed=7)
        model = small_supernet.extract(arch).train()
        saved = {k: v.clone() for k, v in small_supernet.state_dict().items()}
        small_supernet.train()
        with torch.no_grad():
            expected, got = small_supernet(x, arch), model(x)
        small_supernet.load_state_dict(saved)
        small_supernet.eval()
        assert isinstance(expected, tuple) and len(expected) == 2
        assert _max_diff(expected, got) < TOLERANCE


def test_sub_state_dict_loads_strictly_in_the_official_naming(tmp_path, small_space, small_supernet):
    arch = small_space.sample(8)
    path = tmp_path / "subnet.pth"
    torch.save(small_supernet.sub_state_dict(arch), path)
    state = torch.load(path, weights_only=True)
    assert sum(t.untyped_storage().nbytes() for t in state.values()) == sum(t.nbytes for t in state.values())
    model = SwiftFormer(small_supernet.subnet_arch(arch))
    swiftformer.load_checkpoint(model, path)  # strict: every key and shape of the ordinary model
    x = _images(2, 1, arch.resolution, seed=9)
    with torch.no_grad():
        assert _max_diff(model.eval()(x), small_supernet.eval()(x, arch)) < TOLERANCE


def test_parameters_are_the_per_kind_maxima(default_space, default_supernet):
    """The supernet holds, at every position, one largest block per kind it may take; nothing else is shared
    or duplicated. Counted independently by ``swiftformer.counting``."""
    supernet = default_supernet
    top = [(m.width, max(c.mlp_ratios)) for m, c in zip(supernet.maxima, default_space.stages)]

    def uniform(kind: str) -> SwiftFormerArch:  # every position of every stage at its largest, of one kind
        return SwiftFormerArch(supernet.max_stem_width, tuple(Stage(w, (Block(kind, r),) * m.depth)
                                                              for (w, r), m in zip(top, supernet.maxima)))

    parts = {kind: {p.name: p.params for p in iter_costs(uniform(kind))} for kind in BLOCK_KINDS}
    expected = sum(v for k, v in parts["conv"].items() if ".block" not in k)  # stem, embeddings, norm, heads
    for s, m in enumerate(supernet.maxima):
        expected += sum(parts[kind][f"stage{s + 1}.block{j + 1}"] for j, kinds in enumerate(m.slot_kinds)
                        for kind in kinds)
    assert sum(p.numel() for p in supernet.parameters()) == expected
    assert supernet.maxima[2].slot_kinds[0] == ("conv",)  # the default space never puts attention first in stage 3

    largest = supernet.largest_arch()
    model = supernet.extract(largest)
    assert sum(p.numel() for p in model.parameters()) == swiftformer.count_params(largest)
    for s, stage in enumerate(largest.stages):  # the largest subnet fills every block it uses
        for j, block in enumerate(stage.blocks):
            held = supernet.network[2 * s][j][block.type]
            assert sum(p.numel() for p in held.parameters()) == parts[block.type][f"stage{s + 1}.block{j + 1}"]


def _with_kind(arch: SwiftFormerArch, stage: int, position: int, kind: str) -> SwiftFormerArch:
    stages = list(arch.stages)
    blocks = list(stages[stage].blocks)
    blocks[position] = Block(kind, blocks[position].mlp_ratio)
    stages[stage] = Stage(stages[stage].width, tuple(blocks))
    return arch.replace(stages=tuple(stages))


def test_each_block_kind_has_its_own_weights(small_space):
    supernet = _supernet(small_space, seed=1).eval()
    base = small_space.sample(10)
    base = base.replace(stages=(base.stages[0], Stage(16, (Block("conv", 2.0),) * 2), base.stages[2]))
    conv, attn = _with_kind(base, 1, 1, "conv"), _with_kind(base, 1, 1, "attn")
    x = _images(2, 1, base.resolution, seed=11)
    with torch.no_grad():
        before = {a: supernet(x, a) for a in (conv, attn)}
        for p in supernet.network[2][1]["conv"].parameters():
            p.add_(0.5)
        after = {a: supernet(x, a) for a in (conv, attn)}
    assert torch.equal(before[attn], after[attn])
    assert _max_diff(before[conv], after[conv]) > 1e-3


def test_a_training_step_moves_only_the_active_slices(small_space):
    supernet = _supernet(small_space, seed=2).train()
    arch = next(a for a in small_space.samples(50, seed=12)
                if a.depths[1] < 3 and a.stages[1].width < 20 and a.stem_width < 8)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    x, y = _images(8, 1, arch.resolution, seed=13), torch.arange(8) % 5
    logits, dist_logits = supernet(x, arch)
    (F.cross_entropy(logits, y) + F.cross_entropy(dist_logits, y)).backward()
    for j in range(arch.depths[1], 3):  # positions beyond the stage's depth take no part
        assert all(p.grad is None for p in supernet.network[2][j].parameters())
    torch.optim.SGD(supernet.parameters(), lr=0.1).step()

    active = {}
    for source, shape in supernet.subnet_keys(arch).values():
        mask = torch.zeros_like(before[source], dtype=torch.bool)
        mask[tuple(slice(0, n) for n in shape)] = True
        active[source] = mask
    moved_inside = 0
    for key, after in supernet.state_dict().items():
        changed = after != before[key]
        mask = active.get(key, torch.zeros_like(changed))
        assert not changed[~mask].any(), f"{key} changed outside the subnet's slice"
        moved_inside += bool(changed[mask].any())
    assert moved_inside > 0.8 * len(active)  # nearly every active tensor trained (ReLU-dead corners aside)


def test_bn_calibration_changes_outputs_deterministically_and_leaves_nothing_behind(small_space, small_supernet):
    supernet = small_supernet.eval()
    arch, other = small_space.sample(14), small_space.sample(15)
    x = _images(3, 1, arch.resolution, seed=16)
    pool = _images(40, 1, arch.resolution, seed=17)
    state = {k: v.clone() for k, v in supernet.state_dict().items()}

    def calibrated_output(calibration: BNCalibration) -> torch.Tensor:
        with calibrated(supernet, arch, calibration.batches(pool)), torch.no_grad():
            assert supernet.active_arch == arch
            return supernet(x)

    with torch.no_grad():
        raw = supernet(x, arch)
    first = calibrated_output(CALIBRATION)
    assert _max_diff(first, raw) > 1e-3
    assert torch.equal(calibrated_output(CALIBRATION), first)
    assert _max_diff(calibrated_output(dataclasses.replace(CALIBRATION, seed=1, images=16)), first) > 1e-4
    with calibrated(supernet, other, CALIBRATION.batches(_images(40, 1, other.resolution, seed=18))):
        pass  # another subnet's calibration in between leaks into neither the statistics nor the next score
    assert torch.equal(calibrated_output(CALIBRATION), first)
    assert all(torch.equal(v, state[k]) for k, v in supernet.state_dict().items())
    assert supernet.active_arch is None and not supernet.training

    batches = CALIBRATION.batches(pool)
    assert [len(b) for b in batches] == [16, 16] and CALIBRATION.to_dict() == dict(images=32, batch_size=16, seed=0)
    assert [len(b) for b in BNCalibration(images=100, batch_size=16).batches(pool)] == [16, 16, 8]


def test_extracted_models_fuse_and_export_to_onnx(tmp_path, small_space, small_supernet):
    supernet = small_supernet.eval()
    for i, arch in enumerate([supernet.largest_arch(), *small_space.samples(2, seed=19)]):
        x = _images(2, 1, arch.resolution, seed=20)
        with calibrated(supernet, arch, CALIBRATION.batches(_images(40, 1, arch.resolution, seed=21))):
            with torch.no_grad():
                expected = supernet(x).numpy()
            model = supernet.extract(arch)
        with torch.no_grad():
            assert np.abs(fuse(model)(x).numpy() - expected).max() < 1e-4
        result = export_onnx(model, tmp_path / f"subnet{i}.onnx")  # checks onnxruntime against the fused model
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-4


def test_sort_channels_keeps_the_largest_net_and_puts_strong_channels_first(small_space):
    supernet = _supernet(small_space, seed=3).eval()
    largest = supernet.largest_arch()
    narrow = next(a for a in small_space.samples(50, seed=22)
                  if any(s.blocks[0].mlp_ratio < max(c.mlp_ratios) for s, c in zip(a.stages, small_space.stages)))
    x = _images(3, 1, largest.resolution, seed=23)
    xn = _images(3, 1, narrow.resolution, seed=23)
    local = {k: v.clone() for k, v in supernet.state_dict().items() if ".local_representation." in k}
    assert local
    with torch.no_grad():
        before, before_narrow = supernet(x, largest), supernet(xn, narrow)
        supernet.sort_channels()
    assert all(torch.equal(v, supernet.state_dict()[k]) for k, v in local.items())  # only MLPs are sorted
    with torch.no_grad():
        assert _max_diff(supernet(x, largest), before) < TOLERANCE
        assert _max_diff(supernet(xn, narrow), before_narrow) > 1e-4
    slots = [slot for s in range(len(supernet.maxima)) for slot in supernet.network[2 * s]]
    projections = [slot[kind].pwconv2 if kind == "conv" else slot[kind].linear.fc2 for slot in slots for kind in slot]
    assert len(projections) > len(slots)
    for layer in projections:
        importance = layer.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


@dataclasses.dataclass(frozen=True)
class KernelSpace(SearchSpace):
    """A space that varies something no supernet holds yet (as a later field of SearchSpace might)."""

    kernel_sizes: tuple[int, ...] = (3,)


class ConvOnlySuperNet(SuperNet):
    block_kinds = {"conv": BLOCK_KINDS["conv"]}


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_what_the_supernet_cannot_hold_is_refused_in_one_line(small_space, small_supernet):
    fields = {f.name: getattr(small_space, f.name) for f in dataclasses.fields(SearchSpace)}
    SuperNet(KernelSpace(**fields))  # left at its default: nothing varies
    with pytest.raises(SupernetError) as excinfo:
        SuperNet(KernelSpace(**fields, kernel_sizes=(3, 5)))
    assert "kernel_sizes" in _one_line(excinfo)
    with pytest.raises(SupernetError) as excinfo:
        ConvOnlySuperNet(small_space)
    assert "'attn'" in _one_line(excinfo)
    assert ConvOnlySuperNet(dataclasses.replace(
        small_space, stages=tuple(dataclasses.replace(c, attention="last", attn_blocks=(0,))
                                  for c in small_space.stages))).maxima[1].slot_kinds[0] == ("conv",)

    arch = small_supernet.largest_arch()
    wider = arch.replace(stages=(arch.stages[0], Stage(32, arch.stages[1].blocks), arch.stages[2]))
    cases = {
        "downsample": arch.replace(downsample=(True, False)),
        "stages": arch.replace(stages=arch.stages[:2], downsample=None),
        "stem_width": arch.replace(stem_width=9),
        "stage2.width": wider,
        "stage2.depth": arch.replace(stages=(arch.stages[0], Stage(8, (Block("conv"),) * 4), arch.stages[2])),
        "stage3.block1.mlp_ratio": arch.replace(stages=(*arch.stages[:2], Stage(24, (Block("conv", 4.0),) * 2))),
        "stage3.block1": _with_kind(arch, 2, 0, "attn"),  # the space never puts attention first in stage 3
    }
    x = _images(1, 1, 32, seed=24)
    for field, bad in cases.items():
        with pytest.raises(SupernetError) as excinfo:
            small_supernet(x, bad)
        assert _one_line(excinfo).startswith(field)
        with pytest.raises(SupernetError):
            small_supernet.extract(bad)
    with pytest.raises(SupernetError) as excinfo:
        SuperNet(small_space)(x)
    assert "set_active" in _one_line(excinfo)


def test_set_active_runs_the_same_subnet(small_space, small_supernet):
    arch = small_space.sample(random.Random(25))
    x = _images(2, 1, arch.resolution, seed=26)
    small_supernet.eval().set_active(arch)
    with torch.no_grad():
        assert torch.equal(small_supernet(x), small_supernet(x, arch))
    small_supernet.active_arch = None
