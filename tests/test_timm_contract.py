"""timm's public model API, exercised the way timm's own test-suite checks its families.

Every check runs on the released variants and on an unusual architecture through ``swiftnas_arch``: an
Identity transition and a stride-1 embedding (transitions without downsampling), no distillation head,
attention in the first stage, multi-head self-attention (``mhsa``) blocks beside additive attention, one input
channel. Inputs are small (64 px) to keep the file fast on one core.
"""
import json

import pytest
import timm
import torch
from timm.layers import set_layer_config
from timm.models import FeatureInfo, PretrainedCfg, save_for_hf
from timm.models._features_fx import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor, get_graph_node_names

import swiftformer
from swiftformer import VARIANTS, Block, Stage, SwiftFormerArch
from swiftformer.model import feature_map_size
from swiftformer.testing import perturb_weights

ODD = SwiftFormerArch(
    stem_width=8,
    stages=(Stage(16, (Block("attn", 2.0), Block("conv", 2.0))), Stage(16, (Block("conv", 2.0), Block("mhsa", 2.0))),
            Stage(24, (Block("conv", 3.0), Block("attn", 2.0))), Stage(32, (Block("attn", 2.0), Block("mhsa", 3.0)))),
    downsample=(False, False, True),  # Identity, then a stride-1 embedding (16 -> 24), then a downsampling one
    distillation=False, in_chans=1, resolution=64,
)
pytestmark = pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing the model in train mode")

NAMES = ["swiftnas_xs", "swiftnas_s", "swiftnas_l1", "swiftnas_l3", "odd"]
SIDE = 64


