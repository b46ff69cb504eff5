"""`nas retrain`: each part of the recipe is wired (EMA, distillation, mixup), resuming is exact, torchrun
works, and bad input gets one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import swiftformer
import timm
from nas.cli import main
from nas.data.datasets import Holdout
from nas.data.loaders import ArrayImages, ImageSplits, image_splits
from nas.training.recipe import Recipe, RecipeError, official_recipe
from nas.engine import Policy, evaluate
from nas.training.components import (RetrainError, build_mixup, build_student, build_task, data_pipeline, load_init,
                                     normalisation)
from nas.training.processes import Processes
from nas.training.retrain import RetrainSpec, ema_left_behind, retrain
from swiftformer import SwiftFormerArch

ARCH = {"resolution": 32, "num_classes": 10, "stages": [
    {"width": 8, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "attn", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 24, "blocks": [{"type": "attn", "mlp_ratio": 2}]}]}
FAST = {"epochs": 2, "batch_size": 16, "loader_workers": 0, "warmup_epochs": 0, "lr": 3e-3, "model_ema_decay": 0.9}


@pytest.fixture()
def arch_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(ARCH))
    return path


def spec(out, arch_file, data, **changes) -> RetrainSpec:
    return RetrainSpec(ref=str(arch_file), data=f"imagefolder:{data}", out=out, recipe_changes={**FAST, **changes},
                       exports=())


def one_error_line(capsys) -> str:
    """The error, after any progress lines: exactly one line, no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("nas: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def tensors(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_retrain_writes_loadable_checkpoints_card_log_and_onnx(tmp_path, arch_file, tiny_imagefolder, capsys):
    out = tmp_path / "run"
    main(["retrain", str(arch_file), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(out),
          "--epochs", "2", "--batch-size", "16", "--loader-workers", "0", "--export", "onnx"])
    err = capsys.readouterr().err
    assert "rebuilt for the data: num_classes 10 -> 3" in err and "epoch 2/2" in err and "ETA" in err
    for name in ("model.pth", "model_ema.pth", "arch.json", "recipe.yaml", "log.csv", "curve.png",
                 "results.json", "model_card.md", "model.onnx"):
        assert (out / name).is_file(), name
    arch = SwiftFormerArch.load(out / "arch.json")
    assert arch.num_classes == 3 and arch.resolution == 32
    model = swiftformer.create_model(str(out / "arch.json"))
    swiftformer.load_checkpoint(model, str(out / "model.pth"))  # strict, official naming
    via_timm = timm.create_model("swiftnas_arch", arch=str(out / "arch.json"), pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(out / "model_ema.pth")))
    assert torch.equal(via_timm.state_dict()["head.weight"], tensors(out / "model_ema.pth")["head.weight"])
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [1, 2] and log["val_top1"].notna().all()
    results = json.loads((out / "results.json").read_text())
    assert {"val_top1", "test_top1", "ema_val_top1", "latency_iphone14_ms", "params", "macs"} <= set(results)
    card = (out / "model_card.md").read_text()
    assert "test top-1" in card and "iphone14" in card and "108 train / 12 val" in card
    recipe = Recipe.load(out / "recipe.yaml")  # passes back as --recipe
    assert recipe.epochs == 2 and recipe.resolution == 32 and recipe.auto_augment is None  # XS's settings


def test_ema_differs_from_the_model_and_is_what_is_evaluated_when_asked(tmp_path, arch_file, tiny_imagefolder):
    result = retrain(spec(tmp_path / "run", arch_file, tiny_imagefolder, eval_model="ema"), log=lambda _: None)
    model, ema = tensors(tmp_path / "run/model.pth"), tensors(tmp_path / "run/model_ema.pth")
    assert any(not torch.equal(model[k], ema[k]) for k in model if model[k].is_floating_point())
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["headline_weights"] == "ema"
    # evaluating the saved EMA weights on val gives the EMA figures reported, not the model's
    net = build_student(result.arch, *normalisation(3))
    net.load_state_dict(ema)
    splits = image_splits(f"imagefolder:{tiny_imagefolder}")
    pipeline = data_pipeline(splits, result.recipe, 32, Processes(), torch.device("cpu"))
    again = evaluate(net, pipeline.val(), Policy.for_device("cpu")).percent()
    assert again["loss"] == pytest.approx(result.final["ema_val_loss"], rel=1e-5)
    assert result.final["ema_val_loss"] != pytest.approx(result.final["val_loss"], rel=1e-6)


