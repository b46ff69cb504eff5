"""Every file a run keeps, damaged the ways files get damaged, answered in one line with nothing lost (issue 37).

``test_every_damaged_state_is_one_line_and_loses_nothing`` walks a table of (file, damage, command): for each
it damages a copy of a real run's folder, runs the command in this process (as a user would type it) and checks
the three promises: a non-zero exit with exactly one ``error:`` line that names the damaged file, no traceback,
and every file that was there byte-for-byte as it was (nothing overwritten, truncated or deleted). It prints the
count that README's reliability table gives. The tests after it are the crashes that must recover on their own:
a journal whose last line a kill cut, a half-written checkpoint, a full disk while saving.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import sqlite3
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import pytest
import torch

from nas.cli import main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_fidelity  # noqa: E402
import bench_verdicts  # noqa: E402
from conftest import TINY_SPACE  # noqa: E402

ARCH = {"resolution": 32, "num_classes": 10, "stages": [
    {"width": 8, "blocks": [{"type": "conv", "mlp_ratio": 2}]},
    {"width": 16, "blocks": [{"type": "attn", "mlp_ratio": 2}]}]}


# ---------------------------------------------------------------------------------------------- the runs
@pytest.fixture(scope="module")
def kept(tmp_path_factory, tiny_imagefolder):
    """Real state, made once: a search (SQLite study) and its copy in a journal, a retraining stopped inside its
    first epoch, a trained supernet, a CIFAR-10 archive, a verdict plan's and a proving ground's state."""
    root = tmp_path_factory.mktemp("kept")
    (root / "tiny.yaml").write_text(TINY_SPACE)
    (root / "arch.json").write_text(json.dumps(ARCH))
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        main(search_args(root, root / "search"))
        main([*retrain_args(root, tiny_imagefolder), "--out", str(root / "retrain"), "--minutes", "0.0005"])
        main(["supernet", "train", "--space", str(root / "tiny.yaml"), "--data", f"imagefolder:{tiny_imagefolder}",
              "--out", str(root / "supernet"), "--epochs", "1", "--batch-size", "16", "--loader-workers", "0"])
    shutil.copytree(root / "search", root / "journal", ignore=shutil.ignore_patterns("study.db"))
    optuna.copy_study(from_study_name=study_name(root / "search"), from_storage=f"sqlite:///{root}/search/study.db",
                      to_storage=optuna.storages.JournalStorage(
                          optuna.storages.journal.JournalFileBackend(str(root / "journal" / "study.log"))))
    with tarfile.open(root / "cifar.tar.gz", "w:gz") as tar:
        tar.add(tiny_imagefolder, arcname="cifar")
    (root / "verdicts").mkdir()
    (root / "verdicts" / "plan.yaml").write_text(
        "name: toy\ndata: cifar10:x.tar.gz\nrecipe: recipe.yaml\nseeds: 2\n")
    (root / "verdicts" / "toy").mkdir()
    (root / "verdicts" / "toy" / "models.json").write_text("{}\n")
    from nas.proving.plan import PLANS

    (root / "proving").mkdir()
    (root / "proving" / "plan.json").write_text(json.dumps(PLANS["quick"].to_dict(), indent=2) + "\n")
    (root / "proving" / "runs.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c"}\n')
    (root / "fidelity").mkdir()
    (root / "fidelity" / "architectures.jsonl").write_text(
        "".join(json.dumps({"name": name, "arch": ARCH}) + "\n" for name in "abc"))
    return root


def search_args(root: Path, out: Path, *extra: str, trials: int = 2) -> list[str]:
    return ["search", "--latency-budget", "10ms", "--space", str(root / "tiny.yaml"), "--data",
            f"imagefolder:{TINY[0]}", "--trials", str(trials), "--proxy-epochs", "1", "--proxy-downscale", "4",
            "--proxy-subset", "30", "--out", str(out), *extra]


def retrain_args(root: Path, data: Path) -> list[str]:
    return ["retrain", str(root / "arch.json"), "--data", f"imagefolder:{data}", "--epochs", "2", "--batch-size",
            "16", "--loader-workers", "0"]


TINY: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def tiny_data(tiny_imagefolder):
    TINY[:] = [tiny_imagefolder]


def study_name(folder: Path) -> str:
    return json.loads((folder / "search.json").read_text())["study"]


# ---------------------------------------------------------------------------------------------- damages
def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x17 not what was here \xff" * 20)


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def folder_instead(path: Path) -> None:
    if path.exists():
        path.unlink()
    path.mkdir()
    (path / "something").write_text("a user's file")


def missing(path: Path) -> None:
    path.unlink()


def file_instead(path: Path) -> None:
    path.write_text("a user's file")


def binary(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00\x81binary")


def not_json(path: Path) -> None:
    path.write_text('{"cut": [1, 2')


def bad_second_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"{damaged\n"
    path.write_bytes(b"".join(lines))


def foreign_tables(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("create table studies (id integer, owner text)")
        db.commit()


def other_optuna_schema(path: Path) -> None:
    """An Optuna database whose schema version this Optuna does not know (as a newer Optuna would leave it)."""
    optuna.storages.RDBStorage(f"sqlite:///{path}").engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("update alembic_version set version_num = 'v9.9.9.a'")
        db.commit()


def unreadable(path: Path) -> None:
    """No permission to read (as root, who may read anything, the refusal is injected at ``open``)."""
    path.chmod(0)


@dataclass
class Case:
    name: str  # what is damaged, and how
    file: str  # the damaged file, relative to the case's folder
    damage: Callable[[Path], None]
    command: Callable[[Path], list[str]]  # the command, given the case's folder
    names: str = ""  # what the error line must name (default: the file's name)
    runner: str = "nas"  # nas | verdicts | fidelity


def S(*extra: str) -> Callable[[Path], list[str]]:
    return lambda w: search_args(w, w / "search", *extra)


def R(*extra: str, out: str = "retrain") -> Callable[[Path], list[str]]:
    return lambda w: [*retrain_args(w, TINY[0]), "--out", str(w / out), "--minutes", "0.0005", *extra]


SUPERNET_TRAIN = lambda w: ["supernet", "train", "--space", str(w / "tiny.yaml"), "--data",  # noqa: E731
                            f"imagefolder:{TINY[0]}", "--out", str(w / "supernet"), "--epochs", "1",
                            "--batch-size", "16", "--loader-workers", "0"]
JOURNAL = lambda w: search_args(w, w / "journal", "--storage", f"journal:{w / 'journal' / 'study.log'}")  # noqa
PREDICT = lambda w: ["latency", "predict", "--model", "swiftformer:xs", "--predictor", str(w / "phone.json")]  # noqa
SPACE_SHOW = lambda w: ["space", "show", str(w / "space.yaml")]  # noqa: E731
CIFAR = lambda w: ["search", "--latency-budget", "10ms", "--space", str(w / "tiny.yaml"), "--data",  # noqa: E731
                   f"cifar10:{w / 'cifar.tar.gz'}", "--trials", "1", "--out", str(w / "cifar-run")]
BENCH = lambda w: ["benchmark", "--plan", "quick", "--out", str(w / "proving"), "--report-only"]  # noqa: E731

CASES = [
    # the study: SQLite, journal, RDB
    Case("study.db garbage", "search/study.db", garbage, S()),
    Case("study.db truncated", "search/study.db", truncated, S()),
    Case("study.db emptied (its outputs list trials)", "search/study.db", emptied, S(), names="trials.csv"),
    Case("study.db deleted (its outputs list trials)", "search/study.db", missing, S(), names="trials.csv"),
    Case("study.db a folder", "search/study.db", folder_instead, S()),
    Case("study.db garbage, nas report", "search/study.db", garbage, lambda w: ["report", str(w / "search")]),
    Case("--storage: a database of other tables", "other.db", foreign_tables,
         S("--storage", "sqlite:///{w}/other.db")),
    Case("--storage: another Optuna's schema", "other.db", other_optuna_schema, S("--storage", "sqlite:///{w}/other.db")),
    Case("--storage: a server that does not answer", "", lambda p: None,
         S("--storage", "postgresql://nas@127.0.0.1:9/x", "--storage-patience", "0.5"), names="127.0.0.1:9"),
    Case("journal: a damaged line", "journal/study.log", bad_second_line, JOURNAL),
    Case("journal: binary", "journal/study.log", binary, JOURNAL, names="journal"),
    Case("journal: a folder", "journal/study.log", folder_instead, JOURNAL),
    Case("journal: emptied (its outputs list trials)", "journal/study.log", emptied, JOURNAL, names="trials.csv"),
    Case("journal: unreadable", "journal/study.log", unreadable, JOURNAL),
    Case("search.json garbage, nas report", "search/search.json", not_json, lambda w: ["report", str(w / "search")]),
    Case("search.json of another version, nas report", "search/search.json", lambda p: p.write_text('{"x": 1}'),
         lambda w: ["report", str(w / "search")]),
    Case("trials.csv a folder, nas report", "search/trials.csv", folder_instead,
         lambda w: ["report", str(w / "search")]),
    Case("--out a file", "search-file", file_instead, lambda w: search_args(w, w / "search-file")),
    Case("--out under a file", "search-file", file_instead, lambda w: search_args(w, w / "search-file" / "run")),
    Case("ablation.json garbage, nas ablate report", "ablation/ablation.json", not_json,
         lambda w: ["ablate", "report", str(w / "ablation")]),
    # checkpoints
    Case("retrain last.pth garbage", "retrain/last.pth", garbage, R()),
    Case("retrain last.pth truncated", "retrain/last.pth", truncated, R()),
    Case("retrain last.pth emptied", "retrain/last.pth", emptied, R()),
    Case("retrain last.pth a folder", "retrain/last.pth", folder_instead, R()),
    Case("retrain last.pth unreadable", "retrain/last.pth", unreadable, R()),
    Case("retrain --out a file", "retrain-file", file_instead,
         lambda w: [*retrain_args(w, TINY[0]), "--out", str(w / "retrain-file")]),
    Case("supernet last.pth truncated", "supernet/last.pth", truncated, SUPERNET_TRAIN),
    Case("supernet.pth truncated, --evaluator", "supernet/supernet.pth", truncated,
         S("--evaluator", "supernet:{w}/supernet")),
    Case("supernet.json garbage, --evaluator", "supernet/supernet.json", not_json,
         S("--evaluator", "supernet:{w}/supernet")),
    Case("supernet.pth garbage, --init", "supernet/supernet.pth", garbage, R("--init", "supernet:{w}/supernet", out="fresh")),
    Case("--init checkpoint garbage", "weights.pth", garbage, R("--init", "checkpoint:{w}/weights.pth", out="fresh")),
    Case("--teacher-checkpoint garbage", "weights.pth", garbage,
         R("--teacher", "swiftformer:xs", "--teacher-checkpoint", "{w}/weights.pth", out="fresh")),
    # predictor JSON, space and recipe YAML
    Case("predictor garbage", "phone.json", not_json, PREDICT),
    Case("predictor emptied", "phone.json", emptied, PREDICT),
    Case("predictor binary", "phone.json", binary, PREDICT),
    Case("predictor a list", "phone.json", lambda p: p.write_text("[1, 2]"), PREDICT),
    Case("predictor a folder", "phone.json", folder_instead, PREDICT),
    Case("predictor unreadable", "phone.json", unreadable, PREDICT),
    Case("space YAML garbage", "space.yaml", lambda p: p.write_text("stages: [1, 2"), SPACE_SHOW),
    Case("space YAML emptied", "space.yaml", emptied, SPACE_SHOW),
    Case("space YAML binary", "space.yaml", binary, SPACE_SHOW),
    Case("space YAML unreadable", "space.yaml", unreadable, SPACE_SHOW),
    Case("recipe YAML garbage", "recipe.yaml", lambda p: p.write_text("epochs: [1"), R("--recipe", "{w}/recipe.yaml")),
    Case("recipe YAML binary", "recipe.yaml", binary, R("--recipe", "{w}/recipe.yaml")),
    # data: archives, the decoded cache's folder, trees
    Case("CIFAR-10 archive truncated", "cifar.tar.gz", truncated, CIFAR),
    Case("CIFAR-10 archive garbage", "cifar.tar.gz", garbage, CIFAR),
    Case("CIFAR-10 archive emptied", "cifar.tar.gz", emptied, CIFAR),
    Case("CIFAR-10 archive unreadable", "cifar.tar.gz", unreadable, CIFAR),
    Case("CIFAR-10 batches garbage", "batches/data_batch_1", garbage,
         lambda w: [*CIFAR(w)[:4], str(w / "tiny.yaml"), "--data", f"cifar10:{w / 'batches'}", *CIFAR(w)[7:]]),
    Case("data cache folder a file", "cache", file_instead, CIFAR, names="NAS_CACHE_DIR"),
    Case("imagefolder a file", "images", file_instead,
         lambda w: [*CIFAR(w)[:6], f"imagefolder:{w / 'images'}", *CIFAR(w)[7:]]),
    # the verdict plans', the fidelity runs' and the proving ground's state
    Case("verdict plan: models.json garbage", "verdicts/toy/models.json", not_json,
         lambda w: ["report", "--plan", str(w / "verdicts" / "plan.yaml")], runner="verdicts"),
    Case("verdict plan: noise.json garbage", "verdicts/toy/noise.json", not_json,
         lambda w: ["report", "--plan", str(w / "verdicts" / "plan.yaml")], runner="verdicts"),
    Case("fidelity: architectures.jsonl damaged", "fidelity/architectures.jsonl", bad_second_line,
         lambda w: ["run"], runner="fidelity"),
    Case("proving ground: plan.json garbage", "proving/plan.json", not_json, BENCH),
    Case("proving ground: runs.jsonl damaged", "proving/runs.jsonl", bad_second_line, BENCH),
]
# files the cases damage that no run made: made before the damage
MADE = {"phone.json": lambda p: p.write_text(json.dumps(_shipped())),
        "space.yaml": lambda p: p.write_text(TINY_SPACE), "recipe.yaml": lambda p: p.write_text("epochs: 1\n"),
        "weights.pth": lambda p: torch.save({"w": torch.zeros(1)}, p),
        "batches/data_batch_1": lambda p: p.write_bytes(b"")}


def _shipped() -> dict:
    from nas.latency import load_device

    return load_device("iphone14").to_dict()


# ---------------------------------------------------------------------------------------------- running a case
def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and os.access(p, os.R_OK) and not p.is_symlink()
            and p.stat().st_mode & 0o444}


@contextlib.contextmanager
def refused_reads(path: Path):
    """Reading ``path`` fails with EACCES, as it would for a user without permission (root reads anything)."""
    real_open = io.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).resolve() == path.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    if os.geteuid() != 0:
        yield
        return
    import builtins

    saved = builtins.open, io.open
    builtins.open = io.open = guarded
    try:
        yield
    finally:
        builtins.open, io.open = saved


def run(case: Case, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """The exit status and stderr of the case's command in this process; an uncaught exception is a traceback."""
    argv = [a.replace("{w}", str(folder)) for a in case.command(folder)]
    err = io.StringIO()
    with monkeypatch.context() as patch, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        patch.setenv("NAS_CACHE_DIR", str(folder / "cache"))
        reading = refused_reads(folder / case.file) if case.damage is unreadable else contextlib.nullcontext()
        try:
            with reading:
                if case.runner == "verdicts":
                    code = bench_verdicts.main(argv)
                elif case.runner == "fidelity":
                    patch.setattr(bench_fidelity, "ARCHS", folder / "fidelity" / "architectures.jsonl")
                    patch.setattr(sys, "argv", ["bench_fidelity.py", *argv])
                    bench_fidelity.main()
                    code = 0
                else:
                    code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (print(exit_.code, file=err) or 1)
        except BaseException as exc:  # noqa: BLE001 (what a user would see as a traceback)
            return -1, f"Traceback: {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def check(case: Case, kept: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None when the case keeps the three promises, else what it broke."""
    folder = tmp / case.name.replace(" ", "_").replace("/", "_").replace(":", "")
    shutil.copytree(kept, folder)
    for name in ("search", "journal"):
        meta = folder / name / "search.json"
        meta.write_text(meta.read_text().replace(str(kept), str(folder)))
    (folder / "ablation").mkdir()
    (folder / "ablation" / "ablation.json").write_text("{}")
    path = folder / case.file
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.file in MADE:
        MADE[case.file](path)
    if case.file:
        case.damage(path)
    before = snapshot(folder)
    code, err = run(case, folder, monkeypatch)
    if case.damage is unreadable:
        path.chmod(0o644)
    lines = [line for line in err.splitlines() if "error:" in line]
    problems = []
    if code in (0, None):
        problems.append("exit status 0")
    if "Traceback" in err:
        problems.append(f"a traceback ({err.strip().splitlines()[-1][:200]})")
    elif len(lines) != 1:
        problems.append(f"{len(lines)} error lines: {err.strip()[-300:]!r}")
    elif (case.names or Path(case.file).name) not in lines[0]:
        problems.append(f"the error does not name {case.names or Path(case.file).name}: {lines[0]}")
    after = snapshot(folder)
    lost = sorted(name for name, digest in before.items() if after.get(name) != digest)
    if lost:
        problems.append(f"files changed or lost: {', '.join(lost)}")
    return "; ".join(problems) or None


