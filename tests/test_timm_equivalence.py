"""Our model against timm's independent port, with every weight perturbed (default init hides attention bugs)."""
import pytest
import timm
import torch
from timm.models.swiftformer import checkpoint_filter_fn as timm_filter

from swiftformer import convert_checkpoint, create_model
from swiftformer.testing import perturb_weights


@pytest.mark.parametrize("name, resolution", [("xs", 224), ("s", 96), ("l1", 64)])
def test_logits_and_stage_features_match_timm(name, resolution):
    ours = perturb_weights(create_model(name), seed=7).eval()
    theirs = timm.create_model(f"swiftformer_{name}").eval()
    theirs.load_state_dict(timm_filter(ours.state_dict(), theirs), strict=True)
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours_final, ours_feats = ours.forward_intermediates(x)
        theirs_final, theirs_feats = theirs.forward_intermediates(x)
        ours_logits, theirs_logits = ours(x), theirs(x)
    assert ours_logits.abs().mean() > 1e-2  # the perturbed weights give logits worth comparing
    torch.testing.assert_close(ours_logits, theirs_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_final, theirs_final, rtol=0, atol=1e-5)
    for a, b in zip(ours_feats, theirs_feats, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_attention_matters_at_the_perturbed_weights():
    """Guards the test above: an attention bug must move the outputs well past its 1e-5 tolerance."""
    model = perturb_weights(create_model("xs"), seed=7).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.network[0][2].attn.w_g.mul_(-1)
        assert (model(x) - before).abs().max() > 1e-4


def test_timm_port_checkpoint_loads_into_ours():
    theirs = perturb_weights(timm.create_model("swiftformer_xs"), seed=11).eval()
    ours = create_model("xs").eval()
    ours.load_state_dict(convert_checkpoint({"model": theirs.state_dict()}), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)
