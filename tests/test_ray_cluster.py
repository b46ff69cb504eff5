"""The search on a multi-node Ray cluster (a head and two worker nodes on this machine, the way Ray tests itself),
with the study in PostgreSQL or in a journal file on a shared path, under the faults a cluster has: a worker node
that dies in the middle of a trial and a driver that is killed and started again. Nothing may be lost (the
count asked, every result recorded) and nothing evaluated twice (a log written outside the study)."""
from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import optuna
import pytest

from nas.trials.study import counted, status_of
from swiftnas_testing.postgres_server import why_unavailable
from test_distributed import check_exactly_once, environment, finish, load, search, wait_for

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head that schedules nothing and two worker nodes of 2 CPUs; their workers inherit this environment
    (the test helpers on PYTHONPATH, the evaluation log), as a cluster's nodes share an image."""
    from ray.cluster_utils import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    log = tmp_path_factory.mktemp("cluster") / "evaluated.log"
    saved = dict(os.environ)
    os.environ.update(environment(log, 2.5))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    os.environ.clear()
    os.environ.update(saved)
    yield cluster, nodes, log
    cluster.shutdown()


def ray_search(out, storage, trials, priced, address):
    return search(out, storage, trials, priced, "--backend", "ray", "--ray-address", address, "--workers", "4",
                  "--cpus-per-trial", "1")


def node_of(trial: optuna.trial.FrozenTrial) -> str | None:
    worker = trial.user_attrs.get("worker", "")
    return worker.split("@", 1)[1] if "@" in worker else None


def kill_node(cluster, nodes, trial: optuna.trial.FrozenTrial) -> None:
    """As when a machine dies: its raylet and the worker process evaluating ``trial``, at once."""
    node = next(n for n in nodes if n.node_id.startswith(node_of(trial)))
    os.kill(int(trial.user_attrs["process"].rsplit(":", 1)[1]), signal.SIGKILL)
    cluster.remove_node(node, allow_graceful=False)
    nodes.remove(node)


def test_trials_spread_over_nodes_and_a_killed_node_loses_nothing(cluster, postgres, priced, tmp_path):
    ray_cluster, nodes, log = cluster
    url = postgres.create_database("nodes")
    log.write_text("")
    process = subprocess.Popen(ray_search(tmp_path / "run", url, 4, priced, ray_cluster.address),
                               env=environment(log, 2.5), stderr=subprocess.PIPE, text=True)

    def mid_trial(trials):
        return counted(trials) >= 1 and any(
            t.state == optuna.trial.TrialState.RUNNING and node_of(t) and "process" in t.user_attrs
            and "reference" not in t.user_attrs for t in trials)

    wait_for(url, mid_trial, timeout=300)
    victim = next(t for t in load(url) if t.state == optuna.trial.TrialState.RUNNING and node_of(t)
                  and "process" in t.user_attrs and "reference" not in t.user_attrs)
    kill_node(ray_cluster, nodes, victim)
    code, err = finish(process, timeout=600)
    assert code == 0, err[-3000:]
    records = check_exactly_once(url, log, 4)
    killed = next(t for t in records if t.number == victim.number)
    assert status_of(killed) == "interrupted"
    retries = [t for t in records if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and node_of(retries[0]) != node_of(victim)
    retry = retries[0]
    assert status_of(retry) in ("trained", "duplicate", "surplus")
    if status_of(retry) == "surplus":
        # the retry is queued just after its trial is failed: a worker that asked a new trial before it took the
        # place first. Legitimate only if trials before it filled every place (a new trial numbered above a queued
        # retry leaves it the place: test_search_loop's retry test injects that order, which once counted 5 of 4).
        assert counted([t for t in records if t.number < retry.number]) == 4
    assert len({node_of(t) for t in records if node_of(t)}) >= 2  # trials ran on both worker nodes


def test_a_killed_driver_resumes_on_a_journal_on_a_shared_path(cluster, priced, tmp_path):
    ray_cluster, nodes, log = cluster
    if not nodes:
        pytest.skip("no worker node left")
    journal = tmp_path / "shared" / "study.journal"  # every node of this cluster sees this folder
    log.write_text("")
    command = ray_search(tmp_path / "run", str(journal), 4, priced, ray_cluster.address)
    process = subprocess.Popen(command, env=environment(log, 2.5), stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for(str(journal), lambda trials: counted(trials) >= 1 and any(
        t.state == optuna.trial.TrialState.RUNNING and "reference" not in t.user_attrs for t in trials), timeout=300)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and anything it started locally
    process.wait()
    code, err = finish(subprocess.Popen(command, env=environment(log, 2.5), stderr=subprocess.PIPE, text=True),
                       timeout=600)
    assert code == 0, err[-3000:]
    records = check_exactly_once(str(journal), log, 4)
    interrupted = [t for t in records if status_of(t) == "interrupted"]
    assert interrupted and all(any(r.system_attrs.get("failed_trial") == t.number for r in records)
                               for t in interrupted)
    assert Counter(t.user_attrs["digest"] for t in records if status_of(t) == "trained").most_common(1)[0][1] == 1
