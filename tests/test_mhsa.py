"""The third block kind, ``mhsa`` (multi-head softmax self-attention), end to end: description, module, fusing,
scripting, export, counting, latency and search spaces; and what it must leave unchanged for the other kinds.
"""
import random

import numpy as np
import optuna
import pytest
import torch

import swiftformer
from nas.latency import load_device, profile_model
from nas.latency.graph import profile_module
from nas.latency.lut import build_table, part_keys
from search_spaces import SpaceError, StageChoices, SearchSpace, load_space, space_from_dict
from swiftformer import (VARIANTS, ArchitectureError, Block, Stage, SwiftFormer, SwiftFormerArch, count_macs,
                         count_params, mhsa_heads)
from swiftformer.counting import iter_costs, measure_macs
from swiftformer.export import export_onnx
from swiftformer.model import MHSAEncoder, MultiHeadSelfAttention, make_block
from swiftformer.testing import perturb_weights

optuna.logging.set_verbosity(optuna.logging.WARNING)

# widths 16 and 40 (one head: as wide as the stage, or 32 of 40 channels), 72 (two heads, 8 channels without a
# head of their own), 96 (three heads, exact); a kept-resolution transition; no distillation head
MIXED = SwiftFormerArch(
    stem_width=8,
    stages=(Stage(16, (Block("mhsa", 2.0), Block("conv", 2.0))), Stage(40, (Block("conv", 3.0), Block("mhsa"))),
            Stage(72, (Block("attn", 2.0), Block("mhsa", 2.0))), Stage(96, (Block("mhsa", 3.0),))),
    downsample=(True, False, True), num_classes=7, distillation=False, resolution=64,
)
NUM_MHSA = 4


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def _weights(arch: SwiftFormerArch, seed: int) -> SwiftFormer:
    """Perturbed weights (``perturb_weights``) with peaked attention: at that scale q and k are so small that
    every softmax is nearly uniform, and a wrong scale or a lost q/k bias would go unseen."""
    model = perturb_weights(SwiftFormer(arch), seed=seed)
    for module in model.modules():
        if isinstance(module, MultiHeadSelfAttention):
            module.qkv.weight.mul_(8.0)
            module.qkv.bias.mul_(8.0)
    return model.eval()


# ------------------------------------------------------------------------------------------------ description
def test_mhsa_round_trips_and_has_its_own_letter():
    assert swiftformer.BLOCK_TYPES == ("conv", "attn", "mhsa")
    assert MIXED.summary() == "s8-16:M2C2-40:C3M=72:A2M2-96:M3@64"
    again = SwiftFormerArch.from_json(MIXED.to_json())
    assert again == MIXED and again.digest() == MIXED.digest() and hash(again) == hash(MIXED)
    short = SwiftFormerArch.from_json('{"stages": [{"width": 16, "blocks": ["mhsa", "attn"]}]}')
    assert [b.type for b in short.stages[0].blocks] == ["mhsa", "attn"]
    assert short.stages[0].num_attn == 1  # additive attention only: mhsa is another kind


def test_existing_digests_do_not_change():
    # results files key on these; they were computed before the third kind existed
    assert {k: v.digest() for k, v in VARIANTS.items()} == {
        "xs": "b3d6d39e8de2", "s": "00a1bdb5dca3", "l1": "528c518cab5b", "l3": "7cfda7cf9efe"}


def test_unknown_block_type_names_the_accepted_kinds():
    with pytest.raises(ArchitectureError, match=r"block type 'gru' is unknown; accepted: conv, attn, mhsa"):
        Block("gru")
    with pytest.raises(ArchitectureError, match=r"stages\[0\]\.blocks\[1\]: block type 'MHSA' is unknown"):
        SwiftFormerArch.from_json('{"stages": [{"width": 16, "blocks": ["conv", "MHSA"]}]}')


@pytest.mark.parametrize("width, heads", [(8, (1, 8)), (32, (1, 32)), (40, (1, 32)), (64, (2, 32)),
                                          (112, (3, 32)), (220, (6, 32)), (224, (7, 32))])
def test_heads_rule(width, heads):
    assert mhsa_heads(width) == heads
    attn = make_block(Block("mhsa"), width).attn
    assert (attn.num_heads, attn.head_dim) == heads
    assert attn.qkv.out_channels == 3 * heads[0] * heads[1] and attn.out_proj.out_channels == width


