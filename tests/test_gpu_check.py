"""The GPU check script, dry-run on the CPU at toy sizes, so a lent GPU's few minutes are not spent on a typo: the
stages whose commands nothing else runs (the engine benchmark, the fidelity and pilot chunks, a verdicts chunk) run
here; the others (search, supernet, one-shot, torchrun, ONNX) run their same commands in other tests (the verdict
plan's toy run, the retraining and export tests), so here their command lines go through the real parsers only."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


REAL = ["install", "bench", "fidelity", "pilot", "verdicts"]  # run at toy sizes (install is skipped)
PARSED = ["search", "supernet", "oneshot", "torchrun", "onnx"]  # parsed: their commands run in other tests


def dry_run(tmp_path: Path, data: Path, stages: list[str], out: str, **env: str) -> tuple[dict[str, str], str]:
    env = {**os.environ, "CHECK_DATA": f"imagefolder:{data}", "OUT": str(tmp_path / out), "WORK": str(tmp_path / "work"),
           "PY": sys.executable, "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(["bash", "experiments/gpu/check.sh", "--dry-run", *stages], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (tmp_path / out / "summary.md").read_text()
    stage_table = summary.split("## bench_engine")[0]
    rows = [line.split("|") for line in stage_table.splitlines() if line.startswith("| ") and "stage" not in line]
    ran = {row[1].strip(): row[2].strip() for row in rows}
    assert list(ran) == stages and all(code == "0" for name, code in ran.items() if name != "install"), summary
    return ran, summary


@pytest.mark.slow
def test_the_gpu_check_script_runs_every_stage_on_the_cpu(tiny_imagefolder, tmp_path):
    _, summary = dry_run(tmp_path, tiny_imagefolder, REAL, "out")
    # the benchmark ran its jobs against the bare loop, and its table is in the summary
    bench = json.loads((tmp_path / "out/bench.json").read_text())["rows"]
    assert {"proxy", "retrain64", "bare64_b32", "supernet"} <= set(bench)
    assert all("error" not in row for row in bench.values()), bench
    assert bench["retrain64"]["vs_bare"] > 0 and bench["supernet"]["cifar_epoch_s"] > 0
    assert "| retrain64 |" in summary and "x bare" in summary
    # the verdicts' chunk ran the plan's first step and stopped at its end; its folder came back without weights
    log = (tmp_path / "out/verdicts.log").read_text()
    assert "[search/1ms] $ python -m nas search" in log and "minutes are spent" in log, log[-2000:]
    assert (tmp_path / "out/verdicts-dry.tar.gz").stat().st_size > 0
    # the other stages' command lines (the same ones run in other tests) go through the real parsers
    wrapper = f"{sys.executable} -m swiftnas_testing.argcheck"
    dry_run(tmp_path, tiny_imagefolder, PARSED, "parsed", PY=wrapper,
            PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    for stage in PARSED:
        assert "parsed: nas " in (tmp_path / "parsed" / f"{stage}.log").read_text(), stage


def test_a_typo_in_a_parsed_stage_fails_the_check(capsys):
    from swiftnas_testing.argcheck import main

    assert main(["-m", "nas", "search", "--latency-budget", "1ms"]) == 0
    assert main(["-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "nas", "retrain", "swiftformer:xs",
                 "--epochs", "1", "--out", "o"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["-m", "nas", "search", "--latency-budgte", "1ms"])
    assert exit_info.value.code == 2 and "nas search: error:" in capsys.readouterr().err
    assert main(["experiments/bench_engine.py"]) == 2
