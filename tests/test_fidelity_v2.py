"""Fidelity benchmark version 2's parts: the crop augmentation of a protocol, the zero-cost scores, the training-loss
sum, and the pilot that picks a reference by its seed-to-seed agreement (a tiny pilot of the same code runs here)."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nas.data import load_data
from nas.fidelity import benchmark
from nas.fidelity.pilot import MIN_TOKENS, candidates, choose, pilot_report, tokens_ok
from nas.fidelity.report import scorer_table
from nas.fidelity.zero_cost import jacob_cov, synflow
from nas.identity import ProxyConfig, digest
from nas.training.protocols import CANDIDATES
from swiftformer import VARIANTS


def test_the_crop_augmentation_is_part_of_a_protocol_only_when_chosen():
    assert "augment" not in ProxyConfig().to_dict()  # studies recorded before the field keep their identity
    crop = ProxyConfig(augment="crop")
    assert crop.to_dict()["augment"] == "crop" and digest(crop.to_dict()) != digest(ProxyConfig().to_dict())
    assert ProxyConfig.from_dict(crop.to_dict()) == crop
    with pytest.raises(ValueError, match="proxy augment 'rotate' is not supported; accepted: flip, crop"):
        ProxyConfig(augment="rotate")


def test_a_crop_protocol_drawn_as_torchvision_draws_is_another_protocol_than_one_recorded_clipped():
    """Crops drawn as torchvision draws them change every crop a protocol trains on, so its identity says so; a
    protocol recorded before (no draw named) reads back as the clipped draw and keeps its identity."""
    crop, clipped = ProxyConfig(augment="crop"), ProxyConfig(augment="crop", crop_draw="clipped")
    assert crop.to_dict()["crop_draw"] == "torchvision" and "crop_draw" not in clipped.to_dict()
    assert "crop_draw" not in ProxyConfig().to_dict()  # flip protocols: unchanged
    assert ProxyConfig.from_dict(clipped.to_dict()) == clipped and ProxyConfig.from_dict(crop.to_dict()) == crop
    with pytest.raises(ValueError, match="proxy crop_draw 'pil' is not supported; accepted: torchvision, clipped"):
        ProxyConfig(augment="crop", crop_draw="pil")
    # the CPU candidate finishes its pilot as it began: the identity its committed journal records
    journal = Path(__file__).parents[1] / "experiments/fidelity/v2/pilot/studies.journal"
    recorded = next(json.loads(line)["user_attr"]["protocol"] for line in journal.open()
                    if '"protocol"' in line and '"user_attr"' in line)
    assert {**CANDIDATES["cpu-56px-4ep-10k-crop"].to_dict(), "seed": 0} == recorded
    assert CANDIDATES["56px-20ep-crop"].crop_draw == "torchvision"


def test_zero_cost_scores_are_deterministic_and_order_sizes_as_synflow_should():
    small = VARIANTS["xs"].replace(num_classes=10, resolution=32, distillation=False)
    large = VARIANTS["l1"].replace(num_classes=10, resolution=32, distillation=False)
    assert synflow(small) == synflow(small)
    assert synflow(large) > synflow(small)  # more paths carry the flow: synflow grows with size
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    score = jacob_cov(small, images)
    assert math.isfinite(score) and score == jacob_cov(small, images)


class _Tiny:
    """A space of one fixed tiny network, for scores checked against values computed by hand."""

    def __init__(self, module, shape):
        self.module, self.shape = module, shape

    def build_model(self, arch):
        return self.module()

    def input_shape(self, arch):
        return self.shape


def test_synflow_counts_conv_and_linear_weights_only_as_abdelfattah_et_al():
    """Two bias-carrying linears with a BatchNorm between (scale s at its initial eval statistics), weights set by
    hand. With every parameter made positive and an all-ones input, R = s |W2| (|W1| 1 + |b1|) + |b2|: the first
    layer's weights carry s 1'|W2||W1|1 = 10.5 s, the second's s |W2| (|W1| 1 + |b1|) = 28 s. Biases carry flow to
    the next layer's weights but are not summed themselves, nor is BatchNorm (before: 3 more terms)."""
    w1 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]])
    w2 = torch.tensor([[2.0, -1.0, 0.5]])

    def module():
        net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1))
        with torch.no_grad():
            net[0].weight.copy_(w1), net[2].weight.copy_(w2)
            net[0].bias.fill_(5.0), net[2].bias.fill_(7.0), net[1].weight.fill_(1.0)
        return net

    first = float(w2.abs() @ w1.abs() @ torch.ones(2))  # 2*3 + 1*3.5 + 0.5*2 = 10.5
    second = float(w2.abs() @ (w1.abs() @ torch.ones(2) + 5.0))  # 2*8 + 1*8.5 + 0.5*7 = 28
    scale = 1 / math.sqrt(1 + 1e-5)  # BatchNorm in eval mode at its initial statistics
    expected = math.log10(scale * (first + second))
    assert synflow(None, space=_Tiny(module, (1, 2))) == pytest.approx(expected, rel=1e-9)


