"""The training engine: the same numbers as before it, exact resumes, per-image draws that do not depend on the
batch, BatchNorm re-estimation and evaluation as torch's and timm's give them, the GPU paths' logic on the CPU."""
from __future__ import annotations

import copy
import hashlib
import math
import random

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn

from nas.data import load_data
from nas.engine import (Augmentation, Diverged, Policy, PolicyError, ResidentBatches, Training, evaluate, fit,
                        reestimate_bn, resident, restore_checkpoint, save_checkpoint)
from nas.engine.augment import erase, resize
from nas.engine.batches import EpochPlans, epoch_positions
from nas.training import ProxyConfig, ProxyTask
from swiftformer import SwiftFormer, SwiftFormerArch

TINY = SwiftFormerArch.from_dict({"resolution": 64, "num_classes": 3, "stages": [
    {"width": 8, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "attn", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 24, "blocks": [{"type": "attn", "mlp_ratio": 2}]}]})
CPU = Policy.for_device("cpu")


@pytest.fixture(scope="module")
def tiny_data(tiny_imagefolder):
    return load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha1()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def test_the_proxy_trains_to_the_numbers_recorded_before_the_engine(tiny_data):
    """The proxy before the engine (PIL-free tensors prepared per side, ``update_bn``, its own loop) trained this
    protocol to a final loss of 0.7464590072631836 on this machine type; the engine's proxy gives the same (its
    flip draws, order, BN batches and arithmetic are kept). CIFAR-10 runs of the fidelity benchmark reproduce too
    (experiments/RESULTS.md).

    What is deterministic on every host is pinned exactly: the initial weights (torch's CPU generator) and the
    epoch's plan (order and flips). The loss is not: float reductions run in other orders under other CPU kernels
    (AVX2, AVX-512, AMX) and thread counts, which moves a 2-epoch loss by far less than 1e-3 relative, while any
    change of protocol (order, draws, schedule, BN batches) moves it by more."""
    config = ProxyConfig(epochs=2, downscale=2.0, subset=None, val_subset=None, batch_size=16, bn_images=40, seed=1)
    task = ProxyTask(tiny_data, config)
    training = task.training(TINY)
    order, params = training.source.plans.plan(0)
    assert _digest(training.model.state_dict()) == "987c1031b77e0a7b"
    assert _digest({"order": order, **params}) == "818dca1db6c5217e"
    result = task.train(TINY)
    assert result.final_loss == pytest.approx(0.7464590072631836, rel=1e-3)
    assert result.accuracy == 1.0 and result.resolution == 32


