import json

import numpy as np
import pytest

from nas.latency import LatencyPredictor, PredictorError, builtin_devices, calibrate, load_device, predict_latency
from nas.latency.evaluate import leave_one_out, scores
from nas.latency.measurements import MeasurementError, Sample, read_measurements
from nas.latency.predictor import COSTS, work_vector

MODELS = ["swiftformer:xs", "swiftformer:s", "timm:mobilenetv2_050", "timm:resnet18", "timm:efficientnet_b0",
          "timm:deit_tiny_patch16_224", "timm:mobilevitv2_050", "timm:repvit_m0_9"]


def synthetic_latency(sample: Sample) -> float:
    """A device whose true costs are known: 0.3 ms + 0.4 ms/GMAC + 0.5 ms per 1e8 depthwise MACs extra."""
    f = sample.profile.features
    return 0.3 + 0.4 * sample.profile.macs / 1e9 + 0.5 * f["dwconv_macs"] / 1e8


def test_calibration_recovers_a_device_with_known_costs():
    samples = [Sample(m, 160, 1.0) for m in MODELS]
    truth = [synthetic_latency(s) for s in samples]
    predictor = calibrate([s.profile for s in samples], truth, "synthetic")
    predicted = [predictor.predict(s.profile) for s in samples]
    mape, within, tau = scores(predicted, truth)
    assert mape < 0.03 and within == 1.0 and tau > 0.9
    assert all(v >= 0 for v in predictor.costs.values())


def test_leave_one_out_predicts_held_out_rows():
    samples = [Sample(m, 160, synthetic_latency(Sample(m, 160, 1.0))) for m in MODELS]
    result = leave_one_out(samples)
    assert result.mape < 0.10 and len(result.rows) == len(MODELS)
    assert set(result.summary()) >= {"mape", "within_10pct", "kendall_tau", "baseline_mape"}


def test_save_load_and_shipped_devices(tmp_path):
    assert set(builtin_devices()) == {"iphone12", "iphone14"}
    predictor = load_device("iPhone 14")
    assert predictor.calibration["rows"] == 21
    predictor.save(tmp_path / "p.json")
    again = LatencyPredictor.load(tmp_path / "p.json")
    assert again == predictor
    xs = predict_latency("swiftformer:xs", predictor)
    assert 0.5 < xs < 1.2 and xs < predict_latency("swiftformer:l3", predictor)  # iPhone 14 published: 0.7 ms


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"device": "x", "costs": {"ops": 1.0}, "intercept_ms": 0.1, "units": {"ops": 1}}), "other cost terms"),
    (json.dumps({"device": "x"}), "malformed"),
])
def test_bad_predictor_files(tmp_path, content, message):
    (tmp_path / "p.json").write_text(content)
    with pytest.raises(PredictorError, match=message):
        LatencyPredictor.load(tmp_path / "p.json")


def test_unknown_device():
    with pytest.raises(PredictorError, match="unknown device 'pixel9'; accepted: iphone12, iphone14"):
        load_device("pixel9")


def test_work_vector_has_one_entry_per_cost():
    sample = Sample("swiftformer:xs", 224, 1.0)
    assert work_vector(sample.profile).shape == (len(COSTS),) and np.all(work_vector(sample.profile) >= 0)


@pytest.mark.parametrize("csv_text, message", [
    ("model,latency_ms\nswiftformer:xs,1\n", "missing column(s) resolution"),
    ("name,resolution,latency_ms\nx,224,1\n", "missing column(s) timm_name (or model)"),
    ("timm_name,resolution,latency_ms\nresnet18,224,-1\n", ":2: latency_ms must be positive, got '-1'"),
    ("timm_name,resolution,latency_ms\nresnet18,224,fast\n", ":2: latency_ms must be a number, got 'fast'"),
    ("timm_name,resolution,latency_ms\nresnet18,0,1\n", ":2: resolution must be positive"),
    ("timm_name,resolution,latency_ms\nnot_a_timm_model,224,1\n", "unknown timm model 'not_a_timm_model'"),
    ("timm_name,resolution,latency_ms,device\nresnet18,224,1,A\nresnet34,224,2,B\n", "several devices (A, B)"),
    ("timm_name,resolution,latency_ms\n", "no measurement rows"),
])
def test_bad_measurement_files(tmp_path, csv_text, message):
    (tmp_path / "m.csv").write_text(csv_text)
    with pytest.raises((MeasurementError, ValueError)) as info:
        read_measurements(tmp_path / "m.csv")
    assert message in str(info.value)


def test_unbuildable_and_other_batch_rows_are_reported_not_silently_dropped(tmp_path):
    (tmp_path / "m.csv").write_text("model,timm_name,resolution,batch_size,latency_ms\n"
                                    "EdgeViT-XXS,,224,1,1.7\nResNet-18,resnet18,224,1,1.0\n"
                                    "ResNet-18,resnet18,224,8,5.0\nmine,,224,1,2\n")
    data = read_measurements(tmp_path / "m.csv")
    assert [s.model for s in data.samples] == ["timm:resnet18"]
    assert len(data.skipped) == 3 and "batch 8" in data.skipped[1] and "'EdgeViT-XXS'" in data.skipped[0]