def test_jacob_cov_is_the_published_formula_on_a_network_whose_jacobians_are_known():
    """A linear map's input Jacobian (of the summed outputs) is the same for every image: the correlation matrix is
    all ones, eigenvalues n and 0 (n - 1 times), so the score is -(log(n + k) + 1/(n + k)) - (n - 1)(log k + 1/k)."""
    n, k = 8, 1e-5
    linear = _Tiny(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)), (1, 3, 2, 2))
    images = torch.randn(n, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    expected = -(math.log(n + k) + 1 / (n + k)) - (n - 1) * (math.log(k) + 1 / k)
    assert jacob_cov(None, images, space=linear) == pytest.approx(expected, rel=1e-6)
    # a ReLU makes each image's Jacobian its own: far less correlated, a far higher score
    relu = _Tiny(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(),
                                             torch.nn.Linear(16, 4)), (1, 3, 2, 2))
    assert jacob_cov(None, images, space=relu) > expected / 100


def test_the_pilot_takes_version_1_architectures_across_its_range_and_pairs_seeds():
    archs = [(f"a{i:02d}", VARIANTS["xs"]) for i in range(30)]
    chosen = benchmark.pilot_architectures(archs, 12)
    assert [n for n, _ in chosen][0] == "a00" and chosen[-1][0] == "a29" and len({n for n, _ in chosen}) == 12
    with pytest.raises(ValueError, match="pilot of 40 architectures: accepted 2 to 30"):
        benchmark.pilot_architectures(archs, 40)
    work = benchmark.pilot_work(chosen[:2], ["56px-10ep-crop"])
    assert work == [("56px-10ep-crop", 0, "a00"), ("56px-10ep-crop", 1, "a00"),
                    ("56px-10ep-crop", 0, "a03"), ("56px-10ep-crop", 1, "a03")]


def test_every_candidate_keeps_stage_3_and_4_tokens_and_a_too_small_side_is_refused():
    assert all(tokens_ok(p) for p in benchmark.PILOT_PROTOCOLS.values())
    small = benchmark.Protocol("40px", ProxyConfig(downscale=5.6))
    assert MIN_TOKENS == {3: 16, 4: 4} and not tokens_ok(small)  # 40 px: stage 3 sees 3x3


