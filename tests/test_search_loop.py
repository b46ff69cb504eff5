"""The search loop's verdicts: splits, constraint violations, the pruner's peers, known results, evolution."""
import dataclasses
import random

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nas.data import load_data
from nas.search import SearchConfig, SearchError, build_context, open_study, run_step, status_of, worker_loop
from nas.search.pruning import SearchedMedianPruner
from nas.search.ray_backend import trial_resources
from nas.training import ProxyConfig, ProxyResult, ProxyTask, TrainDeviceError, resolve_train_device
from nas.training.proxy import attention_token_warnings
import search_spaces

BUDGET = 0.4777  # about half of the tiny space is over it on iphone14


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def config(tmp_path, data, space, **kwargs):
    proxy = kwargs.pop("proxy", ProxyConfig(epochs=1, downscale=4, subset=60))
    return SearchConfig(budget_ms=BUDGET, space=str(space), data=f"imagefolder:{data}", proxy=proxy,
                        out=str(tmp_path / "run"), **kwargs)


def fake_training(ctx, monkeypatch, calls=None):
    """Training replaced by a deterministic score per architecture (a search's logic, not its learning)."""
    def train(arch, report=None, keep_model=False, **_):
        if calls is not None:
            calls.append(arch.digest())
        score = random.Random(arch.digest()).random()
        if report is not None:
            for epoch in range(1, ctx.cfg.proxy.epochs + 1):
                report(epoch, score * epoch / ctx.cfg.proxy.epochs)
        return ProxyResult(score, ctx.cfg.proxy.epochs, 0.0, 0.0, 0.0, 16)

    monkeypatch.setattr(ctx.task, "train", train)


# ------------------------------------------------------------------------------------------------ splits
def test_val_is_a_fixed_stratified_holdout_of_train(tiny_imagefolder):
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
    split = data.holdout(0.25, seed=3)
    assert len(split.val) == 30 and len(split.train) == 90 and not set(split.val) & set(split.train)
    assert np.bincount(data.train_y[split.val]).tolist() == [10, 10, 10]  # stratified
    assert np.array_equal(split.val, data.holdout(0.25, seed=3).val)  # fixed by its seed
    assert not np.array_equal(split.val, data.holdout(0.25, seed=4).val)
    task = ProxyTask(data, ProxyConfig(val_fraction=0.25, val_seed=3, subset=None, val_subset=None))
    assert task.size("train") == 90 and task.size("val") == 30 and task.size("test") == 36


def test_a_search_never_reads_the_test_split(tmp_path, tiny_imagefolder, tiny_space, monkeypatch):
    read = set()
    real, real_bn = ProxyTask.batches, ProxyTask.bn_view

    def spy(self, split, *args, **kwargs):
        read.add(split)
        return real(self, split, *args, **kwargs)

    def spy_bn(self, *args, **kwargs):  # BatchNorm re-estimation reads training images
        read.add("train")
        return real_bn(self, *args, **kwargs)

    monkeypatch.setattr(ProxyTask, "batches", spy)
    monkeypatch.setattr(ProxyTask, "bn_view", spy_bn)
    cfg = config(tmp_path, tiny_imagefolder, tiny_space, trials=2)
    worker_loop(cfg)
    assert read == {"train", "val"}
    study = open_study(cfg)
    assert study.user_attrs["nas_identity"]["proxy"]["val_fraction"] == 0.1  # the split is part of the identity


# --------------------------------------------------------------------------------------- proxy resolution
def test_the_proxy_keeps_each_resolution_and_its_token_geometry():
    proxy = ProxyConfig(downscale=4)
    assert [proxy.resolution(r) for r in (224, 192, 160)] == [56, 48, 40]
    space = search_spaces.load_space("swiftformer")
    assert attention_token_warnings(space, proxy) == []  # 56 px: stage 3 sees 4x4 tokens, stage 4 2x2
    old = attention_token_warnings(space, ProxyConfig(downscale=7))  # 32 px
    assert len(old) == 1 and "stage 4 attends over 1 token(s) (1x1)" in old[0]
    with pytest.raises(ValueError, match="at least 1"):
        ProxyConfig(downscale=0.5)


def test_architectures_differing_only_in_resolution_train_differently(tiny_imagefolder):
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=32)
    task = ProxyTask(data, ProxyConfig(epochs=1, downscale=4, subset=30))
    arch = search_spaces.load_space("swiftformer").sample(0).replace(num_classes=3)
    small, large = task.train(arch.replace(resolution=64)), task.train(arch.replace(resolution=128))
    assert (small.resolution, large.resolution) == (16, 32)


