"""What a plan trains, step by step, and what of it is done: read from the plan's folder, so any machine that has
the folder knows where the work stands.

Each step is one ``nas`` command that resumes itself when run again (a search, a supernet training, an ablation,
one retraining); a step is done when its output says so (``results.json``, ``supernet.pth``) or when its command
ended on its own before its time ran out (a marker in ``done/``, with the command, machine and date). Later steps
are known only once earlier ones are done (a search's winner is retrained after the search), so the runner asks
for the next phase again after each one.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
import shutil
from typing import Any, Callable, Iterator

from swiftformer import VARIANTS, SwiftFormerArch

from ..files import read_json, write_text
from .plan import Plan


@dataclass(frozen=True)
class Step:
    """One resumable ``nas`` command. ``limit`` says how it is given the chunk's remaining time: ``timeout`` (stops
    starting work after it: searches, ablations) or ``minutes`` (stops inside the work and checkpoints)."""

    key: str  # unique in the plan, a path-like name: "search/1ms", "retrain/xs/seed0"
    argv: tuple[str, ...]  # after ``python -m nas``
    limit: str
    output: str = ""  # a file whose existence means done (relative to the plan's root); else the marker decides


@dataclass
class Phase:
    """Steps that may run together (retrainings), or one step; ``blocked`` says why a verdict waits."""

    verdict: str
    steps: list[Step] = field(default_factory=list)
    parallel: bool = False
    needs_minutes: float | None = None  # run only in a chunk with this long left (state that cannot travel)
    prepare: Callable[[], None] | None = None  # called before its steps run


def budget_tag(ms: float) -> str:
    return f"{ms:g}ms".replace(".", "p")


REBUILD = "restore it from the plan's committed state (git checkout), or move it aside and run the chunk again"


def marker(root: Path, key: str) -> Path:
    return root / "done" / (key.replace("/", "__") + ".json")


def is_done(root: Path, step: Step) -> bool:
    return (root / step.output).is_file() if step.output else marker(root, step.key).is_file()


# ---------------------------------------------------------------------------------------------- the models
def released_within(plan: Plan, budget_ms: float) -> list[str]:
    """The released variants whose predicted latency on the plan's phone fits ``budget_ms``. They are priced in
    size order and the first over the budget ends the list: each variant has more of every cost term than the one
    before (blocks, widths, MACs), so the family's line prices it higher, and pricing a model means building it."""
    fitting = []
    for name in ("xs", "s", "l1", "l3"):
        if latency_of(VARIANTS[name])[plan.phone] > budget_ms:
            break
        fitting.append(name)
    return fitting


@functools.lru_cache(maxsize=256)
def latency_of(arch: SwiftFormerArch) -> dict[str, float]:
    """Predicted latency on both phones at the architecture's own resolution (the deployed model); profiling
    builds the model, so each architecture is priced once per process."""
    from ..training.outputs import predicted_latencies

    return predicted_latencies(arch)


def _identity(arch: SwiftFormerArch) -> str:
    """The network an architecture builds, whatever its head's classes: two searches may find one network."""
    return arch.replace(num_classes=1000, in_chans=3).digest()