def _pilot_frame(agreeing: str, noisy: str, n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    truth = np.linspace(0.5, 0.7, n)
    rows = []
    for protocol, noise in ((agreeing, 0.0005), (noisy, 0.05)):
        for seed in (0, 1):
            values = truth + rng.normal(0, noise, n)
            rows += [{"protocol": protocol, "seed": seed, "name": f"a{i:02d}", "val_accuracy": v, "seconds": 10.0,
                      "device": "cpu"} for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_the_pilot_picks_the_cheapest_candidate_that_agrees_with_itself():
    frame = _pilot_frame("56px-20ep-crop", "56px-10ep-crop")
    found = {c.protocol: c for c in candidates(frame, n_boot=200)}
    assert found["56px-20ep-crop"].tau > 0.95 and found["56px-10ep-crop"].tau < 0.8
    assert found["56px-20ep-crop"].noise_share < 0.01 < found["56px-10ep-crop"].noise_share
    best, why = choose(list(found.values()))
    assert best.protocol == "56px-20ep-crop" and "cheapest candidate" in why  # the cheaper one does not agree
    both = _pilot_frame("56px-20ep-crop", "56px-10ep-flip")
    both.loc[both["protocol"] == "56px-10ep-flip", "val_accuracy"] = \
        both.loc[both["protocol"] == "56px-20ep-crop", "val_accuracy"].to_numpy()
    best, _ = choose(candidates(both, n_boot=50))
    assert best.protocol == "56px-10ep-flip"  # both agree: half the images seen wins
    noisy_only = frame[frame["protocol"] == "56px-10ep-crop"]
    best, why = choose(candidates(noisy_only, n_boot=50))
    assert best is None and why.startswith("no candidate reaches tau 0.8 at the lower end of its interval yet; "
                                           "closest: 56px-10ep-crop")
    # a point tau over the target is not enough: the interval's lower end must clear it, over enough pairs
    agreeing = found["56px-20ep-crop"]
    assert choose([dataclasses.replace(agreeing, tau_ci=(0.6, 1.0))])[0] is None  # chosen before: tau > 0.95
    assert choose([dataclasses.replace(agreeing, pairs=3)])[0] is None
    assert "56px-20ep-crop" in pilot_report(frame, n_boot=50)
    truth = pd.Series(np.linspace(0.5, 0.7, 12), index=[f"a{i:02d}" for i in range(12)])
    beside = {c.protocol: c for c in candidates(frame, n_boot=20, version1=truth)}
    assert beside["56px-20ep-crop"].tau_v1 > 0.95 > beside["56px-10ep-crop"].tau_v1  # the noisy one's mean is off
    assert math.isnan(found["56px-20ep-crop"].tau_v1)  # nothing to set it beside
    with pytest.raises(ValueError, match="protocol 'mine', which is not a candidate"):
        candidates(frame.assign(protocol="mine"))


def test_a_tiny_pilot_trains_seed_pairs_records_the_loss_sum_and_reports(tmp_path, tiny_imagefolder, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    tiny = {"tiny-crop": benchmark.Protocol("tiny-crop", ProxyConfig(epochs=1, downscale=14, subset=None,
                                                                     val_subset=None, augment="crop"))}
    archs = [(n, VARIANTS[n].replace(num_classes=3)) for n in ("xs", "s", "l1")]
    data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
    journal = tmp_path / "pilot.journal"
    work = benchmark.pilot_work(archs, tiny)
    assert benchmark.run_benchmark(archs, data, journal, work, log=lambda s: None, protocols=tiny) == 6
    assert benchmark.run_benchmark(archs, data, journal, work, log=lambda s: None, protocols=tiny) == 0
    frame = benchmark.results_frame(journal)
    assert len(frame) == 6 and (frame["train_loss_sum"] > 0).all()
    found = candidates(frame, n_boot=50, protocols=tiny)
    assert len(found) == 1 and found[0].pairs == 3 and not found[0].tokens_ok  # 16 px: 1 token in stage 3
    assert "tiny-crop" in pilot_report(frame, n_boot=50, protocols=tiny)
    other = {"tiny-crop": benchmark.Protocol("tiny-crop", dataclasses.replace(tiny["tiny-crop"].config,
                                                                              crop_draw="clipped"))}
    with pytest.raises(ValueError, match="was trained with another protocol \\(crop_draw differ\\)"):
        benchmark.run_benchmark(archs, data, journal, work, log=lambda s: None, protocols=other)
    # the loss sum of a proxy run is a scorer of its own in the fidelity table
    table = scorer_table(frame.assign(protocol=np.where(frame["seed"] == 0, "reference", "proxy"), seed=0),
                         n_boot=20)
    assert "proxy loss sum" in set(table["scorer"])


@pytest.mark.slow
def test_version_2_architectures_span_the_latency_range_and_the_supernet_space():
    import search_spaces
    from pathlib import Path

    space = search_spaces.load_space(str(Path(__file__).resolve().parents[1] / "experiments" / "supernet"
                                         / "swiftformer-cifar.yaml"))
    archs = benchmark.select_version2(space, per_bin=1, supernet_count=3)
    names = [n for n, _ in archs]
    assert len(archs) == 13 and len(set(names)) == 13 and {"xs", "s", "l1"} <= set(names)
    assert names[-3:] == ["s01", "s02", "s03"] and all(a in space for _, a in archs[-3:])
    assert len({a.digest() for _, a in archs}) == 13


def test_a_seed_pair_trained_in_two_precisions_is_no_pair():
    """bf16 on a GPU against fp32 on a CPU would read precision noise as seed noise: such a pair is left out."""
    frame = _pilot_frame("56px-20ep-crop", "56px-10ep-crop").assign(precision="fp32")
    mixed = frame.copy()
    mixed.loc[(mixed["seed"] == 1) & (mixed["name"].isin(["a00", "a01"])), "precision"] = "bf16"
    pairs = {c.protocol: c.pairs for c in candidates(frame, n_boot=20)}
    assert pairs == {"56px-20ep-crop": 12, "56px-10ep-crop": 12}
    assert {c.protocol: c.pairs for c in candidates(mixed, n_boot=20)} == {"56px-20ep-crop": 10, "56px-10ep-crop": 10}