# ---------------------------------------------------------------------------------------------------- module
def test_forward_backward_reach_every_parameter_and_drop_path_acts():
    model = SwiftFormer(MIXED, drop_path_rate=0.5).train()
    assert sum(isinstance(m, MHSAEncoder) for m in model.modules()) == NUM_MHSA
    wide = model.network[6][0].attn  # timm's init: truncated normal (std 0.02) weights, zero biases
    assert abs(wide.qkv.weight.std().item() - 0.02) < 0.002 and not wide.qkv.bias.any() and not wide.out_proj.bias.any()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    block = MHSAEncoder(16, 32, drop_path=0.9).train()
    perturb_weights(block)
    x = torch.randn(8, 16, 6, 6)
    torch.manual_seed(0)
    a = block(x)
    torch.manual_seed(1)
    assert _max_diff(a, block(x)) > 0  # stochastic depth drops whole samples' branches at random
    block.eval()
    torch.testing.assert_close(block(x), block(x))


@pytest.mark.parametrize("kind, mixes", [("mhsa", True), ("attn", True), ("conv", False)])
def test_attention_mixes_far_away_tokens(kind, mixes):
    torch.manual_seed(0)
    block = perturb_weights(make_block(Block(kind, 2.0), 32), seed=4).eval()
    x = torch.randn(1, 32, 12, 12)
    y = x.clone()
    y[:, :, 0, 0] += 1.0  # one corner token changes
    with torch.no_grad():
        far = (block(x) - block(y))[:, :, 11, 11].abs().max().item()  # the opposite corner
    assert (far > 1e-4) if mixes else far == 0.0


def test_fused_model_matches_without_batchnorm_or_layer_scale():
    model = _weights(MIXED, seed=5)
    fused = swiftformer.fuse(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not any("layer_scale" in name for name, _ in fused.named_parameters())
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert _max_diff(fused(x), expected) < 1e-4
        assert _max_diff(fused(x.contiguous(memory_format=torch.channels_last)), expected) < 1e-4
        assert _max_diff(fused(x[:, :, :40, :56]), model(x[:, :, :40, :56])) < 1e-4  # another map size


def test_torchscript_of_the_model_and_the_fused_model():
    model = _weights(MIXED, seed=6)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.jit.script(swiftformer.fuse(model))(x), expected, rtol=1e-4, atol=1e-4)


def test_features_and_intermediates_with_mhsa():
    model = _weights(MIXED, seed=7)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
    assert [m.shape[1] for m in maps] == list(MIXED.widths) and [m.shape[-1] for m in maps] == [16, 8, 8, 4]


# ---------------------------------------------------------------------------------------------------- export
def test_onnx_export_matches_the_unfused_model(tmp_path):
    import onnxruntime as ort

    model = _weights(MIXED, seed=8)
    result = export_onnx(model, tmp_path / "m.onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert result.ops["Softmax"] == NUM_MHSA and "BatchNormalization" not in result.ops
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)  # a batch other than the traced one: the batch axis stayed dynamic
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-4


