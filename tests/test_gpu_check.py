"""The GPU check script, dry-run on the CPU at toy sizes: every stage a GPU machine runs (install aside) runs here
with the same commands, the engine benchmark among them, so a lent GPU's few minutes are not spent on a typo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_script_runs_every_stage_on_the_cpu(tiny_imagefolder, tmp_path):
    env = {**os.environ, "CHECK_DATA": f"imagefolder:{tiny_imagefolder}", "OUT": str(tmp_path / "out"),
           "WORK": str(tmp_path / "work"), "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    stages = ["install", "bench", "search", "fidelity", "pilot", "verdicts", "supernet", "oneshot", "torchrun", "onnx"]
    done = subprocess.run(["bash", "experiments/gpu/check.sh", "--dry-run", *stages], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (tmp_path / "out/summary.md").read_text()
    stage_table = summary.split("## bench_engine")[0]
    rows = [line.split("|") for line in stage_table.splitlines() if line.startswith("| ") and "stage" not in line]
    ran = {row[1].strip(): row[2].strip() for row in rows}
    assert list(ran) == stages
    assert all(code == "0" for name, code in ran.items() if name != "install"), summary
    # the verdicts' chunk ran the plan's first step and stopped at its end; its folder came back without weights
    log = (tmp_path / "out/verdicts.log").read_text()
    assert "[search/1ms] $ python -m nas search" in log and "minutes are spent" in log, log[-2000:]
    assert (tmp_path / "out/verdicts-dry.tar.gz").stat().st_size > 0
    assert "vs PyTorch" in (tmp_path / "out/onnx.log").read_text()
    # the benchmark ran its jobs against the bare loop, and its table is in the summary
    bench = json.loads((tmp_path / "out/bench.json").read_text())["rows"]
    assert {"proxy", "retrain64", "bare64_b32", "supernet"} <= set(bench)
    assert all("error" not in row for row in bench.values()), bench
    assert bench["retrain64"]["vs_bare"] > 0 and bench["supernet"]["cifar_epoch_s"] > 0
    assert "| retrain64 |" in summary and "x bare" in summary