def test_every_damaged_state_is_one_line_and_loses_nothing(kept, tmp_path, monkeypatch, capsys):
    outcomes = {case.name: check(case, kept, tmp_path, monkeypatch) for case in CASES}
    failed = {name: problem for name, problem in outcomes.items() if problem}
    with capsys.disabled():
        print(f"\n{len(CASES)} damaged states tried, {len(CASES) - len(failed)} answered in one line, "
              f"{sum('lost' in p for p in failed.values())} with files lost")
    assert not failed, "\n".join(f"{name}: {problem}" for name, problem in failed.items())


# ---------------------------------------------------------------------------------------------- crashes that recover
def copy_of(kept: Path, tmp: Path, name: str) -> Path:
    folder = tmp / "w"
    shutil.copytree(kept, folder)
    meta = folder / name / "search.json"
    if meta.exists():
        meta.write_text(meta.read_text().replace(str(kept), str(folder)))
    return folder


def nas_here(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_a_journal_whose_last_record_a_kill_cut_resumes_with_its_trials(kept, tmp_path, capsys):
    w = copy_of(kept, tmp_path, "journal")
    journal = w / "journal" / "study.log"
    whole = journal.read_bytes()
    cut = whole[:-25]  # a kill in the middle of the last append
    journal.write_bytes(cut)
    storage = f"journal:{journal}"
    code, err = nas_here(capsys, search_args(kept, w / "journal", "--storage", storage, trials=3))  # (its space)
    assert code in (0, None), err
    assert "its last record was cut by a kill or a full disk" in err
    side = next((w / "journal").glob("study.log.cut-*"))
    assert journal.read_bytes()[:len(cut) - len(side.read_bytes())] + side.read_bytes() == cut  # nothing dropped
    before = optuna.load_study(study_name=study_name(w / "journal"), storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    finished = [t for t in before.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) >= 3  # the two trained before the kill (one of them retrained if its end was cut) and one more


def test_a_half_written_checkpoint_is_never_loaded(kept, tmp_path, capsys):
    w = copy_of(kept, tmp_path, "retrain")
    partial = w / "retrain" / ".last.4242-abcdef.partial.pth"
    partial.write_bytes(b"half a checkpoint")
    code, err = nas_here(capsys, R()(w))
    assert code in (0, None), err
    assert f"{partial} is a half-written checkpoint" in err and "resuming from last.pth" in err
    assert "resuming" in err and not partial.exists()


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(kept, tmp_path, capsys, monkeypatch):
    w = copy_of(kept, tmp_path, "retrain")
    checkpoint = w / "retrain" / "last.pth"
    previous = checkpoint.read_bytes()

    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", full_disk)
    code, err = nas_here(capsys, R()(w))
    lines = [line for line in err.splitlines() if line.startswith("nas: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"cannot write {checkpoint} (No space left on device); the previous last.pth" in lines[0]
    assert "free some space" in lines[0]
    assert checkpoint.read_bytes() == previous and not list(checkpoint.parent.glob(".last.*"))


def test_a_full_disk_while_writing_outputs_keeps_the_previous_ones(kept, tmp_path, capsys, monkeypatch):
    import pandas as pd

    w = copy_of(kept, tmp_path, "search")
    before = snapshot(w / "search")

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_text("number,val")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    code, err = nas_here(capsys, ["report", str(w / "search")])
    assert code == 2 and "cannot write" in err and "trials.csv (No space left on device)" in err, err
    assert snapshot(w / "search") == before


def test_a_damaged_cache_is_rebuilt_and_said_so(tiny_imagefolder, tmp_path, monkeypatch, capsys):
    from nas.data import load_data

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    first = load_data(f"imagefolder:{tiny_imagefolder}")
    (cache,) = (tmp_path / "cache").glob("images-*.npz")
    truncated(cache)
    capsys.readouterr()
    again = load_data(f"imagefolder:{tiny_imagefolder}")
    assert "cache" in capsys.readouterr().err and (again.train_x == first.train_x).all()
    assert len(list((tmp_path / "cache").glob("*.partial*"))) == 0


class _RunsCode:
    """What a malicious checkpoint holds: unpickling it would call a function of its choosing."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(kept, tmp_path, capsys):
    """Every checkpoint and supernet file is read with ``weights_only=True``: a file that names a function to call
    is refused before anything of it runs, for a training's own checkpoint and for a supernet folder received
    from someone else (``--evaluator supernet:DIR``)."""
    w = copy_of(kept, tmp_path, "search")
    marker = tmp_path / "code-ran"
    for name in ("retrain/last.pth", "supernet/supernet.pth"):
        torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, w / name)
    code, err = nas_here(capsys, R()(w))
    assert code == 2 and "is refused: loading it would run code it names" in err and "last.pth" in err, err
    code, err = nas_here(capsys, S("--evaluator", f"supernet:{w}/supernet")(w))
    assert code == 2 and "supernet.pth is refused" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
