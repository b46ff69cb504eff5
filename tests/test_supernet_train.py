"""Supernet training (sandwich rule, in-place distillation, exact resume), the one-shot evaluator of `nas search`
and `nas retrain --init supernet:DIR`, on a tiny space and tiny images."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
import torch
from timm.loss import SoftTargetCrossEntropy

import search_spaces
from nas.cli import main
from nas.files import StateError
from nas.search import SearchConfig, run_search, status_of
from nas.supernet import SuperNet, SupernetError, calibrated
from nas.supernet.checkpoint import load_snapshot, load_supernet
from nas.search.context import build_context
from nas.supernet.scoring import ScoringConfig, SupernetScorer
from nas.supernet.train import SandwichConfig, SupernetSpec, sandwich_archs, sandwich_step, train_supernet
from nas.training import ProxyConfig
from nas.training.components import RetrainError, build_student, load_init, normalisation
from swiftformer import SwiftFormerArch

from conftest import TINY_SPACE

FAST = {"epochs": 2, "batch_size": 16, "loader_workers": 0, "warmup_epochs": 0, "lr": 3e-3}
BUDGET = 0.4777  # about half of the tiny space is over it on iphone14


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def space_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


def spec(out, space_file, data, sandwich=SandwichConfig(downscale=2.0), **changes) -> SupernetSpec:
    return SupernetSpec(space=str(space_file), data=f"imagefolder:{data}", out=Path(out), sandwich=sandwich,
                        recipe_changes={**FAST, **changes})


@pytest.fixture(scope="session")
def trained(tmp_path_factory, space_file, tiny_imagefolder) -> Path:
    """A tiny supernet trained for 2 epochs, shared by the evaluator and --init tests."""
    out = tmp_path_factory.mktemp("supernet")
    train_supernet(spec(out, space_file, tiny_imagefolder), log=lambda text: None)
    return out


def tiny_supernet(classes: int = 3) -> tuple[search_spaces.SearchSpace, SuperNet]:
    space = dataclasses.replace(search_spaces.space_from_dict(__import__("yaml").safe_load(TINY_SPACE)),
                                num_classes=classes, in_chans=3)
    torch.manual_seed(0)
    supernet = SuperNet(space)
    supernet.set_distilled_training(False)  # as training does: the heads' mean learns
    return space, supernet


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("nas: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# ------------------------------------------------------------------------------------------------ sandwich
def test_the_sandwich_trains_largest_smallest_and_random_subnets_and_sums_their_gradients():
    space, supernet = tiny_supernet()
    archs = sandwich_archs(space, supernet, 2, seed=0, epoch=0, step=1)
    assert archs[0] == supernet.largest_arch() and archs[1] == supernet.smallest_arch() and len(archs) == 4
    assert archs[2:] == sandwich_archs(space, supernet, 2, seed=0, epoch=0, step=1)[2:]  # seeded by the step
    assert archs[2:] != sandwich_archs(space, supernet, 2, seed=0, epoch=0, step=2)[2:]
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    criterion = torch.nn.CrossEntropyLoss()
    supernet.train()
    sandwich_step(supernet, archs, [32] * 4, x, y, criterion, distill=True)
    summed = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}

    # the same gradients, one subnet at a time: the largest on the labels, the others on its soft predictions
    expected: dict[str, torch.Tensor] = {}
    teacher = supernet(x, archs[0]).detach().softmax(-1)
    for i, arch in enumerate(archs):
        supernet.zero_grad(set_to_none=True)
        logits = supernet(x, arch)
        (criterion(logits, y) if i == 0 else SoftTargetCrossEntropy()(logits, teacher)).backward()
        for n, p in supernet.named_parameters():
            if p.grad is not None:
                expected[n] = expected.get(n, 0) + p.grad
    assert summed.keys() == expected.keys()
    for n in summed:
        torch.testing.assert_close(summed[n], expected[n], rtol=1e-4, atol=1e-6)
    # the largest's last attention encoder trained; a block no subnet of this sandwich ran did not
    used = {f"network.{2 * s}.{j}.{b.type}." for a in archs for s, st in enumerate(a.stages)
            for j, b in enumerate(st.blocks)}
    blocks = {".".join(n.split(".")[:4]) + "." for n, _ in supernet.named_parameters()
              if n.startswith("network.") and int(n.split(".")[1]) % 2 == 0}
    assert used < blocks and all(any(n.startswith(block) for n in summed) for block in used)
    assert not any(n.startswith(tuple(blocks - used)) for n in summed)


def test_in_place_distillation_teaches_the_subnets_the_largest_predictions():
    space, supernet = tiny_supernet()
    archs = sandwich_archs(space, supernet, 1, seed=0, epoch=0, step=1)
    x = torch.randn(6, 3, 32, 32)
    y1, y2 = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 2, 2, 1, 1, 1])
    supernet.eval()  # no BN statistics move between the calls
    ce = torch.nn.CrossEntropyLoss()
    a = sandwich_step(supernet, archs, [32] * 3, x, y1, ce, distill=True)
    b = sandwich_step(supernet, archs, [32] * 3, x, y2, ce, distill=True)
    assert a[0] != b[0]  # the largest learns the labels
    assert torch.equal(torch.stack(a[1:]), torch.stack(b[1:]))  # the others do not see them...
    teacher = supernet(x, archs[0]).softmax(-1)
    torch.testing.assert_close(a[1], SoftTargetCrossEntropy()(supernet(x, archs[1]), teacher))  # ...but its output
    c = sandwich_step(supernet, archs, [32] * 3, x, y1, ce, distill=False)
    d = sandwich_step(supernet, archs, [32] * 3, x, y2, ce, distill=False)
    assert c[1] != d[1]  # without distillation they learn the labels


# ------------------------------------------------------------------------------------------------ training
def test_training_lowers_the_loss_and_writes_a_loadable_supernet(trained, space_file):
    description = json.loads((trained / "supernet.json").read_text())
    rows = description["log"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["train_loss_smallest"] < rows[0]["train_loss_smallest"]
    assert {"val_top1", "val_top1_uncalibrated", "val_top1_smallest"} <= set(rows[-1])
    assert (trained / "log.csv").is_file() and (trained / "curve.png").is_file()
    supernet, record = load_supernet(trained)
    assert record.downscale == 2.0 and record.num_classes == 3 and record.epochs == 2
    assert supernet.space.to_dict()["stages"] == search_spaces.load_space(str(space_file)).to_dict()["stages"]
    assert description["digest"] == record.digest


def test_resuming_after_a_stop_gives_the_uninterrupted_run(tmp_path, space_file, tiny_imagefolder):
    quiet = lambda text: None  # noqa: E731
    whole = train_supernet(spec(tmp_path / "whole", space_file, tiny_imagefolder), log=quiet)
    first = train_supernet(spec(tmp_path / "parts", space_file, tiny_imagefolder), stop_after_epoch=1, log=quiet)
    assert not first.finished and not (tmp_path / "parts" / "supernet.pth").exists()
    resumed = train_supernet(spec(tmp_path / "parts", space_file, tiny_imagefolder), log=quiet)
    assert resumed.finished
    a, b = whole.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in whole.log] == [r["train_loss"] for r in resumed.log]


def test_a_snapshot_is_the_finished_supernet_when_training_has_ended(trained, tmp_path):
    """``load_snapshot`` scores a training mid-way; at its end it must rebuild exactly what ``load_supernet`` does."""
    (snapshot, record), (final, final_record) = load_snapshot(trained), load_supernet(trained)
    assert record == final_record
    a, b = snapshot.state_dict(), final.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SupernetError, match="holds no last.pth"):
        load_snapshot(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"\x80\x02}q\x00(X"])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, content):
    for name in ("supernet.pth", "last.pth"):
        (tmp_path / name).write_bytes(content)
    for load, what in ((load_supernet, "supernet checkpoint"), (load_snapshot, "supernet training state")):
        with pytest.raises(StateError, match=f"is not a readable {what} "):
            load(tmp_path)


def test_a_changed_setting_is_refused_in_one_line(tmp_path, space_file, tiny_imagefolder, capsys):
    out = tmp_path / "run"
    train_supernet(spec(out, space_file, tiny_imagefolder), stop_after_epoch=1, log=lambda text: None)
    with pytest.raises(SupernetError, match="other settings \\(sandwich\\)"):
        train_supernet(spec(out, space_file, tiny_imagefolder, SandwichConfig(random_subnets=1, downscale=2.0)))
    with pytest.raises(SystemExit) as exc:
        main(["supernet", "train", "--space", str(space_file), "--data", f"imagefolder:{tiny_imagefolder}",
              "--out", str(out), "--downscale", "2", "--epochs", "3", "--batch-size", "16", "--loader-workers", "0"])
    assert exc.value.code == 2 and "other settings (recipe)" in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------- evaluator
def search_config(tmp_path, data, space, trained, **kwargs) -> SearchConfig:
    return SearchConfig(budget_ms=BUDGET, space=str(space), data=f"imagefolder:{data}",
                        proxy=ProxyConfig(epochs=1, downscale=2, subset=60), out=str(tmp_path / "run"),
                        evaluator=f"supernet:{trained}", **{"trials": 4, **kwargs})


def test_search_scores_calibrated_inherited_accuracy_and_resumes_without_rescoring(
        tmp_path, trained, space_file, tiny_imagefolder, monkeypatch):
    cfg = search_config(tmp_path, tiny_imagefolder, space_file, trained, scoring=ScoringConfig(uncalibrated=True))
    study, _ = run_search(cfg)
    scored = [t for t in study.get_trials() if status_of(t) == "trained"]
    assert len(scored) == 4 and all(t.user_attrs["evaluator"] == "supernet" for t in scored)
    report = (tmp_path / "run" / "report.md").read_text()  # it names the score it ranks by
    assert "inherited-weight accuracy on val" in report and "proxy" not in report.lower()

    # the same score computed another way: the sliced supernet under `calibrated`, on the scorer's images
    scorer = build_context(cfg, quiet=True).evaluator.scorer
    supernet = scorer.supernet
    for t in scored:
        arch = SwiftFormerArch.from_dict(t.user_attrs["arch"])
        side = scorer.record.side(arch)
        val_x, val_y = scorer.tensors("val", side)
        with torch.no_grad():
            raw = (supernet.eval()(val_x, arch).argmax(1) == val_y).float().mean().item()
            with calibrated(supernet, arch, [scorer.tensors("calibration", side)[0]]):
                top1 = (supernet.eval()(val_x).argmax(1) == val_y).float().mean().item()
        assert t.values[0] == pytest.approx(top1) == t.user_attrs["supernet_top1"]
        assert t.user_attrs["supernet_top1_uncalibrated"] == pytest.approx(raw)
        assert t.user_attrs["supernet_val_loss"] > 0

    monkeypatch.setattr(SupernetScorer, "score", lambda self, arch: pytest.fail("a finished study rescored"))
    again, _ = run_search(search_config(tmp_path, tiny_imagefolder, space_file, trained))  # (not recorded: resumes)
    assert len(again.get_trials()) == len(study.get_trials())


def test_the_uncalibrated_pass_is_skipped_unless_asked_and_changes_no_score(tmp_path, trained, space_file,
                                                                          tiny_imagefolder):
    cfg = search_config(tmp_path, tiny_imagefolder, space_file, trained)
    plain = build_context(cfg, quiet=True).evaluator.scorer
    both = build_context(dataclasses.replace(cfg, scoring=ScoringConfig(uncalibrated=True)), quiet=True).evaluator.scorer
    for arch in search_spaces.load_space(str(space_file)).samples(3, seed=1):
        a, b = plain.score(arch), both.score(arch)
        assert a.top1_uncalibrated is None and a.loss_uncalibrated is None and b.top1_uncalibrated is not None
        assert (a.top1, a.loss) == (b.top1, b.loss)


def test_architectures_the_supernet_cannot_hold_are_not_scorable(tmp_path, trained, tiny_imagefolder):
    wider = tmp_path / "wider.yaml"  # stage 2 may be wider than the supernet's 32 channels
    wider.write_text(TINY_SPACE.replace("width: [16, 24, 32]", "width: [24, 48]"))
    cfg = search_config(tmp_path, tiny_imagefolder, wider, trained, trials=2, sampler="random")
    study, _ = run_search(cfg)
    statuses = {status_of(t) for t in study.get_trials()}
    assert "not scorable" in statuses and "trained" in statuses
    failed = next(t for t in study.get_trials() if status_of(t) == "not scorable")
    assert failed.state == optuna.trial.TrialState.FAIL and "width = 48 exceeds" in failed.user_attrs["fail_reason"]


def test_a_proxy_study_is_not_resumed_as_a_supernet_study(tmp_path, trained, space_file, tiny_imagefolder):
    from nas.search import SearchError
    from nas.search.worker import open_study

    cfg = search_config(tmp_path, tiny_imagefolder, space_file, trained)
    Path(cfg.out).mkdir(parents=True)
    open_study(dataclasses.replace(cfg, evaluator="proxy"))
    with pytest.raises(SearchError, match="other settings \\(evaluator\\)"):
        open_study(cfg)


def test_search_cli_errors_are_one_line(tmp_path, trained, space_file, tiny_imagefolder, capsys):
    base = ["search", "--latency-budget", "0.4777ms", "--space", str(space_file), "--data",
            f"imagefolder:{tiny_imagefolder}", "--out", str(tmp_path / "run"), "--trials", "1"]
    for evaluator, expected in ((f"supernet:{tmp_path / 'none'}", "does not exist"),
                                ("supernet:", "not supported"), ("oneshot:x", "not supported")):
        with pytest.raises(SystemExit) as exc:
            main(base + ["--evaluator", evaluator])
        assert exc.value.code == 2 and expected in one_error_line(capsys)
    with pytest.raises(SystemExit) as exc:  # selecting on images the supernet trained on
        main(base + ["--evaluator", f"supernet:{trained}", "--val-seed", "1"])
    assert exc.value.code == 2 and "val fraction" in one_error_line(capsys)


# ------------------------------------------------------------------------------------------------- --init
def test_init_from_the_supernet_loads_the_extracted_weights(trained):
    supernet, _ = load_supernet(trained)
    arch = supernet.space.sample(3)
    model = build_student(arch.replace(resolution=32), *normalisation(3))
    note = load_init(model, f"supernet:{trained}")
    assert note.startswith(f"initialised from supernet {trained}")
    extracted = supernet.extract(arch).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), extracted(x), rtol=0, atol=1e-6)

    other = build_student(arch.replace(num_classes=5, distillation=False), *normalisation(3))
    note = load_init(other, f"supernet:{trained}")  # heads of another class count are left new
    assert "heads left new" in note
    assert torch.equal(other.state_dict()["norm.weight"], extracted.state_dict()["norm.weight"])


def test_init_errors_are_one_line(tmp_path, trained, tiny_imagefolder, capsys):
    wide = SwiftFormerArch.from_dict({"resolution": 32, "num_classes": 3, "stages": [
        {"width": 16, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
        {"width": 64, "blocks": [{"type": "conv", "mlp_ratio": 2}]}]})
    with pytest.raises(RetrainError, match="width = 64 exceeds"):
        load_init(build_student(wide, *normalisation(3)), f"supernet:{trained}")
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(wide.to_json())
    for init, expected in ((f"supernet:{trained}", "width = 64 exceeds"),
                           (f"supernet:{tmp_path / 'none'}", "does not exist"), ("weights:x", "not supported")):
        with pytest.raises(SystemExit) as exc:
            main(["retrain", str(arch_file), "--data", f"imagefolder:{tiny_imagefolder}", "--out", str(tmp_path / "r"),
                  "--init", init, "--epochs", "1", "--loader-workers", "0", "--export", "none"])
        assert exc.value.code == 2 and expected in one_error_line(capsys)
