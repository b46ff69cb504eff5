import torch
from timm.models import reparameterize_model

from swiftformer import SwiftFormer, create_model, fuse
from swiftformer.testing import perturb_weights


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_fused_variant_gives_the_same_outputs_without_batchnorm():
    model = perturb_weights(create_model("xs"), seed=5).eval()
    fused = fuse(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert fused.dist_head is None and fused.fused and model.dist_head is not None  # the original is untouched
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        assert _max_diff(fused(x), model(x)) < 1e-4
        assert _max_diff(fused(x.contiguous(memory_format=torch.channels_last)), model(x)) < 1e-4


def test_every_random_architecture_fuses_exactly(random_archs):
    for i, arch in enumerate(random_archs):
        model = perturb_weights(SwiftFormer(arch), seed=i).eval()
        x = torch.randn(2, arch.in_chans, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert _max_diff(fuse(model)(x), model(x)) < 1e-4, arch.summary()


def test_timm_reparameterize_model_fuses_our_blocks():
    model = perturb_weights(create_model("s", num_classes=10), seed=2).eval()
    by_timm = reparameterize_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in by_timm.network.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(by_timm(x), model(x)) < 1e-4


def test_fusing_twice_changes_nothing():
    model = perturb_weights(create_model("xs", num_classes=4), seed=9).eval()
    once = fuse(model)
    twice = fuse(once)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(once(x), twice(x)) == 0


def test_fusing_keeps_the_dtype():
    model = perturb_weights(create_model("xs", num_classes=5), seed=3).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        fused = fuse(model)
        assert all(p.dtype == torch.float64 for p in fused.parameters())
        assert _max_diff(fused(x), model(x)) < 1e-10
