"""What every worker of a search needs, built once per process: predictor, space, latency table, data, proxy,
and the supernet scorer when ``--evaluator supernet:DIR`` replaces proxy training, or the user's function when
``--evaluator callable:MODULE:FUNCTION`` does, or a benchmark's table when ``--data nb201:<dataset>`` does (then
there is no data to load and nothing to train)."""
from __future__ import annotations

import dataclasses
import importlib
import logging
import math
from pathlib import Path
from typing import Callable

import optuna
import search_spaces
from search_spaces import SearchSpace, Space
from swiftformer import SwiftFormerArch

from ..data import load_data
from ..supernet.scoring import SupernetScorer
from ..latency import LatencyPredictor
from ..latency.lut import LatencyTable, build_table
from ..latency.predictor import SEARCHED_FAMILY, resolve_predictor
from ..progress import progress
from ..training import ProxyTask, attention_token_warnings, resolve_train_device
from ..training.protocols import Protocol
from ..trials.evaluate import Evaluator, FunctionEvaluator, SupernetEvaluator, TaskCache, TrainingEvaluator
from ..supernet import SupernetError
from ..identity import digest
from .config import SearchConfig, SearchError
from ..trials.study import check_precision

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SearchContext:
    cfg: SearchConfig
    predictor: LatencyPredictor
    space: Space  # with the data's classes and channels: its architectures are the ones that ship
    table: LatencyTable  # (or anything with its ``predict(arch) -> ms``: a benchmark's measured latency)
    evaluator: Evaluator  # how a candidate is scored: proxy training, a supernet, the user's function, a table
    task: ProxyTask | None = None  # the proxy's prepared task when candidates train (its device, precision, split)

    def checked_ms(self, predicted_ms: float) -> float:
        """What must fit the budget: the prediction, or with ``--latency-margin band`` its band's upper edge."""
        return self.predictor.upper_ms(predicted_ms) if self.cfg.latency_margin == "band" else predicted_ms


def build_context(cfg: SearchConfig, quiet: bool = False, worker: int = 0) -> SearchContext:
    """``worker`` picks the training GPU (each local worker its own)."""
    if cfg.tabular:
        return _tabular_context(cfg)
    # every candidate is of the searched family: priced by its own line and band where the calibration measured it
    predictor = resolve_predictor(cfg.device, cfg.predictor).for_family(SEARCHED_FAMILY)
    if cfg.latency_margin == "band" and not predictor.band:
        raise SearchError(f"predictor {predictor.device} has no error band; recalibrate it with `nas latency "
                          "calibrate` or use --latency-margin none")
    base = search_spaces.load_space(cfg.space)
    data = load_data(cfg.data)  # at its stored size: each trial resizes on its device
    space = dataclasses.replace(base, num_classes=data.num_classes, in_chans=data.channels)
    if not quiet:
        for line in attention_token_warnings(space, cfg.proxy):
            logger.info(line)
    table_path = Path(cfg.out) / "latency_table.json"
    key = digest({"predictor": predictor.to_dict(), "space": space.to_dict()})
    table = None
    if table_path.exists():
        try:
            saved = LatencyTable.load(table_path)
            table = saved if saved.space == f"{space.name}:{key}" else None
        except (ValueError, KeyError, TypeError) as exc:  # damaged or foreign: a cache, priced again from the space
            table = None
            if not quiet:
                logger.info(f"{table_path} is unreadable ({type(exc).__name__}), a cache of the space's prices: pricing "
                      "the space again")
    if table is None:
        table = build_table(space, predictor, None if quiet else progress("pricing the space's blocks"))
        table.space = f"{space.name}:{key}"  # the space and the digest of what it was priced from
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.save(table_path)
    device = resolve_train_device(cfg.train_device, worker)
    training = TrainingEvaluator(TaskCache(data, device, max_tasks=1), Protocol("proxy", cfg.proxy))
    task = training.task(cfg.proxy.seed)  # (prepared now: a bad device or split is refused before any trial)
    if cfg.supernet_dir is not None:
        evaluator: Evaluator = SupernetEvaluator(build_scorer(cfg, space, device, quiet))
    elif cfg.evaluator.startswith("callable:"):
        evaluator = FunctionEvaluator(load_callable(cfg.evaluator), cfg.evaluator)
    else:
        evaluator = training
    return SearchContext(cfg, predictor, space, table, evaluator, task)


