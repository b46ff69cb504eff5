"""Cheap scores judged against 200-epoch training on NAS-Bench-201 (CIFAR-10), where every answer is known.

A search leans on a cheap score to rank the architectures it cannot afford to train. Here each score is computed
on a fixed random sample of the space and set against the benchmark's 200-epoch accuracy (CIFAR-10 valid half,
mean over its seeds), which nothing here reads while scoring:

- zero-cost scores at initialisation (``nas.fidelity.zero_cost``: synflow, jacob_cov, snip, grad_norm), seed 0,
  on the first CIFAR-10 training images of the protocol's train split (jacob_cov 128, snip and grad_norm 64: the
  batch Abdelfattah et al.'s code scores NAS-Bench-201 with);
- our own proxy protocol (``ProxyTask``, the search's default training at NAS-Bench-201's 32 px) and the sum of
  its epochs' training losses (Ru et al.'s SoTL, negated: lower loss ranks higher), on the sample's first
  ``PROXY_SAMPLE`` architectures (the same permutation, so every score is paired on them);
- read from the tables: parameters, MACs of our network, the benchmark's 12-epoch accuracy (one run);
- combinations (``COMBINATIONS``): the mean of standardised ranks, no labels read.

Computing is resumable and chunked (``minutes``): one JSON line per architecture in ``zero_cost.jsonl`` and
``proxy.jsonl``; a line cut by a kill is dropped on the next run; ``commands.log`` records each chunk.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..benchmarks import benchmark_space, latency_table, nb201_accuracies
from ..benchmarks.tables import DATASETS
from ..identity import ProxyConfig
from ..units import format_duration
from .run import ProvingError, append_record, init_worker, log_command, read_records

logger = logging.getLogger(__name__)

SAMPLE_SEED = 0
ZERO_COST_SAMPLE = 3000  # architectures the zero-cost scores are computed on (the first of the permutation)
PROXY_SAMPLE = 200  # architectures our proxy protocol trains (the first ZERO_COST_SAMPLE's first 200)
SNIP_IMAGES = 64  # the batch of snip and grad_norm (Abdelfattah et al.'s NAS-Bench-201 default)
PROXY = ProxyConfig(downscale=1.0)  # the search's default protocol at the benchmark's own 32 px
DATASET = DATASETS["cifar10"]
FILES = {"zero-cost": "zero_cost.jsonl", "proxy": "proxy.jsonl"}
ZERO_COST_NAMES = ("synflow", "jacob_cov", "snip", "grad_norm")
# Combinations: the mean of the named scores' standardised ranks (higher is better for each); none reads a label.
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "vote (synflow, jacob_cov, snip)": ("synflow", "jacob_cov", "snip"),
    "synflow + jacob_cov": ("synflow", "jacob_cov"),
    "12-epoch + synflow + jacob_cov": ("12-epoch", "synflow", "jacob_cov"),
    "12-epoch + synflow": ("12-epoch", "synflow"),
    "12-epoch + jacob_cov": ("12-epoch", "jacob_cov"),
}
# Published Spearman against 200-epoch CIFAR-10 accuracy over the whole space (SOURCES.md): Abdelfattah et al.
# (ICLR 2021) for the zero-cost scores and their vote; the 12-epoch and parameter figures checked on the table.
PUBLISHED = {"synflow": 0.737, "jacob_cov": 0.731, "snip": 0.596, "grad_norm": 0.594,
             "vote (synflow, jacob_cov, snip)": 0.817, "12-epoch": 0.823, "params": 0.711}
LATENCY_DEVICE = "pixel3"  # the phone whose measured latency bins the sample (HW-NAS-Bench's, in 0.1 ms)
BINS = 4


def sample(n: int, seed: int = SAMPLE_SEED) -> list[str]:
    """The first ``n`` architectures of a fixed random permutation of the space (benchmark strings): a larger
    sample extends a smaller one."""
    keys = nb201_accuracies().index
    if not 1 <= n <= len(keys):
        raise ProvingError(f"sample size {n}: between 1 and {len(keys)}")
    return [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))[:n]]


# ---------------------------------------------------------------------------------------------- computing


def _zero_cost_scorer(task: Any) -> Callable[[str], dict[str, Any]]:
    from ..fidelity.zero_cost import JACOB_COV_IMAGES, jacob_cov, loss_gradient_scores, synflow

    space = benchmark_space("nb201", DATASET)
    images, labels = (part[:JACOB_COV_IMAGES] for part in task.view("train", DATASET.side))

    def score(key: str) -> dict[str, Any]:
        arch, record, seconds = space.parse(key), {}, {}
        for name, run in (("synflow", lambda: {"synflow": synflow(arch, 0, space)}),
                          ("jacob_cov", lambda: {"jacob_cov": jacob_cov(arch, images, 0, space)}),
                          ("snip", lambda: loss_gradient_scores(arch, images[:SNIP_IMAGES], labels[:SNIP_IMAGES],
                                                                0, space))):
            start = time.perf_counter()
            record.update(run())
            seconds[name] = round(time.perf_counter() - start, 3)
        return {**record, "seconds": seconds}

    return score


def _proxy_trainer(training: Any) -> Callable[[str], dict[str, Any]]:
    """Our proxy protocol on a benchmark architecture, through the one evaluation every job uses: a training that
    diverges or runs out of memory is a record saying so (its architecture ranks lowest), and the work goes on."""
    from ..trials.evaluate import evaluate

    def train(key: str) -> dict[str, Any]:
        start = time.perf_counter()
        outcome = evaluate(training, training.space.parse(key), training.protocol.config.seed)
        if outcome.status != "trained":
            return {"status": outcome.status, "seconds": round(time.perf_counter() - start, 3)}
        a = outcome.attrs
        return {"status": "done", "val_accuracy": outcome.value, "loss_sum": a["train_loss_sum"],
                "final_loss": a["final_train_loss"], "seconds": round(a["seconds"], 3),
                "cpu_seconds": round(a["cpu_seconds"], 3)}

    return train


def compute(kind: str, out: str | Path, data_spec: str, n: int | None = None, minutes: float | None = None,
            protocol: ProxyConfig = PROXY, log: Callable[[str], None] | None = None,
            part: tuple[int, int] = (0, 1)) -> tuple[int, int]:
    """Score the architectures of the sample (``kind``: "zero-cost" or "proxy") that ``out`` does not hold yet;
    returns (held now, planned). Stops starting new ones after ``minutes``. ``part`` (i, parts) takes every
    parts-th architecture from the i-th: that many processes share the work and the file (each appends whole
    lines with one write)."""
    if kind not in FILES:
        raise ProvingError(f"unknown score kind {kind!r}; accepted: {', '.join(FILES)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ProvingError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda text: logger.info(text))
    n = n or (ZERO_COST_SAMPLE if kind == "zero-cost" else PROXY_SAMPLE)
    path = out / FILES[kind]
    done = read_records(path, "arch", f"{kind} record", "its architectures are then scored again")
    wanted = protocol.to_dict() if kind == "proxy" else {"seed": 0}
    other = next((r for r in done.values() if r.get("protocol") != wanted), None)
    if other is not None:
        raise ProvingError(f"{path} holds scores of another protocol ({other.get('protocol')}); choose another "
                           "--out, or move the file aside")
    index, parts = part
    if not 0 <= index < parts:
        raise ProvingError(f"--part {index}/{parts}: the first number counts from 0 and is below the second")
    todo = [key for key in sample(n)[index::parts] if key not in done]
    machine = log_command(out)
    log(f"{kind} scores in {out}: {len(done)}/{len(done) + len(todo)} held; scoring {len(todo)} on {machine}"
        + (f" for {minutes:g} min" if minutes else ""))
    if not todo:
        return len(done), len(done)
    from ..data import load_data
    from ..training.protocols import Protocol
    from ..trials.evaluate import TaskCache, TrainingEvaluator

    init_worker()
    training = TrainingEvaluator(TaskCache(load_data(data_spec), "cpu", max_tasks=1), Protocol("proxy", protocol),
                                 benchmark_space("nb201", DATASET))
    run = _zero_cost_scorer(training.task(protocol.seed)) if kind == "zero-cost" else _proxy_trainer(training)
    deadline = time.time() + 60 * minutes if minutes else None
    started, finished = time.time(), 0
    for key in todo:
        if deadline and time.time() > deadline:
            break
        append_record(path, {"arch": key, "protocol": wanted, **run(key)})
        finished += 1
        if finished % max(1, len(todo) // 50) == 0 or finished == len(todo):
            rate = (time.time() - started) / finished
            log(f"  {len(done) + finished}/{len(done) + len(todo)} {kind} | ETA "
                f"{format_duration(rate * (len(todo) - finished))}")
    return len(done) + finished, len(done) + len(todo)


# ---------------------------------------------------------------------------------------------- judging


@dataclass
class Correlation:
    """Spearman and Kendall of a score against the truth, with 95 % bootstrap intervals over architectures."""

    n: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]


def correlation(score: np.ndarray, truth: np.ndarray, resamples: int = 1000, seed: int = 0) -> Correlation:
    """Rank correlations of ``score`` with ``truth`` (NaN scores, e.g. a diverged training, rank lowest), and
    percentile intervals from ``resamples`` bootstrap draws of the architectures."""
    from scipy.stats import kendalltau, spearmanr

    score = np.where(np.isfinite(score), score, -np.inf)
    n = len(score)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    rhos, taus = [], []
    with warnings.catch_warnings():  # a constant score (or resample): NaN, as it should be, without a warning
        warnings.simplefilter("ignore")
        rho, tau = spearmanr(score, truth)[0], kendalltau(score, truth)[0]
        for idx in draws:
            rhos.append(spearmanr(score[idx], truth[idx])[0])
            taus.append(kendalltau(score[idx], truth[idx])[0])
        ci = lambda values: tuple(float(v) for v in np.nanpercentile(values, [2.5, 97.5]))  # noqa: E731
        return Correlation(n, float(rho), ci(rhos), float(tau), ci(taus))


def standard_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties averaged); NaN ranks lowest."""
    values = np.where(np.isfinite(values), values, -np.inf)
    return (pd.Series(values).rank(method="average").to_numpy() - 1) / max(len(values) - 1, 1)


