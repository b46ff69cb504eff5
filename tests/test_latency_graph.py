import pytest
import timm
import torch

from nas.latency.graph import profile_model
from nas.latency.measurements import MeasurementError, profile_ref
from swiftformer import VARIANTS, SwiftFormer, count_macs
from swiftformer.counting import measure_macs


def test_deployed_swiftformer_work_matches_the_closed_forms():
    arch = VARIANTS["xs"]
    profile = profile_model(SwiftFormer(arch), (1, 3, 224, 224))
    # deployed: the head and distillation head are one linear, so one head's MACs fewer than the trained model
    assert profile.macs == count_macs(arch) - 220 * 1000
    assert profile.features["attn_macs"] == 0 and profile.features["token_macs"] == 0  # additive attention
    assert "batch_norm" not in profile.op_counts and profile.op_counts["conv2d"] == 73


def test_timm_models_conv_bn_folded_and_macs_agree_with_hooks():
    for name in ("resnet18", "mobilenetv2_100"):
        model = timm.create_model(name).eval()
        profile = profile_model(model, (1, 3, 160, 160))
        assert "batch_norm" not in profile.op_counts
        assert profile.macs == measure_macs(model, (1, 3, 160, 160))


def test_vit_attention_is_counted_as_token_and_attention_work():
    profile = profile_model(timm.create_model("deit_tiny_patch16_224"), (1, 3, 224, 224))
    f = profile.features
    assert f["token_macs"] > 1e9 and f["attn_macs"] > 1e8 and f["softmax"] == 3 * 12 * 197 * 197
    assert f["norm"] > 0 and f["conv_macs"] == 192 * 3 * 16 * 16 * 196


def test_profiling_does_not_change_the_model():
    model = SwiftFormer(VARIANTS["xs"]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_model(model, (1, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_swiftformer_coreml_graph_drops_only_the_query_key_normalisation():
    """The SwiftFormer paper's CoreML latencies were measured without the query/key L2 normalisation; the
    graph named ``no-qk-l2norm`` profiles that, for timm's port and for our fused model."""
    for model in ("timm:swiftformer_xs", "swiftformer:xs"):
        full, measured = profile_ref(model, 224), profile_ref(model, 224, "no-qk-l2norm")
        assert measured.macs == full.macs and measured.features["reduction"] < full.features["reduction"]
    timm_full, timm_measured = profile_ref("timm:swiftformer_xs", 224), profile_ref("timm:swiftformer_xs", 224,
                                                                                   "no-qk-l2norm")
    assert (timm_full.op_counts["linalg_vector_norm"], timm_measured.op_counts["linalg_vector_norm"]) == (12, 4)


def test_one_architecture_one_graph_one_price():
    """timm's port of each released variant is profiled as our family's model of it, so every shipped predictor
    prices the two alike (they were 24 % apart on the iPhone 12 predictor)."""
    from nas.latency import builtin_devices, load_device, predict_latency
    from nas.latency.measurements import profiled_ref

    assert profiled_ref("timm:swiftformer_l3") == "swiftformer:l3" and profiled_ref("timm:resnet18") == "timm:resnet18"
    # the graph the phone ran keeps the port's five BatchNorms our exporter folds: calibration's shared costs see it
    assert profile_ref("timm:swiftformer_xs", 224).op_counts["batch_norm"] == 5
    assert profile_ref("swiftformer:xs", 224).op_counts["batch_norm"] == 0
    for variant in ("xs", "s", "l1", "l3"):
        ours, port = f"swiftformer:{variant}", f"timm:swiftformer_{variant}"
        assert profile_ref(ours, 224).features == profile_ref(profiled_ref(port), 224).features
        for device in builtin_devices():
            predictor = load_device(device)
            a, b = predict_latency(ours, predictor), predict_latency(port, predictor)
            assert abs(a / b - 1) <= 0.02, (variant, device, a, b)
    with pytest.raises(MeasurementError, match="applies to SwiftFormer attention, which .* does not have"):
        profile_ref("timm:resnet18", 64, "no-qk-l2norm")
