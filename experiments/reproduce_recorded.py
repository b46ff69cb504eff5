"""Recorded runs trained again on this machine: by the code that recorded them and by the training engine.

    .venv/bin/python experiments/reproduce_recorded.py [--base 0d2eceb] [--threads 2] [--out FILE]
    # writes experiments/engine/reproduce.md

Where this checkout has the jobs' one evaluation of a trial (``nas.trials.evaluate``), its column trains through
it, so a ``--base`` from before that change shows whether the trial path changed any figure.

For a handful of recorded fidelity-benchmark runs (experiments/fidelity/results.csv) and ablation runs
(experiments/ablation/placement-xs-cifar10-reference), each is trained three ways apart: its recorded figures,
the code before the engine (commit ``--base``, checked out into a scratch worktree and imported from there), and
this checkout. Both codes run the same public pieces (``ProxyTask``, ``train_and_evaluate``, the fidelity
``PROTOCOLS``, the ablation's recorded config and ``load_ablation_data``), in a fresh process each, with the same
thread count as the recordings (2).

What to expect: the fidelity benchmark decoded CIFAR-10 at its stored 32 px, as the engine holds it, so there the
two codes must agree exactly; the ablation decoded at 56 px with PIL before the engine (now 32 px, resized in
torch), so its runs follow another trajectory and can agree only within the seed noise it recorded. Whether
either equals the recording depends on the machine: the same code on another CPU's kernels rounds differently.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARCHIVE = ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"
FIDELITY = [("proxy-56px-2ep-4k", 0, "xs"), ("proxy-56px-2ep-4k", 0, "a01"), ("proxy-56px-2ep-4k", 0, "a02"),
            ("reference", 0, "a02")]
ABLATION = HERE / "ablation/placement-xs-cifar10-reference"
ABLATION_RUNS = [("none", 0)]

# runs in a fresh process of either code (the same names exist in both)
SNIPPET = r"""
import json, sys, time
import swiftformer, torch
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
from nas.data import load_data
from nas.fidelity.benchmark import PROTOCOLS, load_architectures
from nas.training import ProxyTask
from nas.training.protocols import train_and_evaluate
from nas.ablation.run import load_ablation, load_ablation_data
from swiftformer import SwiftFormerArch
from pathlib import Path
import nas
# the jobs' one evaluation of a trial, where this code has it (issue 36); else the protocol's own call (a check of
# the file, not an import: the editable install would find the module in the other checkout)
if (Path(nas.__file__).parent / "trials" / "evaluate.py").is_file():
    from nas.trials.evaluate import TaskCache, TrainingEvaluator, evaluate
else:
    evaluate = None


def train(data, protocol, seed, arch):
    if evaluate is None:
        r = train_and_evaluate(ProxyTask(data, protocol.with_seed(seed).config, "cpu"), arch, protocol.reads_test)
        return [r.val_accuracy, r.test_accuracy]
    outcome = evaluate(TrainingEvaluator(TaskCache(data, "cpu", max_tasks=1), protocol), arch, seed)
    return [outcome.value, outcome.attrs.get("test_accuracy")]


out = []
archs = dict(load_architectures(Path(spec["archs"])))
data = load_data(spec["data"], image_size=32)  # the fidelity benchmark's decode, in both codes
for protocol, seed, name in spec["fidelity"]:
    start = time.perf_counter()
    out.append(train(data, PROTOCOLS[protocol], seed, archs[name]) + [time.perf_counter() - start])
cfg, _ = load_ablation(spec["ablation"])
ablation_data = load_ablation_data(cfg)  # each code's own decode
for arch_json, seed in spec["ablation_runs"]:
    start = time.perf_counter()
    out.append(train(ablation_data, cfg.training_protocol(), seed, SwiftFormerArch.from_dict(json.loads(arch_json)))
               + [time.perf_counter() - start])
print("RESULT " + json.dumps(out))
"""


def run_code(root: Path, spec: dict, cache: Path) -> list[list[float]]:
    env = {**os.environ, "PYTHONPATH": str(root), "NAS_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", SNIPPET, json.dumps(spec)], cwd=root, env=env, text=True,
                          capture_output=True)
    if done.returncode:
        raise SystemExit(f"{root}: {done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="0d2eceb", help="the commit before the engine")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "engine/reproduce.md")
    args = parser.parse_args()
    recorded = pd.read_csv(HERE / "fidelity/results.csv")
    ablation = pd.read_csv(ABLATION / "ablation.csv")
    rows, ablation_runs = [], []
    for protocol, seed, name in FIDELITY:
        r = recorded[(recorded.protocol == protocol) & (recorded.seed == seed) & (recorded.name == name)].iloc[0]
        rows.append({"run": f"fidelity {protocol} seed {seed} {name}", "recorded": (r.val_accuracy, r.test_accuracy)})
    for variant, seed in ABLATION_RUNS:
        r = ablation[(ablation.variant == variant) & (ablation.seed == seed)].iloc[0]
        ablation_runs.append([r.arch_json, seed])
        rows.append({"run": f"ablation placement {variant} seed {seed}", "recorded": (r.val_accuracy,
                                                                                    r.test_accuracy)})
    spec = {"threads": args.threads, "archs": str(HERE / "fidelity/architectures.jsonl"), "data": f"cifar10:{ARCHIVE}",
            "fidelity": FIDELITY, "ablation": str(ABLATION), "ablation_runs": ablation_runs}
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            before = run_code(base, spec, Path(scratch) / "cache-base")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        engine = run_code(ROOT, spec, Path(scratch) / "cache-engine")
    lines = [f"| run | recorded val / test | before the engine ({args.base}) val / test, s | engine val / test, s "
             "| engine = before |", "|---|---|---|---|---|"]

    def fmt(value) -> str:
        return "-" if value is None or value != value else f"{value:.4f}"

    for row, old, new in zip(rows, before, engine):
        same = "yes" if old[:2] == new[:2] else "no"
        lines.append(f"| {row['run']} | {fmt(row['recorded'][0])} / {fmt(row['recorded'][1])} | {fmt(old[0])} / "
                     f"{fmt(old[1])}, {old[2]:.0f} | {fmt(new[0])} / {fmt(new[1])}, {new[2]:.0f} | {same} |")
    text = (f"# Recorded runs trained again: the code before the engine and the engine\n\n"
            f"`.venv/bin/python experiments/reproduce_recorded.py --base {args.base} --threads {args.threads}`, "
            f"2-core VM, CPU, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n" + "\n".join(lines) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