# ------------------------------------------------------------------------------------- the loop's verdicts
def test_pruning_peers_are_searched_trained_trials_only():
    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}

    def add(status, curve, state=TrialState.COMPLETE, **attrs):
        study.add_trial(create_trial(state=state, params={"x": 0.5}, distributions=dist,
                                     value=(curve[-1] if curve else 0.0) if state == TrialState.COMPLETE else None,
                                     intermediate_values=dict(enumerate(curve, start=1)),
                                     user_attrs={"status": status, **attrs}))

    for _ in range(20):  # none of these may start pruning or set the median
        add("rejected", [])
        add("duplicate", [0.9, 0.9])
        add("reference", [0.9, 0.9], reference="XS")
    pruner = SearchedMedianPruner(n_startup_trials=3)
    trial = study.ask()
    trial.report(0.1, 1)
    assert not pruner.prune(study, study._storage.get_trial(trial._trial_id))  # no searched peer yet
    for value in (0.2, 0.3, 0.4):
        add("trained", [value, value + 0.1])
    assert pruner.prune(study, study._storage.get_trial(trial._trial_id))  # 0.1 < median 0.3 of the searched
    trial.report(0.35, 2)  # at epoch 2 the peers' median is 0.4
    assert pruner.prune(study, study._storage.get_trial(trial._trial_id))


def test_rejected_candidates_are_constraint_violations_not_scores(tmp_path, tiny_imagefolder, tiny_space,
                                                                  monkeypatch):
    cfg = config(tmp_path, tiny_imagefolder, tiny_space, trials=6, sampler="random")
    ctx = build_context(cfg, quiet=True)
    fake_training(ctx, monkeypatch)
    worker_loop(cfg, 0, ctx)
    study = open_study(cfg)
    rejected = [t for t in study.trials if status_of(t) == "rejected"]
    assert rejected and all(t.constraints["latency"] > 0 for t in rejected)
    assert status_of(study.best_trial) in ("trained", "reference")  # Optuna's own choice ignores them
    from nas.search.report import trials_frame

    frame = trials_frame(study)
    assert frame.loc[frame["status"] == "rejected", "val_accuracy"].isna().all()


def test_a_latency_margin_requires_the_band_upper_edge_to_fit(tmp_path, tiny_imagefolder, tiny_space, monkeypatch):
    budget = 0.5014  # every tiny architecture's prediction fits (about 0.478 ms); about half of the band edges do
    cfg = config(tmp_path, tiny_imagefolder, tiny_space, trials=4, sampler="random", latency_margin="band")
    cfg = SearchConfig.from_dict({**cfg.to_dict(), "budget_ms": budget, "study": "", "out": str(tmp_path / "band")})
    assert cfg.study.endswith("-0p5014ms-band") and cfg.identity()["latency_margin"] == "band"
    assert "latency_margin" not in SearchConfig(budget_ms=1.0).identity()  # studies from before the option resume
    ctx = build_context(cfg, quiet=True)
    fake_training(ctx, monkeypatch)
    worker_loop(cfg, 0, ctx)
    from nas.search.report import trials_frame, write_outputs

    frame = trials_frame(open_study(cfg))
    assert (frame["latency_ms"] < budget).all() and (frame["latency_upper_ms"] > frame["latency_ms"]).all()
    rejected, kept = frame[frame["status"] == "rejected"], frame[frame["status"] == "trained"]
    assert len(rejected) and (rejected["latency_upper_ms"] > budget).all()
    assert (kept["latency_upper_ms"] <= budget).all()
    summary = write_outputs(cfg.out, open_study(cfg), cfg)
    assert "the upper edge of the predictor's error band must fit" in summary
    assert "latency_upper_ms" in (tmp_path / "band" / "report.md").read_text()
    with pytest.raises(SearchError, match="unknown latency margin 'wide'; accepted: none, band"):
        SearchConfig(budget_ms=1.0, latency_margin="wide")


def test_a_margin_needs_a_predictor_with_a_band(tmp_path, tiny_imagefolder, tiny_space):
    from nas.latency import load_device

    bare = load_device("iphone14")
    bare.band = {}
    bare.families = {}  # (a measured family's own band would serve the search's candidates)
    bare.save(tmp_path / "bare.json")
    cfg = config(tmp_path, tiny_imagefolder, tiny_space, predictor=str(tmp_path / "bare.json"), latency_margin="band")
    with pytest.raises(SearchError, match="has no error band; recalibrate it"):
        build_context(cfg, quiet=True)