def test_a_run_too_short_for_its_ema_is_told_so():
    short = Recipe().replace(model_ema_decay=0.999)
    note = ema_left_behind(short, 1755)  # the CPU recipe's 5 epochs on CIFAR-10: 17 % of the start remains
    assert note is not None and "17%" in note and "model_ema_warmup" in note
    assert ema_left_behind(short.replace(model_ema_warmup=True), 1755) is None
    assert ema_left_behind(short, 10_000) is None  # 0.999 ** 10,000 is nothing


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, arch_file, tiny_imagefolder):
    changes = {"epochs": 3, "mixup": 0.8, "cutmix": 1.0, "auto_augment": "rand-m9-mstd0.5-inc1"}
    whole = retrain(spec(tmp_path / "whole", arch_file, tiny_imagefolder, **changes), log=lambda _: None)
    first = retrain(spec(tmp_path / "parts", arch_file, tiny_imagefolder, **changes), stop_after_epoch=1,
                    log=lambda _: None)
    assert first.epochs_done == 1 and not first.finished and not (tmp_path / "parts/model.pth").exists()
    lines = []
    rest = retrain(spec(tmp_path / "parts", arch_file, tiny_imagefolder, **changes), log=lines.append)
    assert any("resuming" in line and "after epoch 1/3" in line for line in lines)
    for name in ("model.pth", "model_ema.pth"):
        a, b = tensors(tmp_path / "whole" / name), tensors(tmp_path / "parts" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    same = ["epoch", "lr", "train_loss", "val_top1", "val_loss", "ema_val_loss"]
    assert [{k: r[k] for k in same} for r in whole.log] == [{k: r[k] for k in same} for r in rest.log]
    assert len(pd.read_csv(tmp_path / "parts/log.csv")) == 3  # no row written twice


def test_a_run_stopped_inside_an_epoch_resumes_to_the_uninterrupted_run(tmp_path, arch_file, tiny_imagefolder):
    """The resident path (device augmentation: crop, flip, jitter, erasing, mixup), stopped after its first step."""
    changes = {"epochs": 2, "auto_augment": None, "re_prob": 0.5, "mixup": 0.8, "cutmix": 1.0}
    whole = retrain(spec(tmp_path / "whole", arch_file, tiny_imagefolder, **changes), log=lambda _: None)
    lines = []
    first = retrain(spec(tmp_path / "parts", arch_file, tiny_imagefolder, **changes), log=lines.append,
                    deadline=0.0)
    assert not first.finished and any("stopped after epoch 0/2 and step 1 of the next" in x for x in lines)
    lines.clear()
    rest = retrain(spec(tmp_path / "parts", arch_file, tiny_imagefolder, **changes), log=lines.append)
    assert any("resuming" in x and "step 1/" in x for x in lines) and any("resident" in x for x in lines)
    for name in ("model.pth", "model_ema.pth"):
        a, b = tensors(tmp_path / "whole" / name), tensors(tmp_path / "parts" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert [r["train_loss"] for r in whole.log] == [r["train_loss"] for r in rest.log]


def test_resume_refuses_other_settings(tmp_path, arch_file, tiny_imagefolder, capsys):
    retrain(spec(tmp_path / "run", arch_file, tiny_imagefolder), stop_after_epoch=1, log=lambda _: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["retrain", str(arch_file), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(tmp_path / "run"),
              "--epochs", "5", "--loader-workers", "0"])
    assert exit_info.value.code == 2 and one_error_line(capsys).count("other settings (recipe)") == 1


def _student_and_batch():
    arch = SwiftFormerArch.from_dict({**ARCH, "num_classes": 3})
    torch.manual_seed(0)
    return build_student(arch, *normalisation(3)), torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])