def test_reestimated_batchnorm_is_update_bn_without_its_syncs():
    torch.manual_seed(0)
    model = SwiftFormer(TINY.replace(resolution=32))
    batches = [torch.randn(8, 3, 32, 32) for _ in range(5)]
    reference = copy.deepcopy(model)
    update_bn(batches, reference)
    momenta = [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    reestimate_bn(model, iter(batches))
    for (name, ours), theirs in zip(model.named_buffers(), reference.buffers()):
        assert torch.equal(ours, theirs), name
    assert [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta
    assert not model.training


def test_the_evaluator_counts_top1_top5_and_loss_over_every_batch():
    torch.manual_seed(0)
    logits = torch.randn(37, 7)
    targets = torch.randint(0, 7, (37,))

    class Fixed(torch.nn.Module):
        def forward(self, index):
            return logits[index]

    batches = [(torch.arange(i, min(i + 10, 37)), targets[i: i + 10]) for i in range(0, 37, 10)]
    scores = evaluate(Fixed(), batches, CPU)
    top5 = logits.topk(5, 1).indices.eq(targets[:, None]).any(1).float().mean().item()
    assert scores.images == 37
    assert scores.top1 == pytest.approx((logits.argmax(1) == targets).float().mean().item())
    assert scores.top5 == pytest.approx(top5)
    assert scores.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-6)


def test_an_epoch_plan_follows_from_seed_and_epoch_alone():
    augmentation = Augmentation(crop="resized", color_jitter=0.4, re_prob=0.25)
    plans = EpochPlans(50, seed=3, augmentation=augmentation, size=(32, 32))
    in_sequence = [plans.plan(e) for e in range(3)]
    fresh = EpochPlans(50, seed=3, augmentation=augmentation, size=(32, 32)).plan(2)  # replayed from epoch 0
    assert torch.equal(fresh[0], in_sequence[2][0])
    assert all(torch.equal(fresh[1][k], in_sequence[2][1][k]) for k in fresh[1])
    assert not torch.equal(in_sequence[0][0], in_sequence[1][0])
    assert sorted(in_sequence[1][0].tolist()) == list(range(50))


def test_shards_and_repeats_order_images_as_timms_samplers_do():
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    repeated = epoch_positions(10, perm, repeats=3, rank=0, world=1)
    assert len(repeated) == 10 and repeated[:3].unique().numel() == 1  # each image 3 times in a row, n positions
    shards = [epoch_positions(10, perm, 1, rank, 4) for rank in range(4)]
    assert all(len(s) == 3 for s in shards)  # padded by wrapping to 12
    assert sorted(torch.cat(shards).tolist()) == sorted(perm.tolist() + perm[:2].tolist())


def test_batches_are_the_same_images_and_draws_whatever_the_batch_size(tiny_data):
    images, labels = resident(tiny_data.train_x, "cpu"), torch.from_numpy(tiny_data.train_y)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    augmentation = Augmentation(crop="resized", color_jitter=0.4, re_prob=0.5)
    epochs = []
    for batch in (8, 30):
        source = ResidentBatches(images, labels, np.arange(100), augmentation, 24, mean, std, batch, seed=5)
        xs, ys = zip(*source.epoch(1))
        epochs.append((torch.cat(xs), torch.cat(ys)))
    assert torch.equal(epochs[0][1], epochs[1][1])
    assert torch.allclose(epochs[0][0], epochs[1][0], atol=1e-5)
    assert epochs[0][0].shape == (100, 3, 24, 24) and epochs[0][0].is_contiguous(memory_format=torch.channels_last)


def test_the_device_crop_resizes_mirrors_and_erases_as_asked():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    for crop, whole in (("resized", {"flip": torch.tensor([False, True]), "crop": torch.tensor([[0, 0, 8, 8]] * 2)}),
                        ("resized-clipped", {"flip": torch.tensor([False, True]),
                                             "box": torch.tensor([[0.5, 0.5, 1.0, 1.0]] * 2)})):
        out = Augmentation(crop=crop, interpolation="bilinear").apply(x, whole, 8, torch.zeros(1, 3, 1, 1),
                                                                      torch.ones(1, 3, 1, 1))
        assert torch.allclose(out[0], x[0].float() / 255, atol=1e-5)  # the whole image at its own size: itself
        assert torch.allclose(out[1], x[1].float().flip(-1) / 255, atol=1e-5)  # mirrored
    up = resize(x.float(), 16)
    assert up.shape == (2, 3, 16, 16)
    rect = torch.tensor([[1.0, 0.25, 0.5, 0.5, 0.25], [0.0, 0.0, 0.0, 1.0, 1.0]])
    erased = erase(torch.zeros(2, 3, 8, 8), rect, torch.tensor([7, 8]), "pixel")
    assert (erased[0, :, 2:6, 4:6] != 0).all() and (erased[0].abs().sum() > 0)
    assert erased[0, :, :2].eq(0).all() and erased[1].eq(0).all()  # outside the rectangle, and switched off
    again = erase(torch.zeros(1, 3, 8, 8), rect[:1], torch.tensor([7]), "pixel")
    assert torch.equal(again[0], erased[0])  # the noise follows the image's seed, not the batch
    for mode in ("pixel", "rand", "const"):  # the GPU's way (every element, then selected) gives the same values
        assert torch.equal(erase(torch.ones(2, 3, 8, 8), rect, torch.tensor([7, 8]), mode, everywhere=True),
                           erase(torch.ones(2, 3, 8, 8), rect, torch.tensor([7, 8]), mode, everywhere=False))


def _training(tiny_data, seed: int = 0) -> Training:
    task = ProxyTask(tiny_data, ProxyConfig(epochs=2, downscale=2.0, subset=None, batch_size=16, seed=seed))
    return task.training(TINY)


def test_a_training_stopped_inside_an_epoch_resumes_to_the_uninterrupted_one(tiny_data, tmp_path):
    whole = _training(tiny_data)
    fit(whole, 2)
    first = _training(tiny_data)
    calls = {"n": 0}

    def stop(state) -> bool:
        calls["n"] += 1
        return calls["n"] == 3  # after the third step of the first epoch

    state = fit(first, 2, stop=stop, checkpoint=lambda s: save_checkpoint(tmp_path / "last.pth", {}, first, s))
    assert (state.epoch, state.step) == (0, 3)
    resumed = _training(tiny_data)
    payload = torch.load(tmp_path / "last.pth", weights_only=False)
    again = fit(resumed, 2, restore_checkpoint(payload, resumed))
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert again.updates == 2 * whole.source.steps_per_epoch


def test_throughput_counts_the_images_and_seconds_of_the_same_span(tiny_data):
    """A checkpoint inside an epoch (here after every step, each taking 20 ms to save) must not shrink the time
    the epoch's images are divided by (before: only the time since the last checkpoint)."""
    import time

    training = _training(tiny_data)
    started = time.perf_counter()
    state = fit(training, 1, checkpoint=lambda s: time.sleep(0.02), checkpoint_every_s=0.0)
    elapsed = time.perf_counter() - started
    images = training.source.steps_per_epoch * 16
    assert state.log[0]["images_per_s"] == pytest.approx(images / elapsed, rel=0.5)


def test_a_loss_that_stops_being_finite_ends_the_training(tiny_data):
    training = _training(tiny_data)
    training.step = lambda inputs, targets, state: torch.tensor(math.nan)
    with pytest.raises(Diverged, match="loss became nan in epoch 1"):
        fit(training, 1)


def test_the_precision_policy_refuses_what_the_device_cannot_run():
    assert CPU.amp_dtype is None and CPU.scaler() is None and CPU.memory_format == torch.channels_last
    with pytest.raises(PolicyError, match="amp 'bf16' needs a CUDA device"):
        Policy.for_device("cpu", "bf16")
    with pytest.raises(PolicyError, match="accepted: auto, off, bf16, fp16"):
        Policy.for_device("cpu", "half")


def test_streamed_batches_draw_the_same_whatever_the_loader_worker_count():
    """The streaming path (RandAugment in loader workers) seeds each image from (seed, epoch, position)."""
    from timm.data import create_transform

    from nas.data.loaders import ArrayImages
    from nas.engine import StreamingBatches

    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 255, (24, 20, 20, 3), dtype=np.uint8), np.arange(24) % 3)
    transform = create_transform(16, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", use_prefetcher=True)
    augmentation = Augmentation(re_prob=0.5)
    epochs = []
    for workers in (0, 2):
        source = StreamingBatches(images, transform, augmentation, torch.zeros(3), torch.ones(3), 8, seed=4,
                                  device=torch.device("cpu"), workers=workers)
        epochs.append([x for x, _ in source.epoch(1)] + [x for x, _ in source.epoch(2, start_step=1)])
    assert len(epochs[0]) == 3 + 2 and all(torch.equal(a, b) for a, b in zip(*epochs))


def _streaming(rank: int = 0, world: int = 1, workers: int = 0):
    from timm.data import create_transform

    from nas.data.loaders import ArrayImages
    from nas.engine import StreamingBatches

    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 255, (24, 20, 20, 3), dtype=np.uint8), np.arange(24) % 3)
    transform = create_transform(16, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", use_prefetcher=True)
    return StreamingBatches(images, transform, Augmentation(re_prob=0.5), torch.zeros(3), torch.ones(3), 4, seed=4,
                            device=torch.device("cpu"), workers=workers, rank=rank, world=world)


def test_streamed_item_seeds_follow_the_global_position_under_several_processes():
    """Each rank's p-th image is global position rank + p * world: no two ranks share an item's seed (before, all
    ranks drew the same crop and RandAugment for their p-th image)."""
    seeds = []
    for rank in range(3):
        source = _streaming(rank, 3)
        order, _ = source.plans.plan(1)
        source.sampler.set_epoch(order, 77, 0)
        seeds.append({seed for seed, _ in source.sampler.items})
    assert all(len(s) == 8 for s in seeds)
    assert not (seeds[0] & seeds[1]) and not (seeds[1] & seeds[2]) and not (seeds[0] & seeds[2])
    single = _streaming()
    single.sampler.set_epoch(single.plans.plan(1)[0], 77, 0)
    assert set().union(*seeds) == {seed for seed, _ in single.sampler.items}  # the same draws as one process


def test_streaming_in_the_training_process_leaves_its_random_streams_alone():
    """With loader_workers=0 the items load in the training process: its Python, NumPy and torch streams (mixup,
    drop-path) continue as if no image had been loaded."""
    source = _streaming(workers=0)
    streams = []
    for load in (False, True):
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        if load:
            next(iter(source.epoch(0)))
        streams.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert streams[0] == streams[1]


def test_batchnorm_reestimation_prepares_only_the_images_it_uses(tiny_data):
    """With crops the training never prepares the train split in float; re-estimating BatchNorm on bn_images must
    not either (before: the whole split at the side, about 6.8 GB per task at 112 px on CIFAR-10). The figure is
    the one a full view gives."""
    config = ProxyConfig(epochs=1, downscale=2.0, subset=None, batch_size=8, bn_images=16, seed=0, augment="crop")
    task = ProxyTask(tiny_data, config)
    model = task.train(TINY, keep_model=True).model
    prepared = {key: view[0].shape[0] for key, view in task._views.items() if key[0] != "val"}
    assert prepared == {("bn", 32): 16}  # 16 of the 108 training images
    bn_only = task.evaluate(model, "val")
    task.view("train", 32)  # the whole split's view, as before: the same statistics, the same accuracy
    assert task.evaluate(model, "val") == bn_only


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_the_device_crop_resizes_as_torchvisions_resized_crop(mode):
    """Each crop resized (shrunk: antialiased; enlarged) and mirrored as torchvision's ``resized_crop`` with
    ``antialias=True`` on the same pixels, to float64 rounding; grid_sample (the clipped draw's) was not."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from nas.engine.augment import crop_resample

    x = torch.rand(6, 3, 40, 52, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    crops = torch.tensor([[0, 0, 40, 52], [3, 5, 20, 17], [10, 2, 7, 9], [1, 1, 39, 30], [5, 8, 33, 44],
                          [0, 0, 4, 4]])
    flip = torch.tensor([False, True, False, True, False, True])
    for side in (24, 64):
        ours = crop_resample(x, crops, flip, side, mode)
        theirs = torch.stack([TF.resized_crop(x[k], *crops[k].tolist(), [side, side],
                                              interpolation=InterpolationMode(mode), antialias=True)
                              for k in range(len(x))])
        theirs = torch.where(flip.view(-1, 1, 1, 1), theirs.flip(-1), theirs)
        assert torch.allclose(ours, theirs.clamp(0, 1) if mode == "bicubic" else theirs, atol=1e-9), side


@pytest.mark.parametrize("size,scale", [((32, 32), 0.08), ((224, 224), 0.35), ((40, 64), 0.08)])
def test_random_resized_crops_are_drawn_as_torchvision_draws_them(size, scale):
    """Area and aspect of 20,000 batched draws against torchvision's ``RandomResizedCrop.get_params`` (ten tries,
    then its centre fallback): a two-sample KS test cannot tell them apart, where it tells the clipped draw
    (one try, clipped to the image: about 10 % of the largest crops reshaped) at once."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import v2

    from nas.engine.augment import resized_crop_boxes

    n, (height, width) = 20000, size
    torch.manual_seed(1)
    image = torch.zeros(1, height, width)
    theirs = np.array([v2.RandomResizedCrop.get_params(image, [scale, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    ours = resized_crop_boxes(n, size, (scale, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(2)).numpy()
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    clipped = Augmentation(crop="resized-clipped", scale=(scale, 1.0)).draw(n, torch.Generator().manual_seed(3))
    box = clipped["box"].numpy()

    def area(b):
        return b[:, 2] * b[:, 3] / (height * width)

    assert ks_2samp(area(theirs), area(ours)).pvalue > 1e-3
    assert ks_2samp(theirs[:, 3] / theirs[:, 2], ours[:, 3] / ours[:, 2]).pvalue > 1e-3
    assert ks_2samp(theirs[:, 0] / np.maximum(height - theirs[:, 2], 1),
                    ours[:, 0] / np.maximum(height - ours[:, 2], 1)).pvalue > 1e-3
    assert ks_2samp(area(theirs), box[:, 2] * box[:, 3]).pvalue < 1e-6
