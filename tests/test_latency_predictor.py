import json
from dataclasses import replace

import numpy as np
import pytest

from nas.latency import LatencyPredictor, PredictorError, builtin_devices, calibrate, load_device, predict_latency
from nas.latency.calibration import band_of, cross_validate
from nas.latency.evaluate import evaluate_calibration, scores
from nas.latency.fitting import ModelForm, Rows, fit
from nas.latency.measurements import MeasurementError, Sample, family_of, read_measurements
from nas.latency.predictor import TERMS, work_vector

MODELS = ["swiftformer:xs", "swiftformer:s", "timm:mobilenetv2_050", "timm:resnet18", "timm:efficientnet_b0",
          "timm:deit_tiny_patch16_224", "timm:mobilevitv2_050", "timm:repvit_m0_9"]


def synthetic_latency(sample: Sample) -> float:
    """A device whose true costs are known: 0.3 ms + 0.4 ms/GMAC + 0.5 ms per 1e8 depthwise MACs extra."""
    f = sample.profile.features
    return 0.3 + 0.4 * sample.profile.macs / 1e9 + 0.5 * f["dwconv_macs"] / 1e8


def synthetic_samples(device: str = "synthetic") -> list[Sample]:
    return [Sample(m, 160, synthetic_latency(Sample(m, 160, 1.0)), device) for m in MODELS]


def test_a_fit_recovers_a_device_with_known_costs():
    rows = Rows.of(synthetic_samples())
    fitted = fit(rows, ModelForm("compute", 0.0, "squared"))
    mape, within, tau = scores(fitted.predict(rows), rows.latency_ms)
    assert mape < 0.02 and within == 1.0 and tau > 0.9
    costs, intercept = fitted.of_device("synthetic")
    assert costs["macs"] == pytest.approx(0.4, rel=0.15) and intercept == pytest.approx(0.3, rel=0.1)
    assert all(v >= 0 for v in costs.values())


def test_calibration_lends_structure_from_other_devices():
    """Device B runs everything 1.5x slower than A and was measured on half of A's models: its predictor,
    calibrated jointly, predicts B's other half from A's structure."""
    a = synthetic_samples("A")
    b = [Sample(s.model, s.resolution, 1.5 * s.latency_ms, "B") for s in a[::2]]
    predictor = calibrate(a + b, "B")
    errors = [predictor.predict(s.profile) / (1.5 * s.latency_ms) - 1 for s in a[1::2]]
    assert max(map(abs, errors)) < 0.06, errors
    assert predictor.device == "b" and predictor.calibration["rows"] == 4
    assert predictor.calibration["rows_all_devices"] == 12 and predictor.calibration["form"]["loss"] == "huber"
    assert predictor.band["lower"] <= predictor.band["upper"] and predictor.band["split"].startswith("nested")
    assert predictor.upper_ms(1.0) == pytest.approx(1.0 + predictor.band["upper"])


def test_calibration_takes_the_procedure_of_lower_nested_family_held_out_error():
    """Latency here depends on depthwise work that MACs alone cannot see: a fixed MACs-only form loses to the
    choice among forms on unseen families, whichever order the procedures come in, and both figures are kept."""
    samples = synthetic_samples("A")
    for procedures in ({"macs only": (ModelForm("macs", 0.0, "squared"),), "compute": (ModelForm("compute", 0.0,
                                                                                               "squared"),)},
                       {"compute": (ModelForm("compute", 0.0, "squared"),),
                        "macs only": (ModelForm("macs", 0.0, "squared"),)}):
        predictor = calibrate(samples, "A", procedures)
        info = predictor.calibration
        assert info["procedure"] == "compute" and info["form"]["terms"] == "compute"
        assert set(info["procedures"]) == {"macs only", "compute"}
        assert info["procedures"]["compute"] < info["procedures"]["macs only"]
        assert "fixed" in info["form_chosen_by"]


def test_a_held_out_group_never_influences_its_own_prediction():
    """Nested cross-validation: a family's latencies (and a model's, on every device) reach no fit, and no
    choice of form, that predicts them."""
    samples = synthetic_samples("A") + [Sample(s.model, s.resolution, 2 * s.latency_ms, "B") for s in
                                        synthetic_samples()[:5]]
    poisoned = [replace(s, latency_ms=10 * s.latency_ms) if s.family == "swiftformer" else s for s in samples]
    target = [i for i, s in enumerate(samples) if s.family == "swiftformer"]
    others = [i for i in range(len(samples)) if i not in target]
    for split in ("family", "row"):
        clean, dirty = cross_validate(samples, split), cross_validate(poisoned, split)
        if split == "family":
            assert np.allclose(clean.predicted_ms[target], dirty.predicted_ms[target])
        else:  # each SwiftFormer row (and its twin on device B) held out alone: its sibling is seen
            assert not np.allclose(clean.predicted_ms[target], dirty.predicted_ms[target])
        assert not np.allclose(clean.predicted_ms[others], dirty.predicted_ms[others])  # the others see it