def _teacher(seed: int):
    torch.manual_seed(seed)
    return timm.create_model("resnet10t", num_classes=3)


def test_the_distillation_loss_reads_the_teacher():
    recipe = Recipe(smoothing=0.0, mixup=0.0, cutmix=0.0)
    losses = []
    for seed in (1, 1, 2):
        student, x, y = _student_and_batch()
        task = build_task(student, recipe, _teacher(seed), torch.device("cpu"))
        out = {k: float(v.detach()) for k, v in task(x, y).items() if k != "output"}
        assert out["loss"] == pytest.approx(0.5 * out["task_loss"] + 0.5 * out["distill_loss"])
        losses.append(float(out["distill_loss"]))
    assert losses[0] == losses[1] and losses[0] != losses[2]  # same teacher, same loss; another teacher, another


def test_cli_distils_from_a_teacher_checkpoint(tmp_path, arch_file, tiny_imagefolder, capsys):
    teacher = _teacher(0)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    main(["retrain", str(arch_file), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(tmp_path / "run"),
          "--epochs", "1", "--batch-size", "16", "--loader-workers", "0", "--export", "none", "--teacher", "timm:resnet10t",
          "--teacher-checkpoint", str(tmp_path / "teacher.pth")])
    assert "distilling from timm:resnet10t" in capsys.readouterr().err
    assert json.loads((tmp_path / "run/results.json").read_text())["teacher"] == "timm:resnet10t"


def test_init_warm_starts_from_a_checkpoint_and_leaves_other_heads_new(tmp_path):
    arch = SwiftFormerArch.from_dict(ARCH)
    source = build_student(arch, *normalisation(3))
    torch.save(source.state_dict(), tmp_path / "ten.pth")
    same = build_student(arch, *normalisation(3))
    assert "initialised from" in load_init(same, f"checkpoint:{tmp_path / 'ten.pth'}")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in same.state_dict().items())
    three = build_student(arch.replace(num_classes=3), *normalisation(3))
    assert "heads left new" in load_init(three, f"checkpoint:{tmp_path / 'ten.pth'}")
    assert torch.equal(three.state_dict()["norm.weight"], source.state_dict()["norm.weight"])
    wider = build_student(arch.replace(stages=(arch.stages[0].__class__(width=12, blocks=arch.stages[0].blocks),
                                               *arch.stages[1:])), *normalisation(3))
    with pytest.raises(RetrainError, match="of another architecture"):
        load_init(wider, f"checkpoint:{tmp_path / 'ten.pth'}")


def test_mixup_gives_soft_targets():
    mixup = build_mixup(Recipe(mixup=0.8, cutmix=1.0, smoothing=0.1), num_classes=3)
    torch.manual_seed(0)
    np.random.seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mixed, targets = mixup(x.clone(), y)
    assert targets.shape == (8, 3) and torch.allclose(targets.sum(1), torch.ones(8))
    assert (targets.max(1).values < 1).all() and not torch.equal(mixed, x)
    assert build_mixup(Recipe(mixup=0.0, cutmix=0.0), 3) is None


def test_grey_images_go_through_the_official_augmentation():
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 255, (64, 28, 28, 1), dtype=np.uint8), np.arange(64) % 4)
    splits = ImageSplits("grey", ("a", "b", "c", "d"), 1, images, images, images,
                         Holdout(np.arange(64), np.arange(0), 0.1, 0), False)
    for recipe in (Recipe(loader_workers=0, batch_size=16), Recipe(loader_workers=0, batch_size=16, auto_augment=None)):
        pipeline = data_pipeline(splits, recipe, 32, Processes(), torch.device("cpu"))
        assert next(iter(pipeline.train.epoch(0)))[0].shape == (16, 1, 32, 32)
        assert next(iter(pipeline.val()))[0].shape == (32, 1, 32, 32)
    assert pipeline.train.path == "resident" and "resident" in pipeline.path


