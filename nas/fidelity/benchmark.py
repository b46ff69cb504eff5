"""A small tabular benchmark of our own space: architectures trained with a strong reference protocol, against
which any cheap scorer (a proxy setting, a supernet, #params) is ranked.

Each protocol and seed is one Optuna study in one journal file, so the benchmark resumes where it stopped (a
killed trial is failed and queued again, finished ones are never redone) and several processes may share it.
Architectures are chosen once, stratified over predicted iPhone 14 latency, and kept in a versioned file; the
results table is exported from the studies.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

import search_spaces
from swiftformer import VARIANTS, SwiftFormerArch, count_macs, count_params

from ..files import StateError, json_lines, why, write_text
from ..data import ImageData
from ..engine import Policy
from ..latency.lut import PHONES, build_table
from ..latency.predictor import resolve_predictor
from ..training import ProxyConfig
from ..training.protocols import CANDIDATES, REFERENCE, Protocol
from ..trials.evaluate import TaskCache, TrainingEvaluator, evaluate_trial
from ..trials.study import (FINAL, Heartbeat, check_precision, make_storage, open_study, recover_interrupted,
                           status_of)

logger = logging.getLogger(__name__)

PROXIES = (
    Protocol("proxy-56px-2ep-4k", ProxyConfig(epochs=2, downscale=4.0, subset=4000)),
    Protocol("proxy-56px-1ep-4k", ProxyConfig(epochs=1, downscale=4.0, subset=4000)),
    Protocol("proxy-40px-2ep-4k", ProxyConfig(epochs=2, downscale=5.6, subset=4000)),
    Protocol("proxy-32px-2ep-4k", ProxyConfig(epochs=2, downscale=7.0, subset=4000)),  # the old default
)
PROTOCOLS = {p.name: p for p in (REFERENCE, *PROXIES)}

# Version 2's pilot (issue 26): candidate references (``nas.training.protocols.CANDIDATES``), each trained on the
# same 12 architectures with 2 seeds, to pick the cheapest whose seed-to-seed Kendall tau reaches 0.8
# (``nas.fidelity.pilot``); the "cpu-" one is sized for a 2-core machine (a longer schedule on a subset of train).
PILOT = (
    Protocol("v1-reference", REFERENCE.config),  # version 1's reference (2 epochs, flips): its ceiling was 0.20
    *(Protocol(name, config) for name, config in CANDIDATES.items()),
)
PILOT_PROTOCOLS = {p.name: p for p in PILOT}
PILOT_SEEDS = (0, 1)


# --------------------------------------------------------------------------------------------- selection
def select_architectures(n_bins: int = 10, per_bin: int = 3, lo_ms: float = 0.5, hi_ms: float = 1.5,
                         num_classes: int = 10, in_chans: int = 3, seed: int = 0,
                         pool: int = 20000) -> list[tuple[str, SwiftFormerArch]]:
    """``n_bins * per_bin`` architectures of the default space, ``per_bin`` in each equal-width bin of predicted
    iPhone 14 latency between ``lo_ms`` and ``hi_ms``; the released variants in that range take a place in
    their bin. Deterministic for a seed."""
    space = search_spaces.load_space("swiftformer")
    space = dataclasses.replace(space, num_classes=num_classes, in_chans=in_chans)
    table = build_table(space, resolve_predictor("iphone14", None))
    width = (hi_ms - lo_ms) / n_bins
    bins: list[list[tuple[str, SwiftFormerArch]]] = [[] for _ in range(n_bins)]
    for name, arch in VARIANTS.items():
        arch = arch.replace(num_classes=num_classes, in_chans=in_chans)
        latency = table.predict(arch)
        if lo_ms <= latency < hi_ms:
            bins[int((latency - lo_ms) / width)].append((name, arch))
    seen = {arch.digest() for b in bins for _, arch in b}
    rng = random.Random(seed)
    for _ in range(pool):
        arch = space.sample(rng)
        latency = table.predict(arch)
        if not lo_ms <= latency < hi_ms or arch.digest() in seen:
            continue
        index = int((latency - lo_ms) / width)
        if len(bins[index]) < per_bin:
            bins[index].append(("", arch))
            seen.add(arch.digest())
        if all(len(b) >= per_bin for b in bins):
            break
    chosen, count = [], 0
    for b in bins:
        for name, arch in b:
            if not name:
                count += 1
                name = f"a{count:02d}"
            chosen.append((name, arch))
    return chosen


def select_version2(supernet_space: "search_spaces.SearchSpace", per_bin: int = 6, supernet_count: int = 20,
                    seed: int = 2) -> list[tuple[str, SwiftFormerArch]]:
    """Version 2's architectures: ``10 * per_bin`` of the default space stratified over predicted iPhone 14
    latency 0.5-1.5 ms (the released variants in range among them, priced by the family's own line), named
    ``a01``...; then ``supernet_count`` uniform draws of the supernet's CIFAR space (``s01``...), so a supernet can
    be scored on architectures of its own space. A fresh seed: version 1's architectures were drawn by a predictor
    since corrected."""
    chosen = select_architectures(per_bin=per_bin, seed=seed)
    seen = {arch.digest() for _, arch in chosen}
    rng = random.Random(seed)
    extra: list[tuple[str, SwiftFormerArch]] = []
    while len(extra) < supernet_count:
        arch = supernet_space.sample(rng)
        if arch.digest() not in seen:
            seen.add(arch.digest())
            extra.append((f"s{len(extra) + 1:02d}", arch))
    return chosen + extra


def save_architectures(path: Path, archs: list[tuple[str, SwiftFormerArch]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps({"name": n, "arch": a.to_dict()}, sort_keys=True) + "\n" for n, a in archs))


def load_architectures(path: Path) -> list[tuple[str, SwiftFormerArch]]:
    way_out = "restore it (git checkout), or move it aside and choose the architectures again"
    rows, cut = json_lines(path, "architecture record", way_out)
    if cut:  # written whole (save_architectures), so a cut line is damage, not a kill
        raise StateError(f"{path}: its last line is cut; {way_out}")
    try:
        return [(r["name"], SwiftFormerArch.from_dict(r["arch"])) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{path} holds a record that is not an architecture ({why(exc)}); {way_out}") from None


# ---------------------------------------------------------------------------------------------- running
def study_name(protocol: str, seed: int) -> str:
    return f"{protocol}-seed{seed}"


def run_benchmark(archs: list[tuple[str, SwiftFormerArch]], data: ImageData, storage_path: Path,
                  work: Iterable[tuple[str, int, str]], device: str = "cpu",
                  deadline: float | None = None, log: Callable[[str], None] = print,
                  protocols: Mapping[str, Protocol] | None = None, max_tasks: int = 4) -> int:
    """Train every (protocol, seed, architecture name) of ``work`` not finished yet (protocols named in
    ``protocols``: version 1's or the pilot's); returns how many ran. A run that diverges or runs out of memory is
    recorded as such and the work goes on (a diverged one is final; one out of memory is tried again on resume).

    ``work`` is an ordered list, so a partial run leaves the most useful results (every protocol of the first
    architectures) rather than one protocol of all. ``max_tasks``: prepared training sets kept at once (see
    ``TaskCache``: the reference's is 1.7 GB on CIFAR-10).
    """
    protocols = PROTOCOLS if protocols is None else protocols
    storage = make_storage(str(storage_path))
    by_name = dict(archs)
    space = search_spaces.load_space("swiftformer")
    space = dataclasses.replace(space, num_classes=data.num_classes, in_chans=data.channels)
    predictors = {phone: build_table(space, resolve_predictor(phone, None)) for phone in PHONES}
    tasks = TaskCache(data, device, max_tasks)
    trainings = {name: TrainingEvaluator(tasks, protocol) for name, protocol in protocols.items()}
    studies: dict[str, optuna.Study] = {}
    work = list(work)
    ran = 0
    for position, (protocol_name, seed, name) in enumerate(work, start=1):
        if deadline and time.time() > deadline:
            log("deadline reached; run the same command again to continue")
            break
        protocol = protocols[protocol_name]
        key = study_name(protocol_name, seed)
        if key not in studies:
            studies[key] = open_study(key, storage, {**protocol.config.to_dict(), "seed": seed}, lambda changed: (
                ValueError(f"study {key} in {storage_path} was trained with another protocol ({changed} differ); "
                           "use another journal")), key="protocol")
            recover_interrupted(studies[key])  # a trial killed moments ago gets its grace period
            check_precision(studies[key], Policy.for_device(device).precision, device,
                            lambda detail: ValueError(f"study {key} in {storage_path} {detail}: train on the same "
                                                      "kind of device, or use another journal"))
        study = studies[key]
        trials = study.get_trials(deepcopy=False)
        if any(t.user_attrs.get("name") == name and (t.state == TrialState.RUNNING or status_of(t) in FINAL)
               for t in trials):
            continue  # finished, or being trained by another worker (a dead one's trial is recovered and queued)
        if not any(t.user_attrs.get("name") == name and t.state == TrialState.WAITING for t in trials):
            study.enqueue_trial(space.trial_params(by_name[name]), user_attrs={"name": name})
        trial = study.ask()
        arch = space.suggest(trial)
        name = trial.user_attrs["name"]
        for attr, value in {"arch": arch.to_dict(), "summary": arch.summary(), "digest": arch.digest(),
                            "params": count_params(arch), "macs": count_macs(arch),
                            **{f"latency_{p}_ms": predictors[p].predict(arch) for p in PHONES}}.items():
            trial.set_user_attr(attr, value)
        epochs = protocol.config.epochs  # a reference training runs for many minutes: a line per epoch
        with Heartbeat(study, trial):
            status, finished = evaluate_trial(
                study, trial, trainings[protocol_name], arch, seed,
                lambda epoch, acc: log(f"  {key} {name}: epoch {epoch}/{epochs}, val {acc:.4f}"))
        ran += 1
        if status != "trained":
            log(f"[{position}/{len(work)}] {key} {name}: {status} ({finished.user_attrs.get('fail_reason', '')})")
            continue
        a = finished.user_attrs
        test = f", test {a.get('test_accuracy', float('nan')):.4f}" if protocol.reads_test else ""
        log(f"[{position}/{len(work)}] {key} {name}: val {finished.values[0]:.4f}{test} ({a['seconds']:.0f} s, "
            f"{a['resolution']} px) {arch.summary()}")
    return ran


def worker_process(payload: dict, worker: int, start=None) -> None:
    """Entry point of one of ``run_workers``'s processes: its share of the work (every ``workers``-th item)."""
    from ..data import load_data
    from ..trials.parallel import run_at_start_line

    torch.set_num_threads(payload["threads"])

    def prepare():
        return load_data(payload["data"])

    def loop(data: ImageData) -> None:
        work = [tuple(item) for item in payload["work"]][worker:: payload["workers"]]
        archs = [(n, SwiftFormerArch.from_dict(a)) for n, a in payload["archs"]]
        protocols = PILOT_PROTOCOLS if payload.get("pilot") else PROTOCOLS
        run_benchmark(archs, data, Path(payload["journal"]), work, payload["device"], payload["deadline"],
                      lambda text: log_stderr(f"[w{worker}] {text}"), protocols)

    run_at_start_line(worker, start, prepare, loop)


def run_workers(archs: list[tuple[str, SwiftFormerArch]], data_spec: str, storage_path: Path,
                work: Iterable[tuple[str, int, str]], workers: int, device: str = "cpu",
                deadline: float | None = None, threads: int = 1, pilot: bool = False) -> None:
    """``run_benchmark`` in ``workers`` processes sharing the journal, each training its share of ``work`` at
    once on the same device (on a GPU several small trainings together use it far better than one; each process
    holds its own copy of the data there)."""
    from ..trials.parallel import run_processes

    payload = {"archs": [(n, a.to_dict()) for n, a in archs], "data": data_spec, "journal": str(storage_path),
               "work": [list(w) for w in work], "workers": workers, "device": device, "deadline": deadline,
               "threads": threads, "pilot": pilot}
    run_processes(worker_process, payload, workers)


def run_precision(attrs: Mapping[str, Any]) -> str:
    """A run's precision as recorded, or for a run recorded before precision was: fp32 on a CPU, else unknown."""
    return attrs.get("precision") or ("fp32" if str(attrs.get("device", "")).startswith("cpu") else "unknown")


def results_frame(storage_path: Path) -> pd.DataFrame:
    """One row per finished (protocol, seed, architecture), with the columns of the versioned CSV."""
    storage = make_storage(str(storage_path))
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        protocol, _, seed = summary.study_name.rpartition("-seed")
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            a = t.user_attrs
            rows.append({"protocol": protocol, "seed": int(seed), "name": a["name"], "architecture": a["summary"],
                         "val_accuracy": t.values[0], "test_accuracy": a.get("test_accuracy"),
                         "params": a["params"], "macs": a["macs"], "latency_iphone14_ms": a["latency_iphone14_ms"],
                         "latency_iphone12_ms": a["latency_iphone12_ms"], "resolution": a["resolution"],
                         "seconds": a["seconds"], "cpu_seconds": a["cpu_seconds"], "threads": a["threads"],
                         "device": a["device"], "digest": a["digest"],
                         "arch_json": json.dumps(a["arch"], sort_keys=True),
                         "train_loss_sum": a.get("train_loss_sum"), "precision": run_precision(a)})
    columns = ["protocol", "seed", "name", "architecture", "val_accuracy", "test_accuracy", "params", "macs",
               "latency_iphone14_ms", "latency_iphone12_ms", "resolution", "seconds", "cpu_seconds", "threads",
               "device", "digest", "arch_json", "train_loss_sum"]  # version 1's columns, then the loss sum
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["protocol", "seed", "name"]).reset_index(drop=True)


def default_work(archs: list[tuple[str, SwiftFormerArch]], second_seed_every: int = 3,
                 protocols: Iterable[str] | None = None) -> list[tuple[str, int, str]]:
    """Per architecture (in a fixed shuffled order that spreads partial results over the latency range): the
    reference protocol, then every proxy, then on every ``second_seed_every``-th the reference's second seed, so
    that a partial run already measures the reference's own noise next to the proxies' ranking."""
    names = [n for n, _ in archs]
    random.Random(0).shuffle(names)
    wanted = list(protocols) if protocols else list(PROTOCOLS)
    work = []
    for i, name in enumerate(names):
        work += [(p, 0, name) for p in wanted]
        if REFERENCE.name in wanted and i % second_seed_every == 0:
            work.append((REFERENCE.name, 1, name))
    return work


def log_stderr(text: str) -> None:
    logger.info(text)


def pilot_architectures(archs: list[tuple[str, SwiftFormerArch]], count: int = 12) -> list[tuple[str, SwiftFormerArch]]:
    """``count`` of version 1's architectures evenly spread over their order (its latency bins, fastest first), so
    the pilot spans the benchmark's latency range and its results sit beside version 1's for the same ones."""
    if not 2 <= count <= len(archs):
        raise ValueError(f"pilot of {count} architectures: accepted 2 to {len(archs)}")
    step = (len(archs) - 1) / (count - 1)
    return [archs[round(i * step)] for i in range(count)]


def pilot_work(archs: list[tuple[str, SwiftFormerArch]], protocols: Iterable[str],
               seeds: Iterable[int] = PILOT_SEEDS) -> list[tuple[str, int, str]]:
    """Per protocol, per architecture, every seed before the next architecture: a partial run already holds
    complete seed pairs (the pilot's measure)."""
    return [(p, seed, name) for p in protocols for name, _ in archs for seed in seeds]