def test_a_pruned_architecture_is_a_known_result(tmp_path, tiny_imagefolder, tiny_space, monkeypatch):
    cfg = config(tmp_path, tiny_imagefolder, tiny_space, trials=2,
                 proxy=ProxyConfig(epochs=2, downscale=4, subset=60))
    ctx = build_context(cfg, quiet=True)
    study = open_study(cfg)
    arch = next(a for a in ctx.space.samples(50) if ctx.table.predict(a) <= BUDGET)

    def pruned(arch, report=None, keep_model=False, **_):
        report(1, 0.1)
        raise optuna.TrialPruned()

    monkeypatch.setattr(ctx.task, "train", pruned)
    study.enqueue_trial(ctx.space.trial_params(arch))
    status, first = run_step(study, ctx)
    assert status == "pruned"
    calls = []
    fake_training(ctx, monkeypatch, calls)
    study.enqueue_trial(ctx.space.trial_params(arch))
    status, again = run_step(study, ctx)
    assert status == "duplicate" and again.state == TrialState.PRUNED and not calls
    assert again.user_attrs["duplicate_of"] == first.number and again.intermediate_values == {1: 0.1}


def test_two_trials_proposing_one_architecture_at_once_train_it_once(tmp_path, tiny_imagefolder, tiny_space,
                                                                      monkeypatch):
    """The lower-numbered trial pauses between asking and writing its architecture while the higher one looks (the
    order that trained one architecture twice in two workers on a loaded machine): the higher must wait for it and
    yield, not train beside it."""
    import threading

    cfg = config(tmp_path, tiny_imagefolder, tiny_space, trials=4)
    ctx = build_context(cfg, quiet=True)
    arch = next(a for a in ctx.space.samples(50) if ctx.table.predict(a) <= BUDGET)
    lower, higher = open_study(cfg), open_study(cfg)
    for _ in range(2):
        lower.enqueue_trial(ctx.space.trial_params(arch))
    lower_asked, higher_training, lower_decided = threading.Event(), threading.Event(), threading.Event()
    calls, suggest = [], type(ctx.space).suggest

    def paused_suggest(space, trial):
        if trial.number == 0:
            lower_asked.set()
            higher_training.wait(3.0)  # without the wait for proposals, the higher trial trains meanwhile
        return suggest(space, trial)

    def train(arch, report=None, keep_model=False, **_):
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "higher":
            higher_training.set()
            lower_decided.wait(3.0)  # still running when the lower trial looks
        return ProxyResult(0.5, 1, 0.0, 0.0, 0.0, 16)

    def step(study, name):
        statuses[name] = run_step(study, ctx, name)[0]
        lower_decided.set()

    monkeypatch.setattr(type(ctx.space), "suggest", paused_suggest)  # (a frozen dataclass)
    monkeypatch.setattr(ctx.task, "train", train)
    statuses = {}
    threads = [threading.Thread(target=step, args=(lower, "lower"), name="lower")]
    threads[0].start()
    assert lower_asked.wait(10.0)
    threads.append(threading.Thread(target=step, args=(higher, "higher"), name="higher"))
    threads[1].start()
    for thread in threads:
        thread.join(30.0)
    assert calls == ["lower"] and statuses["lower"] == "trained"
    assert statuses["higher"] in ("claimed elsewhere", "duplicate")  # (duplicate: the lower finished first)


def test_evolution_proposes_many_distinct_children(tmp_path, tiny_imagefolder, monkeypatch):
    space = tmp_path / "evo.yaml"
    space.write_text("name: evo\nresolution: [64]\nstages:\n"
                     "  - {depth: [1, 2, 3], width: [8, 16, 24], mlp_ratio: [2, 3, 4], attention: last, "
                     "attn_blocks: [0, 1]}\n"
                     "  - {depth: [1, 2, 3], width: [16, 24, 32, 40], mlp_ratio: [2, 3, 4], attention: last, "
                     "attn_blocks: [0, 1]}\n")
    cfg = SearchConfig(budget_ms=BUDGET, space=str(space), data=f"imagefolder:{tiny_imagefolder}", trials=40,
                       sampler="evolution", proxy=ProxyConfig(epochs=1, downscale=4, subset=60),
                       out=str(tmp_path / "run"))
    ctx = build_context(cfg, quiet=True)
    calls = []
    fake_training(ctx, monkeypatch, calls)
    worker_loop(cfg, 0, ctx)
    study = open_study(cfg)
    children = [t for t in study.trials if "parent" in t.user_attrs]
    assert len(children) >= 25  # 40 trained, the first 10 by the random sampler
    digests = [t.user_attrs["digest"] for t in children]
    assert len(set(digests)) == len(digests)  # never the same child twice
    assert all(status_of(t) == "trained" for t in children)  # children fit the budget and are new
    assert len(calls) == len(set(calls))  # nothing trained twice