def test_repeated_augmentation_applies_across_processes_only():
    """timm's loader refuses aug_repeats on one process; ours trains each image once an epoch there (and says so),
    and spreads an image's copies over the ranks of several."""
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 255, (48, 16, 16, 3), dtype=np.uint8), np.arange(48) % 4)
    splits = ImageSplits("tiny", ("a", "b", "c", "d"), 3, images, images, images,
                         Holdout(np.arange(48), np.arange(0), 0.1, 0), False)
    recipe = Recipe(loader_workers=0, batch_size=8, auto_augment=None, aug_repeats=3)
    one = data_pipeline(splits, recipe, 16, Processes(), torch.device("cpu"))
    order, _ = one.train.plans.plan(0)
    assert sorted(order.tolist()) == list(range(48))  # each image once (before: 3 copies of 16 images)
    assert "aug_repeats 3 applies across processes only" in one.path
    ranks = [data_pipeline(splits, recipe, 16, Processes(rank, 3, rank), torch.device("cpu")).train.plans.plan(0)[0]
             for rank in range(3)]
    assert all(r[0] == ranks[0][0] for r in ranks)  # an image's 3 copies go to the 3 ranks, one each
    assert "applies across processes" not in data_pipeline(splits, recipe, 16, Processes(0, 3, 0),
                                                           torch.device("cpu")).path


def test_small_trees_are_resident_and_trees_of_photographs_stream(tiny_imagefolder, tmp_path):
    splits = image_splits(f"imagefolder:{tiny_imagefolder}")
    assert not splits.streamed and len(splits.train) == 108 and len(splits.val) == 12 and len(splits.test) == 36
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 6)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    photos = image_splits(f"imagefolder:{tmp_path}")
    assert photos.streamed and len(photos.train) == 44 and len(photos.test) == 12
    pipeline = data_pipeline(photos, Recipe(loader_workers=2, batch_size=8, resolution=32), 32, Processes(),
                             torch.device("cpu"))
    batches = list(pipeline.train.epoch(0))
    assert pipeline.train.path == "streaming" and "RandAugment" in pipeline.path
    assert len(batches) == 44 // 8 and batches[0][0].shape == (8, 3, 32, 32) and batches[0][0].dtype == torch.float32
    assert sum(len(y) for _, y in pipeline.test()) == 12  # every test image once


def test_official_recipe_per_variant_and_learning_rate_scaling(tmp_path):
    xs, name = official_recipe(swiftformer.variant("xs"))
    assert name == "xs" and xs.auto_augment is None and not xs.mixup_active
    l1, name = official_recipe(swiftformer.variant("l1"))
    assert name == "l1" and l1.mixup == 0.8 and l1.auto_augment == "rand-m9-mstd0.5-inc1"
    assert Recipe(batch_size=128).learning_rate(16) == pytest.approx(2e-3)  # the official 16 x 128
    assert Recipe(batch_size=128).learning_rate(1) == pytest.approx(5e-4)  # square-root scaling
    l1.save(tmp_path / "r.yaml")
    assert Recipe.load(tmp_path / "r.yaml") == l1
    with pytest.raises(RecipeError, match="unknown key.*'mixpu'"):
        Recipe.from_dict({"mixpu": 0})