def _tabular_context(cfg: SearchConfig) -> SearchContext:
    from ..benchmarks import BenchmarkError
    from ..benchmarks.tabular import tabular_setup

    try:
        setup = tabular_setup(cfg.data, cfg.space, cfg.device or "", cfg.table_score, cfg.latency_shots, cfg.seed)
    except BenchmarkError as exc:
        raise SearchError(str(exc)) from None
    if cfg.latency_margin == "band":
        raise SearchError("--latency-margin band needs a predictor's error band; a tabular search has none")
    fastest = min((setup.space.parse(key) for key in setup.keys), key=setup.table.predict)
    if setup.table.predict(fastest) > cfg.budget_ms:
        raise SearchError(f"no {setup.space.name} architecture fits {cfg.budget_ms:g} ms on {cfg.device} "
                          f"({'measured' if cfg.latency_shots is None else 'predicted'}); the fastest is "
                          f"{setup.table.predict(fastest):.3f} ms: {fastest.digest()}")
    return SearchContext(cfg, setup.predictor, setup.space, setup.table,
                         FunctionEvaluator(setup.evaluate, "table", setup.truth))


def check_same_precision(study: optuna.Study, ctx: SearchContext) -> None:
    """A study trains in one precision (bf16 on a CUDA GPU, fp32 on a CPU): the first process to train records it,
    and a process that would train in another is refused, so one study never ranks a mix. Tabular studies train
    nothing."""
    if ctx.task is None:
        return
    check_precision(study, ctx.task.policy.precision, ctx.task.device, lambda detail: SearchError(
        f"study {study.study_name!r} {detail}: train on the same kind of device (--train-device), or choose "
        "another --study or --out"))


def check_priced_alike(study: optuna.Study, ctx: SearchContext, sample: int = 3) -> None:
    """Refuse to resume a study whose trials were priced by another predictor (one recalibrated since): its
    budget verdicts and constraint values would mix two price lists. A few recorded prices are enough, as every
    price comes from the same costs."""
    checked = 0
    for trial in study.get_trials(deepcopy=False):
        if checked == sample:
            return
        if "arch" not in trial.user_attrs or "latency_ms" not in trial.user_attrs:
            continue
        then = float(trial.user_attrs["latency_ms"])
        now = ctx.table.predict(ctx.space.arch_from_dict(trial.user_attrs["arch"]))
        if not math.isclose(now, then, rel_tol=1e-6, abs_tol=1e-9):
            raise SearchError(f"study {study.study_name!r} was priced by another {ctx.predictor.device} predictor "
                              f"(trial #{trial.number}: {then:.3f} ms then, {now:.3f} ms now); resume it with that "
                              "predictor (--predictor FILE), or choose another --study or --out")
        checked += 1


def load_callable(evaluator: str) -> Callable[[SwiftFormerArch], float]:
    """``callable:MODULE:FUNCTION``: a function of the architecture that returns its val accuracy, imported in
    every worker (on a Ray cluster, MODULE must be importable on every node)."""
    _, module_name, function_name = evaluator.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SearchError(f"--evaluator {evaluator}: cannot import {module_name} ({exc})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SearchError(f"--evaluator {evaluator}: {module_name} has no function {function_name!r}")
    return function


def build_scorer(cfg: SearchConfig, space: SearchSpace, device, quiet: bool = False) -> SupernetScorer:
    """The supernet of ``--evaluator supernet:DIR``, loaded once per worker, with the search's val split.

    Refused when the supernet was trained on other data or another hold-out: its training images would then
    include images the search selects on."""
    from ..data.datasets import resolve_spec
    from ..data.loaders import image_splits
    from ..supernet import extreme_arch
    from ..supernet.checkpoint import load_supernet
    from ..training.recipe import Recipe

    folder = cfg.supernet_dir
    supernet, record = load_supernet(folder, device)

    def where(spec: str) -> tuple[str, str]:
        kind, root, _ = resolve_spec(spec)
        return kind, str(root.resolve()) if root is not None else ""

    if where(record.data) != where(cfg.data):
        raise SearchError(f"the supernet in {folder} was trained on {record.data}, the search uses {cfg.data}")
    if (record.val_fraction, record.val_seed) != (cfg.proxy.val_fraction, cfg.proxy.val_seed):
        raise SearchError(f"the supernet in {folder} held out val fraction {record.val_fraction:g} seed "
                          f"{record.val_seed}, the search {cfg.proxy.val_fraction:g} seed {cfg.proxy.val_seed}: it "
                          "would select on images the supernet trained on; use the same --val-fraction/--val-seed")
    recipe = Recipe.recorded(record.identity["recipe"])
    splits = image_splits(cfg.data, record.val_fraction, record.val_seed)
    scorer = SupernetScorer(supernet, record, splits.train, splits.val, recipe, splits.channels, cfg.scoring, device)
    if not quiet:
        try:
            supernet.check(extreme_arch(space, largest=True))
        except SupernetError as exc:
            logger.warning(f"warning: the space's largest architecture does not fit the supernet in {folder} ({exc}); "
                  "such candidates are recorded as not scorable")
    return scorer


def task_arch(arch: SwiftFormerArch, space: SearchSpace) -> SwiftFormerArch:
    """A released variant as the space's architectures are: the data's classes and channels, its resolution."""
    return arch.replace(num_classes=space.num_classes, in_chans=space.in_chans, distillation=space.distillation,
                        resolution=space.resolutions[0])