def score_frame(out: str | Path) -> pd.DataFrame:
    """Every score of the sampled architectures held in ``out``, with the truth and the measured latency, one row
    each (indexed by benchmark string); a score not computed for a row is NaN."""
    out = Path(out)
    table = nb201_accuracies()
    zero = read_records(out / FILES["zero-cost"], "arch", "zero-cost record", "move it aside to score again")
    if not zero:
        raise ProvingError(f"{out} holds no zero-cost scores; run the zero-cost scoring first")
    keys = [key for key in sample(len(table)) if key in zero]
    space = benchmark_space("nb201", DATASET)
    frame = pd.DataFrame(index=pd.Index(keys, name="arch"))
    frame["truth"] = table.loc[keys, DATASET.final].to_numpy()
    for name in ZERO_COST_NAMES:
        frame[name] = [zero[k][name] for k in keys]
    frame["params"] = table.loc[keys, DATASET.params].to_numpy()
    frame["MACs"] = [space.counts(space.parse(k))["macs"] for k in keys]
    frame["12-epoch"] = table.loc[keys, DATASET.proxy].to_numpy()
    proxy = read_records(out / FILES["proxy"], "arch", "proxy record", "move it aside to train again")
    trained = [proxy.get(k, {}) for k in keys]  # a diverged training has no accuracy or loss: it ranks lowest
    frame["proxy"] = [r.get("val_accuracy", np.nan) for r in trained]
    frame["proxy loss sum"] = [-r.get("loss_sum", np.inf) if r else np.nan for r in trained]
    frame["proxy seconds"] = [r.get("seconds", np.nan) for r in trained]
    frame["zero-cost seconds"] = [sum(zero[k]["seconds"].values()) for k in keys]
    frame["latency_ms"] = latency_table("nb201").loc[keys, LATENCY_DEVICE].to_numpy()
    for name, parts in COMBINATIONS.items():
        frame[name] = np.mean([standard_ranks(frame[p].to_numpy(float)) for p in parts], axis=0)
    return frame


