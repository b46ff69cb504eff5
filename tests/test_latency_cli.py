import csv
import json
import platform
import subprocess
import sys

import pytest

from nas.cli import main
from swiftnas_testing.cli import run_nas_here


def run_nas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=600)


def test_predict_json(capsys):
    main(["latency", "predict", "--device", "iphone14", "--model", "swiftformer:xs", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "swiftformer:xs" and 0.5 < out["latency_ms"] < 1.2 and out["resolution"] == 224
    assert out["lower_ms"] < out["latency_ms"] < out["upper_ms"]  # the band of an unseen family
    main(["latency", "predict", "--device", "iphone14", "--model", "swiftformer:xs", "--resolution", "160"])
    assert float(capsys.readouterr().out.split()[0]) < out["latency_ms"]


@pytest.mark.slow
def test_measure_append_calibrate_predict_evaluate_round_trip(tmp_path, capsys):
    """A user's flow: measure models on a runtime, calibrate a predictor from the CSV, use and evaluate it."""
    measurements = tmp_path / "mine.csv"
    models = ["swiftformer:xs", "timm:mobilenetv2_050", "timm:resnet18", "timm:efficientnet_b0"]
    for backend, model in zip(["torch-cpu", "onnxruntime-cpu", "torch-cpu", "torch-cpu"], models):
        main(["latency", "measure", "--backend", backend, "--model", model, "--resolution", "96", "--runs", "5",
              "--warmup", "1", "--csv", str(measurements), "--device-name", "this-cpu"])
    rows = list(csv.DictReader(measurements.open()))
    assert len(rows) == 4 and all(float(r["latency_ms"]) > 0 and r["resolution"] == "96" for r in rows)
    assert "median" in capsys.readouterr().out
    main(["latency", "calibrate", "--measurements", str(measurements), "--out", str(tmp_path / "p.json")])
    main(["latency", "predict", "--predictor", str(tmp_path / "p.json"), "--model", "swiftformer:s",
          "--resolution", "96", "--json"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["latency_ms"] > 0
    main(["latency", "evaluate", "--measurements", str(measurements), "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(summary) >= {"mape", "within_10pct", "kendall_tau", "baseline_mape"} and summary["rows"] == 4


def test_evaluate_the_shipped_predictor_on_published_rows(tmp_path, capsys):
    from importlib import resources
    published = resources.files("nas") / "data" / "latency" / "published_iphone.csv"
    rows = [r for r in csv.DictReader(published.open()) if r["device"] == "iPhone 12"][:6]
    path = tmp_path / "subset.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    main(["latency", "evaluate", "--measurements", str(path), "--device", "iphone12"])
    out = capsys.readouterr().out
    assert "predictor iphone12" in out and "MACs-only baseline" in out and "Kendall tau" in out


def test_evaluate_by_family_reports_both_splits_and_each_family(tmp_path, capsys):
    models = ["swiftformer:xs", "swiftformer:s", "timm:mobilenetv2_050", "timm:resnet18", "timm:efficientnet_b0",
              "timm:deit_tiny_patch16_224", "timm:mobilevitv2_050", "timm:repvit_m0_9"]
    path = tmp_path / "two_phones.csv"
    lines = ["model,device,resolution,latency_ms"]
    for i, model in enumerate(models):  # any latencies will do: this checks what is reported, not how well
        lines.append(f"{model},A,160,{0.5 + 0.1 * i + 0.05 * (i % 3)}")
        if i % 2:
            lines.append(f"{model},B,160,{1.0 + 0.2 * i}")
    path.write_text("\n".join(lines) + "\n")
    main(["latency", "evaluate", "--measurements", str(path), "--device-name", "A", "--group", "family"])
    out = capsys.readouterr().out
    assert "A, 8 rows (12 rows of 2 devices used)" in out and "per family" in out
    assert "leave-one-row-out: MAPE" in out and "leave-one-family-out: MAPE" in out and "MACs-only baseline" in out
    assert "procedures, nested leave-one-family-out MAPE: chosen among forms" in out and "calibrate` ships the" in out
    assert all(any(line.startswith(family) for line in out.splitlines())
               for family in ("swiftformer", "mobilenetv2", "resnet", "efficientnet", "deit", "mobilevitv2", "repvit"))
    main(["latency", "evaluate", "--measurements", str(path), "--device-name", "A", "--group", "family", "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["family"]["mape"] > 0 and summary["row"]["mape"] == summary["mape"]
    assert summary["procedures"]["chosen among forms"] == pytest.approx(summary["family"]["mape"], abs=1e-4)
    assert set(summary["procedures"]) == {"chosen among forms", "form shipped before"}
    assert [f["family"] for f in summary["families"]][0] == "swiftformer" and summary["families"][0]["rows"] == 2
    with pytest.raises(SystemExit) as info:
        main(["latency", "evaluate", "--measurements", str(path), "--group", "family"])
    assert info.value.code == 2 and "several devices (A, B); choose one with --device-name" in capsys.readouterr().err


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the coreml backend works")
def test_coreml_backend_says_it_needs_macos():
    result = run_nas("latency", "measure", "--backend", "coreml", "--model", "swiftformer:xs")
    assert result.returncode == 2 and "needs macOS" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["latency", "predict", "--device", "pixel", "--model", "swiftformer:xs"], "unknown device 'pixel'"),
    (["latency", "predict", "--device", "iphone14", "--model", "timm:nope"], "unknown timm model 'nope'"),
    (["latency", "predict", "--predictor", "missing.json", "--model", "swiftformer:xs"], "cannot read predictor"),
    (["latency", "evaluate", "--measurements", "missing.csv"], "cannot read measurements 'missing.csv'"),
    (["latency", "evaluate", "--measurements", "x.csv", "--device", "iphone14", "--group", "family"],
     "--group cross-validates calibration; it does not apply to a given --device or --predictor"),
    (["latency", "lut", "--space", "nope", "--device", "iphone14", "--out", "x.json"], "unknown space 'nope'"),
    (["space", "show", "nope.yaml"], "space file 'nope.yaml' does not exist"),
    (["space", "sample", "-n", "0"], "expected a positive integer"),
])
def test_bad_input_is_one_line(args, message, capsys):
    result = run_nas_here(capsys, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_space_show_and_sample(capsys):
    main(["space", "show"])
    assert "457,228,800 architectures" in capsys.readouterr().out
    main(["space", "sample", "swiftformer", "-n", "3", "--seed", "4"])
    first = capsys.readouterr().out.splitlines()
    main(["space", "sample", "-n", "3", "--seed", "4"])
    assert capsys.readouterr().out.splitlines() == first and len(first) == 3
    assert all(json.loads(line)["stages"] for line in first)


def test_lut_command(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nstages:\n  - {depth: [1, 2], width: [16, 32]}\n  - {depth: [1], width: [48]}\n")
    main(["latency", "lut", "--space", str(space), "--device", "iphone12", "--out", str(tmp_path / "t.json")])
    assert "parts of space s priced for iphone12" in capsys.readouterr().out