@pytest.mark.slow
def test_coreml_conversion(tmp_path):
    pytest.importorskip("coremltools")
    from swiftformer.export import deployable, export_coreml

    model = _weights(MIXED, seed=9)
    result = export_coreml(model, tmp_path / "m.mlpackage")
    assert (tmp_path / "m.mlpackage" / "Manifest.json").exists()
    assert result.ops["softmax"] == NUM_MHSA and "batch_norm" not in result.ops
    assert result.ops["conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in deployable(model).modules())
    if result.max_abs_diff is None:
        assert "macOS" in result.note


# -------------------------------------------------------------------------------------------------- counting
@pytest.mark.parametrize("arch", [
    MIXED,
    SwiftFormerArch.standard([2, 1], [112, 220], attn_blocks=1, mlp_ratio=3.0, resolution=96).replace(
        stages=(Stage(112, (Block("conv", 3.0), Block("mhsa", 3.0))), Stage(220, (Block("mhsa", 3.0),)))),
], ids=["mixed", "wide"])
def test_closed_forms_equal_counted(arch):
    model = SwiftFormer(arch)
    assert count_params(arch) == sum(p.numel() for p in model.parameters())
    for resolution in (arch.resolution, 37, (40, 72)):
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        assert count_macs(arch, resolution) == measure_macs(model, (1, arch.in_chans, h, w)), resolution
    assert {p.kind for p in iter_costs(arch)} >= {"mhsa"}


def test_mhsa_macs_include_the_quadratic_attention_products():
    # counted independently of the closed form: every aten op of the deployed graph, at dispatch level
    profile = profile_model(SwiftFormer(MIXED), (1, 3, 64, 64))
    assert profile.macs == count_macs(MIXED)  # no distillation head, so deploying merges no heads
    tokens = {16: 16 * 16, 40: 8 * 8, 72: 8 * 8, 96: 4 * 4}
    products = sum(2 * mhsa_heads(c)[0] * mhsa_heads(c)[1] * tokens[c] ** 2 for c in (16, 40, 72, 96))
    assert profile.features["attn_macs"] == products
    conv_only = MIXED.replace(stages=tuple(Stage(s.width, tuple(Block("conv" if b.type == "mhsa" else b.type,
                                                                      b.mlp_ratio) for b in s.blocks))
                                           for s in MIXED.stages))
    assert count_macs(MIXED) - count_macs(conv_only) > products > 0


# --------------------------------------------------------------------------------------------------- latency
def test_mhsa_is_profiled_as_attention_work():
    block = make_block(Block("mhsa"), 64).eval().fuse()
    profile = profile_module(block, torch.randn(1, 64, 14, 14))
    n = 14 * 14
    assert profile.features["attn_macs"] == 2 * 64 * n * n  # q^T k and v attn^T, two heads of 32
    assert profile.features["softmax"] == 2 * n * n  # one score per head, query and key
    assert profile.features["token_macs"] == 0 and profile.features["norm"] == 0
    predictor = load_device("iphone14")
    attn = profile_module(make_block(Block("attn"), 64).eval().fuse(), torch.randn(1, 64, 14, 14))
    assert predictor.predict_parts(profile) > predictor.predict_parts(attn) > 0  # quadratic beats linear here


def test_predictions_without_mhsa_are_unchanged():
    # the shipped predictors' XS predictions as calibrated without the third kind (iphone14 recalibrated by
    # leave-one-family-out on 2026-11-24; it priced XS at 0.7604 ms before)
    profile = profile_model(SwiftFormer(VARIANTS["xs"]), (1, 3, 224, 224))
    assert load_device("iphone14").predict(profile) == pytest.approx(0.900360603698814, rel=1e-9)
    assert load_device("iphone12").predict(profile) == pytest.approx(0.7398764528539765, rel=1e-9)


KINDS_SPACE = {"name": "kinds", "resolution": [96, 128], "stages": [
    {"depth": [1, 2], "width": [16, 40], "mlp_ratio": [2], "attention": "mask", "attn_kinds": ["attn", "mhsa"]},
    {"depth": [1, 2], "width": [64, 72], "attn_blocks": [0, 1, 2], "attn_kinds": ["mhsa"]},
    {"depth": [2], "width": [96], "mlp_ratio": [3], "attn_blocks": [0, 1], "attn_kinds": ["attn", "mhsa"]}]}


def test_latency_table_agrees_with_the_whole_model_predictor():
    space = space_from_dict(KINDS_SPACE)
    predictor = load_device("iphone14")
    table = build_table(space, predictor)
    archs = list(space.samples(8, seed=2))
    assert any("mhsa" in {b.type for s in a.stages for b in s.blocks} for a in archs)
    for arch in archs:
        whole = predictor.predict(profile_model(SwiftFormer(arch), (1, 3, arch.resolution, arch.resolution)),
                                  "swiftformer")  # the searched family's own line, as the table prices it
        assert abs(table.predict(arch) - whole) <= 1e-6 * whole, arch.summary()
    assert any(key[0] == "mhsa" for a in archs for key in part_keys(a))


# ----------------------------------------------------------------------------------------------------- spaces
def test_a_space_with_two_kinds_samples_both_and_round_trips():
    space = space_from_dict(KINDS_SPACE)
    assert space.decision_names() == [
        "resolution", "stage1.depth", "stage1.width", "stage1.mlp_ratio", "stage1.attn", "stage1.attn_kind",
        "stage2.depth", "stage2.width", "stage2.mlp_ratio", "stage2.attn",
        "stage3.depth", "stage3.width", "stage3.mlp_ratio", "stage3.attn", "stage3.attn_kind"]
    archs = list(space.samples(300, seed=0))
    kinds = {(i, b.type) for a in archs for i, s in enumerate(a.stages) for b in s.blocks if b.type != "conv"}
    assert kinds == {(0, "attn"), (0, "mhsa"), (1, "mhsa"), (2, "attn"), (2, "mhsa")}
    rng = random.Random(0)
    for a, b in zip(archs[:40], archs[1:41]):
        assert a in space and space.build(space.decisions(a)) == a
        assert space.mutate(a, rng) in space and space.crossover(a, b, rng) in space
        assert len(space.encode(a)) == space.encoding_size
        study = optuna.create_study()
        study.enqueue_trial(space.trial_params(a))
        assert space.suggest(study.ask()) == a
    # stage 1: depth 1 (2 masks) or 2 (4 masks), a kind for each mask but the empty one; stage 2: one kind
    stage1 = 2 * 1 * ((1 + 2 * 1) + (1 + 2 * 3))
    assert space.size() == 2 * stage1 * (2 * 1 * (2 + 3)) * (1 + 2)
    assert len(set(space.samples(30000, seed=1))) == space.size()  # every architecture, each once
    assert len({tuple(space.encode(a)) for a in archs}) == len(set(archs))
    assert any("of kind attn or mhsa" in line for line in space.describe())


def test_kind_mutation_changes_the_architecture_and_optuna_asks_the_kind():
    space = SearchSpace("one", (StageChoices((2,), (32,), attn_blocks=(1,), attn_kinds=("attn", "mhsa")),))
    assert space.size() == 2
    arch = space.sample(0)
    mutant = space.mutate(arch, 0)
    assert mutant != arch and {arch.stages[0].blocks[1].type, mutant.stages[0].blocks[1].type} == {"attn", "mhsa"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space.suggest(trial)
    assert list(trial.params) == ["stage1.attn_kind"]


def test_the_default_space_is_unchanged():
    default = load_space("swiftformer")
    assert default.size() == 457_228_800
    assert "attn_kind" not in " ".join(default.decision_names())
    assert all("attn_kinds" not in stage for stage in default.to_dict()["stages"])  # the table cache key
    # the first samples of seed 0 and the Optuna parameters, as before the third kind existed
    assert [a.digest() for a in default.samples(3, seed=0)] == ["9dc76045e8dd", "fa38605bc989", "b228b70f3d82"]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    default.suggest(trial)
    assert sorted(trial.params) == sorted(f"stage{i}.{k}" for i in range(1, 5)
                                          for k in ("attn_blocks", "depth", "mlp_ratio", "width"))
    mhsa_xs = VARIANTS["xs"].replace(stages=(Stage(48, (Block(), Block(), Block("mhsa"))),) + VARIANTS["xs"].stages[1:])
    with pytest.raises(SpaceError, match=r"stage1.attn_kind = 'mhsa' is outside space 'swiftformer' \(choices: \['attn'\]\)"):
        default.decisions(mhsa_xs)


def test_kinds_in_files_are_checked_and_written_back(tmp_path):
    space = space_from_dict(KINDS_SPACE)
    again = space_from_dict(space.to_dict())
    assert again == space and list(again.samples(5, 3)) == list(space.samples(5, 3))
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [{depth: [2], width: [16], attn_kinds: [attn, gru]}]")
    with pytest.raises(SpaceError, match=r"stages\[0\]\.attn_kinds: 'gru' is unknown; accepted: attn, mhsa"):
        load_space(path)
    with pytest.raises(SpaceError, match=r"attn_kinds: expected distinct kinds"):
        StageChoices((1,), (16,), attn_kinds=("mhsa", "mhsa"))
    single = space_from_dict({"stages": [{"depth": [2], "width": [16], "attn_kinds": "mhsa"}]})
    assert single.stages[0].attn_kinds == ("mhsa",) and single.decision_names()[-1] == "stage1.attn"


def test_a_stage_mixing_kinds_is_outside_a_one_kind_per_stage_space():
    space = space_from_dict(KINDS_SPACE)
    arch = space.sample(0).replace(resolution=96)
    mixed = arch.replace(stages=(Stage(16, (Block("attn", 2.0), Block("mhsa", 2.0))),) + arch.stages[1:])
    with pytest.raises(SpaceError, match="stage1.attn_kind: the stage mixes attn, mhsa"):
        space.decisions(mixed)