SCORES = (*ZERO_COST_NAMES, "params", "MACs", "12-epoch", *COMBINATIONS, "proxy", "proxy loss sum")


def judge(frame: pd.DataFrame, scores: Sequence[str] = SCORES, resamples: int = 1000) -> pd.DataFrame:
    """Each score's correlations on every architecture of ``frame`` that has it, within the top 10 % by the truth,
    and within each of ``BINS`` latency bins (quantiles of the measured latency): one row per (score, subset)."""
    rows = []
    bins = pd.qcut(frame["latency_ms"], BINS, duplicates="drop")
    trained = frame[frame["proxy seconds"].notna()]
    for score in scores:
        have = trained if score.startswith("proxy") else frame
        if len(have) < 10:
            continue
        top = have[have["truth"] >= have["truth"].quantile(0.9)]
        subsets = [("all", have), ("top 10 %", top)]
        if len(trained) >= 10 and not score.startswith("proxy"):
            subsets.append(("proxy's sample", have.loc[trained.index]))
        subsets += [(f"latency {interval.left:.1f}-{interval.right:.1f} ms", have[bins.loc[have.index] == interval])
                    for interval in bins.cat.categories]
        for subset, rows_of in subsets:
            if len(rows_of) < 10:
                continue
            c = correlation(rows_of[score].to_numpy(float), rows_of["truth"].to_numpy(float), resamples)
            rows.append({"score": score, "subset": subset, **asdict(c), "published": PUBLISHED.get(score)
                         if subset == "all" else None})
    return pd.DataFrame(rows)


def whole_space(resamples: int = 200) -> pd.DataFrame:
    """The table-read scores on all 15,625 architectures (no sampling): the check that the sample is typical."""
    table = nb201_accuracies()
    truth = table[DATASET.final].to_numpy(float)
    rows = []
    for name, column in (("12-epoch", DATASET.proxy), ("params", DATASET.params)):
        c = correlation(table[column].to_numpy(float), truth, resamples=resamples)
        rows.append({"score": name, "subset": "whole space", **asdict(c), "published": PUBLISHED.get(name)})
    return pd.DataFrame(rows)


def format_interval(value: float, ci: Sequence[float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if math.isfinite(value) else "-"
