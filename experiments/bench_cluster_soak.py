"""Soak: thousands of trials through a PostgreSQL study on a multi-node Ray cluster, with an evaluator that
does not train, so that what is measured is the search's bookkeeping: trials per second, trials lost or
evaluated twice (target 0 for both), and the database's size.

    .venv/bin/python experiments/bench_cluster_soak.py [--trials 2000] [--nodes 2] [--cpus-per-node 2] [--minutes 45]

Starts a throwaway PostgreSQL server (tests/swiftnas_testing) and a Ray cluster on this machine (a head that
schedules nothing and --nodes worker nodes), then runs `nas search --backend ray --ray-address ... --storage
postgresql://...` with one worker per CPU. Evaluations are logged outside the study (digest, process) to count
evaluations independently of it. Writes experiments/cluster/soak-<date>.json. Bounded by --minutes (the
search's --timeout); a run cut short reports what it reached.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout first, then the test helpers
OUT = ROOT / "experiments" / "cluster"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="searched trials asked (rejected ones are extra)")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=45.0)
    args = parser.parse_args()

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    import optuna
    from nas.trials.storage import make_storage
    from nas.trials.study import counted, status_of
    from swiftnas_testing.postgres_server import ThrowawayPostgres, why_unavailable

    reason = why_unavailable()
    if reason:
        sys.exit(f"bench_cluster_soak: {reason}")
    work = Path(tempfile.mkdtemp(prefix="nas-soak-"))
    log = work / "evaluated.log"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "NAS_EVALUATION_LOG": str(log),
           "NAS_EVALUATION_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    postgres = ThrowawayPostgres().start()
    url = postgres.create_database("soak")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.cpus_per_node)
    cluster.wait_for_nodes()
    workers = args.nodes * args.cpus_per_node
    command = [sys.executable, "-m", "nas", "search", "--latency-budget", "1ms", "--trials", str(args.trials),
               "--sampler", "random", "--evaluator", "callable:swiftnas_testing.evaluators:logged",
               "--storage", url, "--study", "soak", "--out", str(work / "run"), "--backend", "ray",
               "--ray-address", cluster.address, "--workers", str(workers), "--cpus-per-trial", "1",
               "--timeout", f"{args.minutes:g}m"]
    print(f"soak: {args.trials} trials, {args.nodes} nodes x {args.cpus_per_node} CPUs, {workers} workers; "
          f"work in {work}", file=sys.stderr, flush=True)
    started = time.time()
    cpu_before = os.times()
    code = subprocess.run(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL).returncode
    seconds = time.time() - started
    cpu = os.times()
    storage = make_storage(url)
    trials = optuna.load_study(study_name="soak", storage=storage).get_trials(deepcopy=False)
    statuses = Counter(status_of(t) for t in trials)
    evaluations = Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()
    recorded = Counter(t.user_attrs["digest"] for t in trials if status_of(t) in ("trained", "reference"))
    nodes = Counter(t.user_attrs.get("worker", "").partition("@")[2] for t in trials if "@" in t.user_attrs.get(
        "worker", ""))
    result = {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "command": " ".join(sys.argv), "exit_code": code, "wall_seconds": round(seconds, 1),
        "child_cpu_seconds": round((cpu.children_user + cpu.children_system) -
                                   (cpu_before.children_user + cpu_before.children_system), 1),
        "trials_asked": args.trials, "trials_in_study": len(trials), "counted": counted(trials),
        "statuses": dict(statuses), "trials_per_second": round(len(trials) / seconds, 2),
        "counted_per_second": round(counted(trials) / seconds, 2),
        "evaluated_twice": sum(1 for n in evaluations.values() if n > 1),
        "recorded_twice": sum(1 for n in recorded.values() if n > 1),
        "evaluated_not_recorded": len(set(evaluations) - set(recorded)),
        "recorded_not_evaluated": len(set(recorded) - set(evaluations)),
        "still_running": statuses.get("running", 0),
        "database_bytes": postgres.database_bytes("soak"), "trials_per_node": dict(nodes),
        "workers": workers, "nodes": args.nodes,
    }
    cluster.shutdown()
    postgres.remove()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"soak-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written {path}", file=sys.stderr)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