def load_models(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "models.json"
    return read_json(path, "plan's model list", REBUILD) if path.exists() else {}


def add_model(root: Path, name: str, arch: SwiftFormerArch, origin: str, ref: str | None = None) -> str:
    """Record a model to retrain (a released variant, a search's winner, a front member) in ``models.json``; one
    that builds the same network as a model already there is retrained once, under the first name. Returns the
    name whose retrainings stand for it."""
    models = load_models(root)
    if name in models:
        return models[name].get("same_as") or name
    identity = _identity(arch)
    same = next((n for n, m in models.items() if m["identity"] == identity and not m.get("same_as")), None)
    if ref is None:
        (root / "models").mkdir(parents=True, exist_ok=True)
        arch.save(root / "models" / f"{name}.json")
        ref = f"models/{name}.json"
    root.mkdir(parents=True, exist_ok=True)
    models[name] = {"ref": ref, "origin": origin, "summary": arch.summary(), "identity": identity,
                    "latency_ms": latency_of(arch), "same_as": same}
    write_text(root / "models.json", json.dumps(models, indent=2) + "\n")
    return same or name


def released(root: Path, name: str) -> str:
    return add_model(root, name, VARIANTS[name], f"released SwiftFormer-{name.upper()}", f"swiftformer:{name}")


def search_winner(root: Path, folder: str, name: str, origin: str) -> str | None:
    """The winner of a finished search (its ``best_arch.json``) as a model; None if it found none in budget."""
    best = root / folder / "best_arch.json"
    if not best.is_file():
        return None
    return add_model(root, name, SwiftFormerArch.load(best), origin)


def front_members(root: Path, folder: str, count: int) -> list[str]:
    """Up to ``count`` members of a Pareto search's front, evenly spread over its latency, as models."""
    path = root / folder / "pareto.json"
    front = sorted(read_json(path, "Pareto front", REBUILD) if path.exists() else [], key=lambda m: m["latency_ms"])
    if len(front) > count:
        picks = sorted({round(i * (len(front) - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]
        front = [front[i] for i in picks]
    names = []
    for i, member in enumerate(front, 1):
        origin = (f"front member {i} of {len(front)} (trial #{member['number']}, proxy val "
                  f"{member['val_accuracy']:.3f})")
        names.append(add_model(root, f"front-{i}", SwiftFormerArch.from_dict(member["arch"]), origin))
    return names


# ---------------------------------------------------------------------------------------------- the commands
def search_step(plan: Plan, key: str, folder: str, budget_ms: float, trials: int, extra: tuple[str, ...],
                train_device: str) -> Step:
    argv = ("search", "--latency-budget", f"{budget_ms:g}ms", "--device", plan.phone, "--data", plan.data,
            "--trials", str(trials), "--workers", str(plan.workers), "--train-device", train_device,
            "--out", str(Path(plan.root) / folder), *extra)
    return Step(key, argv, "timeout")


def retrain_step(plan: Plan, root: Path, name: str, seed: int, train_device: str) -> Step:
    ref = load_models(root)[name]["ref"]
    ref = ref if ref.startswith("swiftformer:") else str(Path(plan.root) / ref)
    folder = f"retrain/{name}-seed{seed}"
    argv = ("retrain", ref, "--data", plan.data, "--recipe", plan.recipe, "--seed", str(seed), "--export", "none",
            "--train-device", train_device, "--out", str(Path(plan.root) / folder))
    return Step(f"retrain/{name}/seed{seed}", argv, "minutes", output=f"{folder}/results.json")


def retrain_phase(plan: Plan, root: Path, verdict: str, names: list[str], train_device: str) -> Phase:
    """Every model's retrainings, seed-major (seed 0 of every model first), so a partial run holds whole pairs."""
    unique = list(dict.fromkeys(names))
    return Phase(verdict, [retrain_step(plan, root, name, seed, train_device) for seed in range(plan.seeds)
                           for name in unique], parallel=True)


def ablation_step(plan: Plan, what: str, seeds: int, train_device: str) -> Step:
    part = plan.ablation
    argv = ["ablate", what, "--base", part.base, "--data", plan.data, "--protocol", part.protocol,
            "--seeds", str(seeds), "--workers", str(plan.workers), "--train-device", train_device,
            "--max-runs", "100000", "--out", str(Path(plan.root) / f"ablation-{what}"), *part.args]
    if what == "type" and "placement" in part.studies:
        argv += ["--reuse", str(Path(plan.root) / "ablation-placement")]
    if what == "type" and part.kinds:
        argv += ["--kinds", part.kinds]
    return Step(f"ablation/{what}/seeds{seeds}", tuple(argv), "timeout")


def ablation_seeds(root: Path, plan: Plan) -> dict[str, Any] | None:
    """The seeds the ablations need, from the noise measured in the first study's ``first_seeds`` runs: the pooled
    SD of every variant's paired difference with the base, and the pairs a paired t-test needs to resolve
    ``resolve`` points at 80 % power with that SD at its 80 % upper bound (``nas.ablation.stats.seeds_needed``),
    within [first_seeds, max_seeds]. Written once to ``noise.json``."""
    from ..ablation.stats import seeds_needed

    path = root / "noise.json"
    if path.exists():
        return read_json(path, "noise record", REBUILD)
    part = plan.ablation
    summary = root / f"ablation-{part.studies[0]}" / "summary.csv"
    if not summary.is_file():
        return None
    import pandas as pd

    table = pd.read_csv(summary)
    sds = table["diff_sd"].dropna()
    sds = sds[table.loc[sds.index, "pairs"] >= 2]
    if sds.empty:
        return None
    pooled = float(math.sqrt((sds ** 2).mean()))
    sd_df = int((table.loc[sds.index, "pairs"] - 1).sum())  # the pooled SD's degrees of freedom
    needed = seeds_needed(part.resolve / 100.0, pooled, sd_df=sd_df)
    seeds = int(min(part.max_seeds, max(part.first_seeds, needed)))
    noise = {"study": part.studies[0], "protocol": part.protocol, "first_seeds": part.first_seeds,
             "variants": int(len(sds)), "pooled_paired_sd_points": round(100 * pooled, 3),
             "resolve_points": part.resolve, "sd_degrees_of_freedom": sd_df, "seeds_needed": needed,
             "max_seeds": part.max_seeds, "seeds": seeds,
             "capped": bool(needed > part.max_seeds)}
    write_text(path, json.dumps(noise, indent=2) + "\n")
    return noise


# ---------------------------------------------------------------------------------------------- the phases
def phases(plan: Plan, root: Path, verdict: str, train_device: str) -> Iterator[Phase]:
    """The phases of one verdict, each yielded once the ones before it are done (the caller runs it and asks for
    the next); a phase with no steps left is skipped."""
    if verdict == "search":
        yield from _search_phases(plan, root, train_device)
    elif verdict == "ablation":
        yield from _ablation_phases(plan, root, train_device)
    else:
        yield from _family_phases(plan, root, train_device)


def _pending(phase: Phase, root: Path) -> Iterator[Phase]:
    phase.steps = [s for s in phase.steps if not is_done(root, s)]
    if phase.steps:
        yield phase


def _search_phases(plan: Plan, root: Path, train_device: str) -> Iterator[Phase]:
    """The default searches, their winners' retrainings (so the proxy's verdict comes first), the supernet, the
    one-shot searches, and theirs."""
    part = plan.search
    for budget in part.budgets:
        tag = budget_tag(budget)
        yield from _pending(Phase("search", [search_step(plan, f"search/{tag}", f"search-{tag}", budget, part.trials,
                                                         part.args, train_device)]), root)
    yield from _pending(retrain_phase(plan, root, "search", search_models(plan, root, ("search",)), train_device),
                        root)
    supernet = Step("supernet", ("supernet", "train", "--space", part.oneshot_space, "--data", plan.data,
                                 "--epochs", str(part.supernet_epochs), "--train-device", train_device,
                                 "--out", str(Path(plan.root) / "supernet"), *part.supernet_args),
                    "minutes", output="supernet/supernet.pth")
    oneshot = [search_step(plan, f"oneshot/{budget_tag(b)}", f"oneshot-{budget_tag(b)}", b, part.oneshot_trials,
                           ("--space", part.oneshot_space, "--evaluator", f"supernet:{Path(plan.root) / 'supernet'}"),
                           train_device) for b in part.budgets]
    if not all(is_done(root, step) for step in oneshot):  # (a finished one-shot search needs no supernet)
        yield from _pending(Phase("search", [supernet, *oneshot], needs_minutes=part.oneshot_minutes,
                                  prepare=lambda: _fresh_supernet(root)), root)
    yield from _pending(retrain_phase(plan, root, "search", search_models(plan, root), train_device), root)


def _fresh_supernet(root: Path) -> None:
    """Before the one-shot phase runs on a machine without the supernet's weights (they do not travel), clear
    what a chunk elsewhere left of it: an unfinished supernet and one-shot studies scored by weights now gone."""
    if (root / "supernet" / "supernet.pth").is_file() or (root / "supernet" / "last.pth").is_file():
        return
    stale = [folder for folder in root.glob("oneshot-*")
             if not marker(root, folder.name.replace("-", "/", 1)).is_file()]
    for folder in [root / "supernet", *stale]:
        if folder.is_dir():
            shutil.rmtree(folder)


def search_models(plan: Plan, root: Path, kinds: tuple[str, ...] = ("search", "oneshot")) -> list[str]:
    """Verdict 1's models: each finished search's winner and the released variants within each budget."""
    names = []
    for budget in plan.search.budgets:
        tag = budget_tag(budget)
        names += [released(root, name) for name in released_within(plan, budget)]  # first: a winner that is one
        for kind in kinds:                                                       # is retrained under its name
            label = "default search" if kind == "search" else "one-shot search"
            winner = search_winner(root, f"{kind}-{tag}", f"{kind}-{tag}", f"the {label}'s winner at {budget:g} ms")
            if winner:
                names.append(winner)
    return names


def _ablation_phases(plan: Plan, root: Path, train_device: str) -> Iterator[Phase]:
    part = plan.ablation
    first = part.studies[0]
    yield from _pending(Phase("ablation", [ablation_step(plan, first, part.first_seeds, train_device)]), root)
    noise = ablation_seeds(root, plan)
    if noise is None:
        return
    for what in part.studies:
        yield from _pending(Phase("ablation", [ablation_step(plan, what, noise["seeds"], train_device)]), root)


def _family_phases(plan: Plan, root: Path, train_device: str) -> Iterator[Phase]:
    part = plan.family
    tag = budget_tag(part.budget)
    pareto = search_step(plan, f"pareto/{tag}", f"pareto-{tag}", part.budget, part.trials,
                         ("--objective", "pareto", "--sampler", "nsga2", *plan.search.args), train_device)
    yield from _pending(Phase("family", [pareto]), root)
    yield from _pending(retrain_phase(plan, root, "family", family_models(plan, root), train_device), root)


def family_models(plan: Plan, root: Path) -> list[str]:
    """Verdict 3's models: the Pareto search's front (up to ``front`` members) and the released references."""
    references = [released(root, name) for name in plan.family.references]
    return front_members(root, f"pareto-{budget_tag(plan.family.budget)}", plan.family.front) + references
