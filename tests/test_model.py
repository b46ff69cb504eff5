import pytest
import torch

import swiftformer
from swiftformer import VARIANTS, SwiftFormer, SwiftFormerArch, convert_checkpoint, create_model, load_checkpoint
from swiftformer.testing import perturb_weights

NAMES = {"xs": "XS", "s": "S", "l1": "L1", "l3": "L3"}


@pytest.mark.parametrize("name", list(NAMES))
def test_state_dict_keys_shapes_and_order_match_the_official_model(spec, name):
    reference = spec[NAMES[name]]
    model = create_model(name)
    ours = [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()]
    assert ours == reference["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == reference["params"]
    assert sum(b.numel() for b in model.buffers()) == reference["buffers_numel"]


@pytest.mark.parametrize("name", list(NAMES))
def test_without_distillation_head(spec, name):
    reference = spec[NAMES[name]]["no_distillation"]
    model = create_model(name, distillation=False)
    assert sum(p.numel() for p in model.parameters()) == reference["params"]
    assert len(model.state_dict()) == reference["num_state_dict_entries"]


def test_official_checkpoint_forms_load_strictly(tmp_path):
    source = perturb_weights(create_model("xs"), seed=3).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = source(x)
    state = source.state_dict()
    timm_named = {k.replace("patch_embed.", "stem.").replace("dist_head.", "head_dist."): v for k, v in state.items()}
    for form in (state, {"model": state, "epoch": 3, "optimizer": {}},
                 {"module." + k: v for k, v in state.items()}):
        target = create_model("xs").eval()
        load_checkpoint(target, form)
        torch.testing.assert_close(target(x), expected, rtol=0, atol=0)
    torch.save({"model": state}, tmp_path / "ckpt.pth")
    target = create_model("xs").eval()
    load_checkpoint(target, tmp_path / "ckpt.pth")
    torch.testing.assert_close(target(x), expected, rtol=0, atol=0)
    assert set(convert_checkpoint(timm_named)) == set(state)  # partial timm naming converts too


def test_wrong_checkpoint_is_refused():
    state = create_model("s").state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(create_model("xs"), state)


def test_forward_semantics_follow_the_official_code():
    model = perturb_weights(create_model("xs", num_classes=7), seed=1)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    head, dist = model(x)
    assert head.shape == dist.shape == (2, 7)
    model.eval()
    with torch.no_grad():
        pooled = model.forward_features(x).mean((2, 3))
        torch.testing.assert_close(model(x), (model.head(pooled) + model.dist_head(pooled)) / 2)
    plain = create_model("xs", num_classes=7, distillation=False).train()
    assert plain(x).shape == (2, 7) and plain.dist_head is None
    features = create_model("xs", num_classes=0).train()
    assert features(x).shape == (2, 220)


def test_intermediates_and_feature_info():
    model = create_model("xs").eval()
    x = torch.randn(1, 3, 96, 96)
    final, feats = model.forward_intermediates(x)
    assert [f.shape[1:] for f in feats] == [(48, 24, 24), (56, 12, 12), (112, 6, 6), (220, 3, 3)]
    torch.testing.assert_close(final, model.forward_features(x))
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    only = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
    torch.testing.assert_close(only[0], feats[1])


def test_any_description_builds_and_runs(random_archs):
    for arch in random_archs:
        model = SwiftFormer(arch).eval()
        x = torch.randn(2, arch.in_chans, arch.resolution, arch.resolution)
        out = model(x)
        width = arch.stages[-1].width
        assert out.shape == (2, arch.num_classes or width), arch.summary()
        assert len(model.state_dict()) > 0 and model.arch == arch


def test_transitions_without_downsampling_keep_resolution():
    arch = SwiftFormerArch.standard([1, 1, 1], [16, 16, 24], downsample=(False, False), resolution=32)
    model = SwiftFormer(arch).eval()
    feats = model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)
    assert [f.shape[-1] for f in feats] == [8, 8, 8]
    assert isinstance(model.network[1], torch.nn.Identity)  # same width, same resolution: nothing inserted
    assert model.network[3].proj.stride == (1, 1)  # width change only: a stride-1 embedding


def test_drop_path_follows_the_official_schedule():
    model = create_model("xs", drop_path_rate=0.11)
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for stage in model.network[::2] for block in stage]
    expected = [0.11 * j / 15 if j in (2, 5, 11, 15) else 0.0 for j in range(16)]  # only attention blocks
    assert rates == pytest.approx(expected)


def test_reset_classifier_and_init():
    model = create_model("xs")
    model.reset_classifier(3)
    assert model.head.out_features == 3 and model.dist_head.out_features == 3 and model.arch.num_classes == 3
    block = model.network[0][2]
    assert torch.all(block.layer_scale_1 == 1e-5) and torch.all(model.network[0][0].layer_scale == 1.0)
    assert model.head.bias.abs().sum() == 0 and 0.015 < model.head.weight.std() < 0.025
    assert 0.8 < block.attn.w_g.std() < 1.2  # w_g keeps its standard-normal init


def test_create_model_accepts_variant_names_and_descriptions():
    assert swiftformer.create_model("SwiftFormer_S").arch == VARIANTS["s"]
    assert swiftformer.create_model(VARIANTS["l1"].to_json(), num_classes=4).arch == VARIANTS["l1"].replace(num_classes=4)