def test_the_band_is_quantiles_of_relative_errors_on_unseen_models():
    band = band_of(np.array([1.0, 1.2, 0.9, 2.0, 1.0]), np.ones(5))
    assert (band["lower"], band["upper"], band["rows"]) == (pytest.approx(-0.06), pytest.approx(0.68), 5)


def test_cross_validation_predicts_held_out_rows_and_families():
    result = evaluate_calibration(synthetic_samples(), "synthetic", ("row", "family"))
    summary = result.summary()
    assert summary["mape"] < 0.10 and summary["family"]["mape"] < 0.10 and summary["rows"] == len(MODELS)
    assert set(summary) >= {"mape", "within_10pct", "kendall_tau", "baseline_mape", "row", "family", "families"}
    assert {f["family"] for f in summary["families"]} == {family_of(m) for m in MODELS}


def test_save_load_and_shipped_devices(tmp_path):
    assert set(builtin_devices()) == {"iphone12", "iphone14"}
    predictor = load_device("iPhone 14")
    assert predictor.calibration["rows"] == 21 and predictor.calibration["form"]["loss"] == "huber"
    assert predictor.band["split"] == "nested leave-one-family-out" and predictor.band["upper"] > 0
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


def test_work_vector_has_one_entry_per_term():
    sample = Sample("swiftformer:xs", 224, 1.0)
    assert work_vector(sample.profile).shape == (len(TERMS),) and np.all(work_vector(sample.profile) >= 0)


@pytest.mark.parametrize("csv_text, message", [
    ("model,latency_ms\nswiftformer:xs,1\n", "missing column(s) resolution"),
    ("name,resolution,latency_ms\nx,224,1\n", "missing column(s) timm_name (or model)"),
    ("timm_name,resolution,latency_ms\nresnet18,224,-1\n", ":2: latency_ms must be positive, got '-1'"),
    ("timm_name,resolution,latency_ms\nresnet18,224,fast\n", ":2: latency_ms must be a number, got 'fast'"),
    ("timm_name,resolution,latency_ms\nresnet18,0,1\n", ":2: resolution must be positive"),
    ("timm_name,resolution,latency_ms\nnot_a_timm_model,224,1\n", "unknown timm model 'not_a_timm_model'"),
    ("timm_name,resolution,latency_ms,device\nresnet18,224,1,A\nresnet34,224,2,B\n", "several devices (A, B)"),
    ("timm_name,resolution,latency_ms\n", "no measurement rows"),
    ("timm_name,resolution,latency_ms,graph\nresnet18,224,1,coreml\n", "unknown graph 'coreml'; accepted: deployed"),
])
def test_bad_measurement_files(tmp_path, csv_text, message):
    (tmp_path / "m.csv").write_text(csv_text)
    with pytest.raises((MeasurementError, ValueError)) as info:
        read_measurements(tmp_path / "m.csv").device_name()  # the device a command is about: the only one
    assert message in str(info.value)


def test_unbuildable_and_other_batch_rows_are_reported_not_silently_dropped(tmp_path):
    (tmp_path / "m.csv").write_text("model,timm_name,resolution,batch_size,latency_ms\n"
                                    "EdgeViT-XXS,,224,1,1.7\nResNet-18,resnet18,224,1,1.0\n"
                                    "ResNet-18,resnet18,224,8,5.0\nmine,,224,1,2\n")
    data = read_measurements(tmp_path / "m.csv")
    assert [s.model for s in data.samples] == ["timm:resnet18"] and data.devices == ["m"]  # named by the file
    assert len(data.skipped) == 3 and "batch 8" in data.skipped[1] and "'EdgeViT-XXS'" in data.skipped[0]


def test_rows_rated_unreliable_by_their_source_are_reported_and_skipped(tmp_path):
    (tmp_path / "m.csv").write_text("timm_name,device,resolution,latency_ms,trust,notes,family\n"
                                    "resnet18,A,224,1.0,A,,\nmobilevit_xs,A,256,25.8,C,ops fell off the ANE,\n"
                                    "resnet34,B,224,2.0,B,,mine\n")
    data = read_measurements(tmp_path / "m.csv")
    assert [s.model for s in data.samples] == ["timm:resnet18", "timm:resnet34"] and data.devices == ["A", "B"]
    assert "'mobilevit_xs' is rated trust C" in data.skipped[0] and "ops fell off the ANE" in data.skipped[0]
    assert [s.family for s in data.samples] == ["resnet", "mine"]  # the family column wins over the name
    assert data.device_name("a") == "A" and [s.model for s in data.of("B")] == ["timm:resnet34"]
    with pytest.raises(MeasurementError, match="no rows for device 'C'; devices: A, B"):
        data.device_name("C")


@pytest.mark.parametrize("model, family", [
    ("timm:resnet50", "resnet"), ("timm:deit_small_patch16_224", "deit"), ("timm:mobilenetv3_large_100", "mobilenetv3"),
    ("timm:efficientformerv2_s0", "efficientformerv2"), ("timm:efficientformer_l1", "efficientformer"),
    ("timm:tf_efficientnet_b0", "efficientnet"), ("timm:swiftformer_xs", "swiftformer"),
    ("swiftformer:l3", "swiftformer"),
])
def test_families_from_model_names(model, family):
    assert family_of(model) == family