# ------------------------------------------------------------------------------------ devices, resources
def test_training_device_resolution():
    assert resolve_train_device("auto").type in ("cuda", "mps", "cpu")
    assert str(resolve_train_device("cpu", worker=3)) == "cpu"
    with pytest.raises(TrainDeviceError, match="unknown training device 'tpu'"):
        resolve_train_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(TrainDeviceError, match="'cuda' is not available here"):
            resolve_train_device("cuda")
    else:  # each local worker its own GPU
        count = torch.cuda.device_count()
        assert [resolve_train_device("cuda", w).index for w in range(count + 1)] == [*range(count), 0]


def test_ray_trials_request_and_use_the_cpus_and_gpus_given(tmp_path):
    cfg = SearchConfig(budget_ms=1.0, out=str(tmp_path), backend="ray", workers=2, cpus_per_trial=3,
                       gpus_per_trial=0.5)
    assert trial_resources(cfg) == {"cpu": 3, "gpu": 0.5} and cfg.threads == 3
    default = SearchConfig(budget_ms=1.0, out=str(tmp_path), backend="ray", workers=2)
    assert trial_resources(default)["gpu"] == 0 and default.threads >= 1


def test_a_final_test_evaluation_may_reuse_the_statistics_just_re_estimated(tiny_imagefolder):
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=32)
    task = ProxyTask(data, ProxyConfig(epochs=1, downscale=4, subset=30))
    arch = search_spaces.load_space("swiftformer").sample(0).replace(num_classes=3, resolution=64)
    model = task.train(arch, keep_model=True).model  # its last step: a val evaluation, statistics re-estimated
    assert task.evaluate(model, "test", recalibrate=False) == task.evaluate(model, "test")


def test_the_eta_is_bounded_by_the_timeout(capsys):
    """A run bounded by --timeout with an unreachable trial count once printed an ETA of hundreds of hours."""
    import time as clock

    from nas.search.worker import _print_progress

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"status": "trained", "latency_ms": 0.9,
                                                                     "summary": "s24-48:CC"}))
    trial = study.get_trials()[0]
    cfg = SearchConfig(budget_ms=1.0, trials=100_000)
    _print_progress(study, cfg, trial, [60.0], "w0", deadline=clock.time() + 600)
    bounded = capsys.readouterr().err
    _print_progress(study, cfg, trial, [60.0], "w0")
    unbounded = capsys.readouterr().err
    assert "ETA 10m" in bounded or "ETA 9m" in bounded, bounded
    assert "ETA 10m" not in unbounded and "ETA 9m" not in unbounded, unbounded


def test_a_retry_queued_while_another_worker_asks_never_passes_the_count(tmp_path, tiny_imagefolder, tiny_space,
                                                                         monkeypatch):
    """The race behind 5 trials counted of 4 when a Ray node was lost: the lost trial's retry is queued just after
    another worker's ask found nothing queued, so the new trial is numbered above the queued retry. The new trial
    saw no running trial below it and took the last place; the retry, started while it trained, saw none below it
    and trained too. Injected here at that point: a queued trial numbered below a new one now holds its place."""
    import threading

    cfg = dataclasses.replace(config(tmp_path, tiny_imagefolder, tiny_space, trials=1), budget_ms=10.0)  # all fit
    ctx = build_context(cfg, quiet=True)
    retried = next(iter(ctx.space.samples(1)))
    asking, retrying = open_study(cfg), open_study(cfg)
    new_started, retry_decided = threading.Event(), threading.Event()

    def train(arch, report=None, keep_model=False, **_):
        if arch.digest() != retried.digest():
            new_started.set()
            retry_decided.wait(10.0)  # the new trial still trains when the retry looks
        return ProxyResult(0.5, 1, 0.0, 0.0, 0.0, 16)

    monkeypatch.setattr(ctx.task, "train", train)
    pop = asking._pop_waiting_trial_id

    def retry_lands_after_the_pop():
        found = pop()  # nothing queued yet
        asking.enqueue_trial(ctx.space.trial_params(retried), user_attrs={"retry_of_lost_node": True})
        asking._pop_waiting_trial_id = pop
        return found

    asking._pop_waiting_trial_id = retry_lands_after_the_pop
    outcome = {}

    def ask_new():
        outcome["new"] = run_step(asking, ctx, "w1")
        new_started.set()

    thread = threading.Thread(target=ask_new)
    thread.start()
    assert new_started.wait(30.0)
    outcome["retry"] = run_step(retrying, ctx, "w0")
    retry_decided.set()
    thread.join(30.0)
    (new_status, new), (retry_status, retry) = outcome["new"], outcome["retry"]
    assert new.number == 1 and retry.number == 0 and retry.user_attrs.get("retry_of_lost_node")
    assert (retry_status, new_status) == ("trained", "surplus")  # the lower number takes the place
    assert sum(status_of(t) == "trained" for t in retrying.get_trials()) == 1
