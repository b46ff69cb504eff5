"""The search on a real PostgreSQL server, under faults: several processes on one study, a database restart, a
database that does not come back. Searches run as `nas search` processes (as users run them) with an evaluator
that scores without training, so each test checks the bookkeeping in seconds: nothing lost (the count asked,
every evaluation recorded) and nothing evaluated twice (a log written outside the study)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from nas.trials.storage import make_storage
from nas.trials.study import counted, status_of
from swiftnas_testing.postgres_server import why_unavailable

pytestmark = pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))

ROOT = Path(__file__).resolve().parents[1]
EVALUATOR = "callable:swiftnas_testing.evaluators:logged"
STUDY = "shared"


def environment(log: Path, seconds: float) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "NAS_EVALUATION_LOG": str(log), "NAS_EVALUATION_SECONDS": str(seconds), "OMP_NUM_THREADS": "1"}


def search(out: Path, url: str, trials: int, priced: Path, *extra: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(priced / "latency_table.json", out / "latency_table.json")
    return [sys.executable, "-m", "nas", "search", "--latency-budget", "1ms", "--trials", str(trials),
            "--sampler", "random", "--evaluator", EVALUATOR, "--storage", url, "--study", STUDY, "--out", str(out),
            *extra]


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def load(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, from a PostgreSQL URL or a journal file."""
    return optuna.load_study(study_name=STUDY, storage=make_storage(url, patience_s=10)).get_trials(deepcopy=False)


def wait_for(url: str, predicate, timeout: float = 120) -> None:
    started = time.time()
    while time.time() - started < timeout:
        try:
            if predicate(load(url)):
                return
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout} s")


def check_exactly_once(url: str, log: Path, trials: int) -> list[optuna.trial.FrozenTrial]:
    """The study has the count asked; every recorded result was evaluated to the end exactly once, and no
    architecture was evaluated to the end twice, except by a process that died before it could record the result
    (its trial is "interrupted", and its architecture rightly evaluated again)."""
    records = load(url)
    assert counted(records) == trials
    died = {(t.user_attrs["digest"], t.user_attrs["process"].rsplit(":", 1)[1]) for t in records
            if status_of(t) == "interrupted" and "process" in t.user_attrs}
    lines = [tuple(line.split()) for line in log.read_text().splitlines()]
    evaluated = Counter(digest for digest, pid in lines if (digest, pid) not in died)
    assert not evaluated or max(evaluated.values()) == 1, [d for d, n in evaluated.items() if n > 1]
    done = [t for t in records if status_of(t) in ("trained", "reference")]
    assert sorted(t.user_attrs["digest"] for t in done) == sorted(evaluated)
    return records


def test_two_searches_share_one_study(postgres, priced, tmp_path):
    """Two independent `nas search` processes (as on two machines): their trials add up to the count asked,
    both contribute, and an architecture one of them is evaluating is never evaluated by the other. (The one that
    arrives second finds trials running and first gives them 10 s to show they are alive: the work outlasts that.)"""
    url = postgres.create_database("two")
    log = tmp_path / "evaluated.log"
    env = environment(log, 1.5)
    processes = [subprocess.Popen(search(tmp_path / f"run{i}", url, 12, priced), env=env, stderr=subprocess.PIPE,
                                  text=True) for i in range(2)]
    results = [finish(p) for p in processes]
    assert all(code == 0 for code, _ in results), [err[-1500:] for _, err in results]
    records = check_exactly_once(url, log, 12)
    per_process = Counter(t.user_attrs["process"] for t in records if status_of(t) == "trained")
    assert len(per_process) == 2 and sum(per_process.values()) == 12, per_process


def test_the_search_rides_out_a_database_restart(postgres, priced, tmp_path):
    """Two workers of one search on PostgreSQL; the server is stopped mid-search and started 5 s later."""
    url = postgres.create_database("restart")
    log = tmp_path / "evaluated.log"
    process = subprocess.Popen(search(tmp_path / "run", url, 8, priced, "--workers", "2"),
                               env=environment(log, 0.5), stderr=subprocess.PIPE, text=True)
    wait_for(url, lambda trials: counted(trials) >= 2)
    postgres.stop("fast")  # every connection is cut
    time.sleep(5)
    postgres.start()
    code, err = finish(process)
    assert code == 0, err[-6000:]
    assert "unreachable" in err and "answered again" in err
    records = check_exactly_once(url, log, 8)
    assert {t.user_attrs["worker"] for t in records if status_of(t) == "trained"} == {"w0", "w1"}  # both workers
    assert (tmp_path / "run" / "trials.csv").exists()


def test_a_database_that_does_not_come_back_stops_the_search_with_one_line(postgres, priced, tmp_path):
    url = postgres.create_database("gone")
    log = tmp_path / "evaluated.log"
    process = subprocess.Popen(search(tmp_path / "run", url, 50, priced, "--storage-patience", "4"),
                               env=environment(log, 0.5), stderr=subprocess.PIPE, text=True)
    wait_for(url, lambda trials: counted(trials) >= 2)
    postgres.stop("immediate")
    try:
        started = time.time()
        code, err = finish(process, timeout=120)
        assert time.time() - started < 60
    finally:
        postgres.start()
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("nas: error: the study's database") and "did not answer" in last, err[-1500:]
    assert "Traceback" not in err
