import pytest
import timm
import torch

import swiftformer
from swiftformer import VARIANTS, SwiftFormerArch
from swiftformer.testing import perturb_weights


def test_registered_names_do_not_clash_with_timm():
    ours = set(timm.list_models("swiftnas_*"))
    assert ours == {"swiftnas_xs", "swiftnas_s", "swiftnas_l1", "swiftnas_l3", "swiftnas_arch"}
    assert set(timm.list_models("swiftformer_*")).isdisjoint(ours)


def test_create_model_with_num_classes_carries_the_architecture():
    model = timm.create_model("swiftnas_xs", num_classes=10)
    assert isinstance(model, swiftformer.SwiftFormer) and model.head.out_features == 10
    assert model.arch == VARIANTS["xs"].replace(num_classes=10)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 1000  # the weights' head, as in timm
    model.eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_any_architecture_through_timm(tmp_path):
    arch = SwiftFormerArch.standard([1, 2], [16, 32], attn_blocks=[0, 2], num_classes=3, in_chans=1, resolution=48)
    path = tmp_path / "arch.json"
    arch.save(path)
    for given in (arch, arch.to_dict(), arch.to_json(), str(path)):
        model = timm.create_model("swiftnas_arch", arch=given)
        assert model.arch == arch and model.pretrained_cfg["input_size"] == (1, 48, 48)
        assert model.pretrained_cfg["pool_size"] == (6, 6)  # 48 px, stride 8
    assert timm.create_model("swiftnas_arch").arch == VARIANTS["xs"]  # the documented default


def test_pretrained_from_a_local_official_checkpoint(tmp_path):
    source = perturb_weights(swiftformer.create_model("xs"), seed=4).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "swiftformer_xs.pth")
    model = timm.create_model("swiftnas_xs", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "swiftformer_xs.pth"))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)


def test_pretrained_without_a_file_refuses_instead_of_silently_random():
    with pytest.raises(ValueError, match="no downloadable weights"):
        timm.create_model("swiftnas_s", pretrained=True)


def test_features_only():
    model = timm.create_model("swiftnas_xs", features_only=True, out_indices=(1, 3))
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [56, 220]
    assert model.feature_info.channels() == [56, 220]