@pytest.mark.parametrize("args, message", [
    (["swiftformer:xxl"], "unknown SwiftFormer variant 'xxl'"),
    (["timm:resnet18"], "not of the SwiftFormer family"),
    (["{arch}", "--data", "imagefolder:/no/such/dir"], "no such directory"),
    (["{arch}", "--set", "mixup=lots"], "mixup 'lots' is not a float"),
    (["{arch}", "--set", "sched=linear"], "recipe sched 'linear' is not supported; accepted: cosine"),
    (["{arch}", "--recipe", "/no/recipe.yaml"], "recipe file '/no/recipe.yaml' does not exist"),
    (["{arch}", "--init", "weights:x.pth"], "--init 'weights:x.pth' is not supported; accepted: checkpoint:FILE, supernet:DIR"),
    (["{arch}", "--teacher", "timm:resnet10t"], "needs its trained weights: --teacher-checkpoint"),
    (["{arch}", "--export", "tflite"], "unknown format 'tflite'"),
])
def test_bad_input_gets_one_line(tmp_path, arch_file, tiny_imagefolder, capsys, args, message):
    args = [a.replace("{arch}", str(arch_file)) for a in args]
    data = [] if "--data" in args else ["--data", f"imagefolder:{tiny_imagefolder}"]
    with pytest.raises(SystemExit) as exit_info:
        main(["retrain", *args, *data, "--out", str(tmp_path / "run"), "--loader-workers", "0"])
    assert exit_info.value.code == 2 and message in one_error_line(capsys)


def test_torchrun_two_processes_train_and_write_one_checkpoint(tmp_path, arch_file, tiny_imagefolder):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nas",
         "retrain", str(arch_file), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(out), "--epochs", "1",
         "--batch-size", "8", "--loader-workers", "0", "--export", "none", "--train-device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("epoch 1/1: train loss") == 1  # only rank 0 speaks
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and (out / "model.pth").is_file()
    assert sorted(p.name for p in out.glob("*.pth")) == ["last.pth", "model.pth", "model_ema.pth"]


def test_chunks_stop_inside_an_epoch_alone_and_at_epoch_ends_under_torchrun(monkeypatch):
    """Under torchrun every process must stop and save at the same step: they agree (one collective) at epoch
    ends only, and save after each epoch; a single process stops at the first step past its deadline."""
    from nas.engine import LoopState
    from nas.training.components import chunk_rules

    asked = []
    monkeypatch.setattr(Processes, "any", lambda self, flag, device: asked.append(flag) or flag)
    past, future = 0.0, 1e12
    stop, every = chunk_rules(past, Processes(), torch.device("cpu"))
    assert stop(LoopState(step=3)) and every is not None
    stop, every = chunk_rules(past, Processes(rank=1, world=2), torch.device("cpu"))
    assert every is None and not stop(LoopState(step=3)) and asked == []
    assert stop(LoopState(epoch=1, step=0)) and asked == [True]
    stop, _ = chunk_rules(future, Processes(rank=0, world=2), torch.device("cpu"))
    assert not stop(LoopState(epoch=1, step=0))
    assert chunk_rules(None, Processes(rank=0, world=2), torch.device("cpu")) == (None, None)


def test_a_recipe_names_its_crop_draw_and_a_record_without_one_was_drawn_clipped():
    """A retraining's crops are drawn as torchvision draws them, and its identity says so; one recorded before
    (its recipe names no draw) reads back as the clipped draw and keeps its identity, so a checkpoint of either
    never resumes as the other."""
    from nas.training.components import recipe_augmentation

    recipe = Recipe()
    assert recipe.to_dict()["crop_draw"] == "torchvision" and recipe_augmentation(recipe).crop == "resized"
    before = {k: v for k, v in recipe.to_dict().items() if k != "crop_draw"}
    old = Recipe.recorded(before)
    assert old.crop_draw == "clipped" and old.to_dict() == before
    assert recipe_augmentation(old).crop == "resized-clipped"
    assert Recipe.recorded(recipe.to_dict()) == recipe
    with pytest.raises(RecipeError, match="crop_draw"):
        Recipe.from_dict({"crop_draw": "pil"})