def create(name: str, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` as a user calls it; ``odd`` is the unusual architecture."""
    if name == "odd":
        return timm.create_model("swiftnas_arch", arch=ODD, **kwargs)
    return timm.create_model(name, **kwargs)


def arch_of(name: str) -> SwiftFormerArch:
    return ODD if name == "odd" else VARIANTS[name.removeprefix("swiftnas_")]


def image(model: torch.nn.Module, batch: int = 2, side: int = SIDE, **kwargs) -> torch.Tensor:
    chans = model.pretrained_cfg["input_size"][0]
    return torch.randn(batch, chans, side, side, generator=torch.Generator().manual_seed(0), **kwargs)


def fx_model(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    """The whole model as a torch.fx graph module, with timm's leaf modules and functions, as timm tests do.

    With ``train``, the training graph returns every output of the model (both heads when distilled).
    """
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    train_return_nodes = [train_nodes[-1]]
    if train:  # graph nodes, last first, line up with the node names from the end
        nodes = list(reversed(NodePathTracer(**tracer_kwargs).trace(model.train()).nodes))
        names = [n.name for n in nodes]
        train_return_nodes = [train_nodes[-names.index(n.name)] for n in nodes[0].all_input_nodes]
    return create_feature_extractor(model, train_return_nodes=train_return_nodes,
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)


# ------------------------------------------------------------------------------------ forward and backward
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_reach_every_parameter(name):
    model = create(name, num_classes=42)
    x = image(model)
    model.train()
    out = model(x)
    if isinstance(out, tuple):  # the distillation head's training output
        out = torch.cat(out)
    assert out.shape[-1] == 42
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 42) and not torch.isnan(out).any()


# ---------------------------------------------------------------------------------- pretrained_cfg fields
@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_describes_the_model(name):
    model = create(name).eval()
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    PretrainedCfg(**cfg)  # every field is one timm knows, so the config can be passed back to create_model
    arch = arch_of(name)
    assert cfg["input_size"] == (arch.in_chans, arch.resolution, arch.resolution)
    assert cfg["num_classes"] == model.num_classes == 1000
    state = model.state_dict()
    classifiers = cfg["classifier"] if isinstance(cfg["classifier"], tuple) else (cfg["classifier"],)
    assert all(f"{c}.weight" in state for c in classifiers)
    assert ("dist_head" in classifiers) == arch.distillation
    assert f"{cfg['first_conv']}.weight" in state
    assert model.num_features > 0 and model.head_hidden_size > 0
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, *cfg["input_size"]))
    assert features.shape[1] == model.num_features
    assert tuple(features.shape[-2:]) == cfg["pool_size"]  # the final map at the default resolution
    assert timm.models.get_pretrained_cfg(name if name != "odd" else "swiftnas_arch").pool_size == (7, 7)


def test_pool_size_follows_the_downsampling():
    assert feature_map_size(VARIANTS["xs"]) == (7, 7)
    assert feature_map_size(ODD) == (8, 8)  # three halvings, not five
    assert feature_map_size(VARIANTS["xs"], resolution=57) == (2, 2)  # each stride-2 conv rounds up


def test_a_saved_config_builds_the_model_again():
    model = timm.create_model("swiftnas_s", distillation=False)
    again = timm.create_model("swiftnas_s", pretrained_cfg=model.pretrained_cfg, distillation=False)
    assert again.pretrained_cfg == model.pretrained_cfg


# ---------------------------------------------------------------------- heads, pooling and reset_classifier
@pytest.mark.parametrize("name", NAMES)
def test_pre_logits_reset_classifier_and_global_pool(name):
    model = create(name).eval()
    x = image(model)
    pool = feature_map_size(arch_of(name), SIDE)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (2, model.head_hidden_size)
        model.reset_classifier(0)
        pooled = model(x)
        assert pooled.shape == pre_logits.shape
        torch.testing.assert_close(pooled, pre_logits)
        model.reset_classifier(0, "")
        assert model.global_pool == "" and model(x).shape == (2, model.num_features, *pool)
        unpooled = create(name, num_classes=0, global_pool="").eval()
        assert unpooled(x).shape == (2, model.num_features, *pool)
        assert unpooled.forward_head(unpooled.forward_features(x), pre_logits=True).shape == features.shape


@pytest.mark.parametrize("name", ["swiftnas_xs", "odd"])
def test_unpooled_heads_classify_every_position(name):
    model = perturb_weights(create(name, num_classes=5, global_pool=""), seed=2).eval()
    x = image(model)
    with torch.no_grad():
        dense = model(x)
        assert dense.shape == (2, 5, *feature_map_size(arch_of(name), SIDE))
        torch.testing.assert_close(swiftformer.fuse(model)(x), dense, rtol=1e-4, atol=1e-4)  # norm folds per position
        model.global_pool = "avg"  # the same heads after average pooling
        torch.testing.assert_close(dense.mean(dim=(2, 3)), model(x))  # the heads are linear: pooling commutes


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_follows_device_dtype_and_mode(name):
    model = create(name, num_classes=7).double().eval()
    model.reset_classifier(3)
    heads = [m for m in (model.head, model.dist_head) if m is not None]
    assert len(heads) == (2 if arch_of(name).distillation else 1)
    assert all(h.weight.dtype == torch.float64 and not h.training and h.out_features == 3 for h in heads)
    assert model.num_classes == 3 and model.arch.num_classes == 3
    with torch.no_grad():
        assert model(image(model, dtype=torch.float64)).shape == (2, 3)
    model.train()
    model.reset_classifier(0)
    assert model.head.training and model.dist_head is None
    on_meta = create(name, device="meta").eval()
    on_meta.reset_classifier(4)
    assert on_meta.head.weight.device.type == "meta" and not on_meta.head.training


def test_bad_pooling_and_class_counts_are_refused():
    with pytest.raises(ValueError, match="global_pool 'max' is not supported; accepted: 'avg', ''"):
        timm.create_model("swiftnas_xs", global_pool="max")
    model = timm.create_model("swiftnas_xs")
    with pytest.raises(ValueError, match="global_pool 'token' is not supported"):
        model.reset_classifier(0, "token")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0, got -1"):
        model.reset_classifier(-1)
    with pytest.raises(ValueError, match=r"img_size \(64, 32\) is not supported"):
        timm.create_model("swiftnas_xs", img_size=(64, 32))
    assert timm.create_model("swiftnas_xs", img_size=(96, 96)).arch.resolution == 96


# ------------------------------------------------------------------------------------ intermediates, features
@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_and_pruning(name):
    model = create(name).eval()
    info = FeatureInfo(model.feature_info, range(len(model.feature_info)))
    x = image(model)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert [t.shape[1] for t in intermediates] == info.channels()
        assert [t.shape[-1] for t in intermediates] == [-(-SIDE // r) for r in info.reduction()]
        torch.testing.assert_close(final, model.forward_features(x))
        last = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
        torch.testing.assert_close(last[0], final)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], intermediates[1])

        assert model.prune_intermediate_layers([0, 1]) == [0, 1]
        assert model.num_features == model.head_hidden_size == info.channels()[1]
        assert model.num_classes == 0 and model.global_pool == ""
        torch.testing.assert_close(model(x), intermediates[1])  # the pruned model ends at the last kept stage
        assert len(model.forward_intermediates(x, intermediates_only=True)) == 2


@pytest.mark.parametrize("name", NAMES)
def test_features_only(name):
    model = create(name, features_only=True, out_indices=(1, -1)).eval()
    full = create(name).eval()
    full.load_state_dict(model.model.state_dict(), strict=False)  # the wrapper's pruned model, same weights
    x = image(model)
    with torch.no_grad():
        features = model(x)
        expected = full.forward_intermediates(x, indices=[1, len(full.feature_info) - 1], intermediates_only=True)
    assert model.feature_info.channels() == [t.shape[1] for t in features]
    assert [t.shape[-1] for t in features] == [-(-SIDE // r) for r in model.feature_info.reduction()]
    for a, b in zip(features, expected, strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------ TorchScript, fx
@pytest.mark.parametrize("name", NAMES)
def test_torchscript(name):
    with set_layer_config(scriptable=True):
        model = create(name).eval()
    x = image(model)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
        model.reset_classifier(5, "")
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_fx_trace_then_script(name):
    model = perturb_weights(create(name), seed=1).eval()
    x = image(model)
    graph = fx_model(model)
    scripted = torch.jit.script(graph)  # failed while annotations were postponed (strings in the traced code)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(next(iter(graph(x).values())), expected)
        torch.testing.assert_close(next(iter(scripted(x).values())), expected)


@pytest.mark.parametrize("name", ["swiftnas_xs", "odd"])
def test_fx_backward(name):
    model = create(name, num_classes=42)
    graph = fx_model(model, train=True).train()
    outputs = tuple(graph(image(model)).values())
    assert len(outputs) == (2 if arch_of(name).distillation else 1)
    out = torch.cat(outputs)
    out.mean().backward()
    assert out.shape[-1] == 42
    missing = [n for n, p in graph.named_parameters() if p.grad is None]
    assert not missing, missing
    assert sum(p.numel() for p in graph.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["swiftnas_xs", "odd"])
def test_fused_model_scripts(name):
    model = perturb_weights(create(name), seed=3).eval()
    fused = swiftformer.fuse(model)
    x = image(model)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(fused)(x), model(x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------- device and dtype
@pytest.mark.parametrize("name", NAMES)
def test_device_and_dtype_at_creation(name):
    # CUDA is not needed to test the pass-through: the meta device allocates nothing
    model = create(name, device="meta")
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    features = create(name, features_only=True, device="meta")
    assert all(p.device.type == "meta" for p in features.parameters())
    model = create(name, dtype=torch.float64).eval()
    assert all(t.dtype == torch.float64 for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())
    with torch.no_grad():
        assert model(image(model, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name", ["swiftnas_xs", "odd"])
def test_bfloat16_at_creation(name):
    model = create(name, dtype=torch.bfloat16, num_classes=4).eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = model(image(model, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------- registry and weights
def test_every_listed_model_builds_without_arguments():
    names = timm.list_models("swiftnas_*")
    assert "swiftnas_arch" in names
    for name in names:
        assert isinstance(timm.create_model(name, device="meta"), swiftformer.SwiftFormer), name
    assert timm.create_model("swiftnas_arch", device="meta").arch == VARIANTS["xs"]  # the documented default


def test_pretrained_weights_load_into_a_model_without_distillation_head(tmp_path):
    source = perturb_weights(swiftformer.create_model("xs"), seed=5)
    torch.save({"model": source.state_dict()}, tmp_path / "xs.pth")
    model = timm.create_model("swiftnas_xs", pretrained=True, distillation=False,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "xs.pth")))
    assert model.dist_head is None
    torch.testing.assert_close(model.head.weight, source.head.weight, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["swiftnas_xs", "odd"])
def test_save_for_hf_and_create_from_local_dir(tmp_path, name):
    model = perturb_weights(create(name, num_classes=10), seed=6).eval()
    # a SwiftFormerArch is not JSON: swiftnas_arch models name theirs as a dict (README, timm section)
    model_args = {"arch": model.arch.to_dict()} if name == "odd" else None
    save_for_hf(model, tmp_path, model_args=model_args)
    assert "arch" not in json.loads((tmp_path / "config.json").read_text())["pretrained_cfg"]
    again = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert again.arch == model.arch and again.pretrained_cfg["num_classes"] == 10
    x = image(model)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)  # the fine-tuned head is kept
