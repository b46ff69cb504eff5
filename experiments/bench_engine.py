"""The training engine's throughput, job by job, against a bare loop on device-resident tensors, in one run.

    .venv/bin/python experiments/bench_engine.py [--train-device cuda] [--jobs bare proxy reference concurrent
        supernet retrain64 retrain224] [--concurrency 4] [--quick] [--baseline REV] [--json FILE]

Every job trains SwiftFormer-XS on CIFAR-10 (the JPEG tree of ``../shared/datasets``, or ``--data``) held on the
training device by the engine:

- ``bare``: the ceiling, a plain loop written only to measure the hardware: uint8 images resident on the device,
  a random crop and flip per batch there, AdamW, label smoothing, no host sync per step (channels_last, bfloat16
  autocast and fused AdamW on CUDA), at the proxy's side (56 px) and batches 128 and 512.
- ``proxy``: a default search trial (``ProxyConfig()``: 2 epochs of 4,000 images at 56 px, batch 128, BN
  re-estimated on 1,024 images and 2,000 val images scored after each epoch), wall time per trial (median of 3
  after one warm-up trial).
- ``reference``: the fidelity benchmark's version-1 reference protocol (2 epochs of 45,000 images at 56 px,
  batch 128), one whole training on a GPU; on the CPU (or with ``--quick``) the first 100 steps.
- ``concurrent``: ``--concurrency`` processes each training the reference protocol at once on the same device,
  images/s summed (what the search's, the ablation's and the fidelity benchmark's ``--workers`` do).
- ``supernet``: an epoch of ``nas supernet train`` (the CIFAR-scale space, the sandwich of 4 subnets, batch 128)
  on a subset; images/s and the time of a CIFAR-scale epoch (45,000 images) from them.
- ``retrain64``, ``retrain224``: ``nas retrain`` of XS (the official XS recipe: crop, flip, colour jitter, random
  erasing, EMA, adaptive clipping) at 64 and 224 px, images/s of its second epoch on a subset, against the bare
  loop at the same side and batch.

``--baseline REV`` runs the jobs both codes have (proxy, retrain64, retrain224, supernet) a second time with the
code of commit REV (a scratch worktree, imported in a fresh process), so the figures of the engine and of the
code before it are measured side by side on the same machine.

Prints a markdown table and writes ``--json``; record the command, machine and date in experiments/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import swiftformer  # noqa: F401  (the torchvision fix precedes timm)
import torch

ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"
JOBS = ("bare", "proxy", "reference", "concurrent", "supernet", "retrain64", "retrain224")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ bare loop
def bare_loop(data, device: torch.device, side: int, batch: int, steps: int, warmup: int = 5) -> float:
    """Images/s of the plainest device-resident loop for XS at ``side``: the ceiling the engine is held to."""
    import torch.nn.functional as F
    from timm.loss import LabelSmoothingCrossEntropy

    from swiftformer import VARIANTS, SwiftFormer

    cuda = device.type == "cuda"
    images = torch.from_numpy(data.train_x).to(device)  # uint8 N, H, W, C
    labels = torch.from_numpy(data.train_y).to(device)
    mean = torch.tensor([0.49, 0.48, 0.45], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26], device=device).view(1, 3, 1, 1)
    torch.manual_seed(0)
    model = SwiftFormer(VARIANTS["xs"].replace(num_classes=10, resolution=side, distillation=False))
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda)
    criterion = LabelSmoothingCrossEntropy(0.1)
    pad = max(1, side // 8)

    def step() -> None:
        idx = torch.randint(0, len(labels), (batch,), device=device)
        x = images[idx].permute(0, 3, 1, 2).float().div_(255)
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx, dy = torch.randint(0, 2 * pad + 1, (2,)).tolist()  # one crop offset per batch: host-drawn
        x = x[..., dy: dy + side, dx: dx + side]
        x = torch.where(torch.rand(batch, 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = criterion(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- engine jobs
def xs():
    from swiftformer import VARIANTS

    return VARIANTS["xs"].replace(num_classes=10)


def proxy_trials(data, device: torch.device, trials: int = 3) -> dict:
    from nas.training import ProxyConfig, ProxyTask

    task = ProxyTask(data, ProxyConfig(), device)
    task.train(xs())  # warm-up: kernels, cuDNN's choices
    times, accuracy = [], 0.0
    for _ in range(trials):
        start = time.perf_counter()
        result = task.train(xs())
        sync(device)
        times.append(time.perf_counter() - start)
        accuracy = result.accuracy
    seconds = statistics.median(times)
    images = task.config.epochs * task.size("train")
    return {"seconds": seconds, "images_per_s": images / seconds, "val_accuracy": accuracy, "trials": times}


def reference_steps(data, device: torch.device, steps: int | None, warm: bool = True) -> dict:
    """The reference protocol through the engine: whole (``steps`` None) or its first ``steps`` steps."""
    from nas.engine import fit
    from nas.training.protocols import REFERENCE
    from nas.training import ProxyTask

    task = ProxyTask(data, REFERENCE.config, device)
    if warm:
        training = task.training(xs())
        fit(training, 1, stop=_after(10))
        sync(device)
    start = time.perf_counter()
    if steps is None:
        result = task.train(xs())
        sync(device)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "images_per_s": REFERENCE.config.epochs * task.size("train") / seconds,
                "val_accuracy": result.accuracy, "whole": True}
    training = task.training(xs())
    state = fit(training, 1, stop=_after(steps))
    sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_s": state.step * REFERENCE.config.batch_size / seconds,
            "steps": state.step, "whole": False}


def _after(steps: int):
    """A ``fit`` stop after ``steps`` steps of the first epoch."""
    return lambda state: state.step >= steps


def _concurrent_worker(payload: dict, rank: int, barrier, results) -> None:
    from nas.data import load_data

    torch.set_num_threads(payload["threads"])
    device = torch.device(payload["device"])
    data = load_data(payload["data"])
    from nas.engine import fit
    from nas.training.protocols import REFERENCE
    from nas.training import ProxyTask

    task = ProxyTask(data, REFERENCE.config, device)
    training = task.training(xs())
    fit(training, 1, stop=_after(10))  # warm-up, then all start together
    sync(device)
    barrier.wait()
    start = time.perf_counter()
    training = task.training(xs())
    state = fit(training, 1, stop=_after(payload["steps"]))
    sync(device)
    results[rank] = state.step * REFERENCE.config.batch_size / (time.perf_counter() - start)


def concurrent(data_spec: str, device: torch.device, k: int, steps: int) -> dict:
    context = multiprocessing.get_context("spawn")
    barrier, manager = context.Barrier(k), context.Manager()
    results = manager.dict()
    payload = {"data": data_spec, "device": str(device), "steps": steps,
               "threads": max(1, (os.cpu_count() or 2) // k) if device.type == "cpu" else 1}
    processes = [context.Process(target=_concurrent_worker, args=(payload, i, barrier, results)) for i in range(k)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    rates = [results[i] for i in range(k) if i in results]
    return {"processes": k, "images_per_s": sum(rates), "each": rates, "failed": k - len(rates)}


def _subset(data, n: int):
    """``n`` training images and 256 held-out ones as the splits of a retraining (the same in either code)."""
    import numpy as np

    from nas.data.datasets import Holdout
    from nas.data.loaders import ArrayImages, ImageSplits

    n = min(n, len(data.train_y) * 3 // 4)  # a small data set (the suite's) keeps a quarter held out
    end = min(n + 256, len(data.train_y))
    images = ArrayImages(data.train_x[:n], data.train_y[:n])
    held = ArrayImages(data.train_x[n:end], data.train_y[n:end])
    return ImageSplits("cifar10-subset", data.classes, data.channels, images, held, held,
                       Holdout(np.arange(n), np.arange(n, end), 0.1, 0), False)


def retrain_epoch(data, device: torch.device, side: int, batch: int, images: int, scratch: Path) -> dict:
    """``nas retrain`` of XS with the official XS recipe: images/s of its second epoch on ``images`` images."""
    from nas.training.retrain import RetrainSpec, retrain

    changes = {"epochs": 2, "batch_size": batch, "resolution": side, "workers": 0, "eval_every": 2}
    out = scratch / f"retrain-{side}"
    result = retrain(RetrainSpec("swiftformer:xs", "cifar10:bench", out, recipe_changes=changes,
                                 train_device=str(device), exports=()), splits=_subset(data, images),
                     log=lambda _: None)
    return {"images_per_s": result.log[-1]["images_per_s"], "side": side, "batch": batch, "images": images}


def supernet_epoch(data, device: torch.device, images: int, scratch: Path, batch: int = 128) -> dict:
    """An epoch of ``nas supernet train`` over the CIFAR-scale space on ``images`` images; a CIFAR-scale epoch's
    time (45,000 images) from its rate."""
    from nas.supernet.train import SupernetSpec, train_supernet

    space = Path(__file__).resolve().parent / "supernet/swiftformer-cifar.yaml"
    changes = {"epochs": 2, "batch_size": batch, "workers": 0, "eval_every": 2}
    result = train_supernet(SupernetSpec(str(space), "cifar10:bench", scratch / "supernet", recipe_changes=changes,
                                         train_device=str(device)),
                            stop_after_epoch=2, splits=_subset(data, images), log=lambda _: None)
    rate = result.log[-1]["images_per_s"]
    return {"images_per_s": rate, "cifar_epoch_s": 45_000 / rate, "images": images}


COMPARABLE = ("proxy", "retrain64", "retrain224", "supernet")  # jobs the code before the engine can run too
RETRAIN_SIZES = {"retrain64": (64, 128, 4096), "retrain224": (224, 32, 512)}  # side, batch, training images
QUICK_RETRAIN_SIZES = {"retrain64": (64, 32, 512), "retrain224": (224, 16, 64)}


def comparable_jobs(data, device: torch.device, jobs: list[str], quick: bool, scratch: Path) -> dict[str, dict]:
    """The jobs of ``COMPARABLE`` asked for, with this process's ``nas`` (the engine, or a baseline's)."""
    out = {}
    sizes = QUICK_RETRAIN_SIZES if quick else RETRAIN_SIZES
    for job in jobs:
        t0 = time.perf_counter()
        try:
            if job == "proxy":
                out[job] = proxy_trials(data, device, 1 if quick else 3)
            elif job in sizes:
                out[job] = retrain_epoch(data, device, *sizes[job], scratch)
            elif job == "supernet":
                out[job] = supernet_epoch(data, device, 64 if quick else (1024 if device.type == "cpu" else 8192),
                                          scratch, 32 if quick else 128)
        except Exception as exc:  # noqa: BLE001 (one failing job must not hide the others' figures)
            out[job] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        out[job]["wall_s"] = time.perf_counter() - t0
        print(f"{job}: {json.dumps(out[job], default=float)}", file=sys.stderr, flush=True)
    return out


def baseline(rev: str, args: argparse.Namespace, jobs: list[str]) -> dict[str, dict]:
    """``comparable_jobs`` run by the code of commit ``rev``, in a fresh process importing it from a worktree."""
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=root, check=True,
                       capture_output=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            command = [sys.executable, str(Path(__file__).resolve()), "--train-device", args.train_device, "--data",
                       args.data, "--jobs", *jobs, "--comparable-only", "--json", str(Path(scratch) / "b.json")]
            done = subprocess.run(command + (["--quick"] if args.quick else []), cwd=tree, env=env, text=True,
                                  capture_output=True)
            if done.returncode:
                return {job: {"error": f"baseline failed: {done.stderr.strip().splitlines()[-1][:300]}"}
                        for job in jobs}
            return json.loads((Path(scratch) / "b.json").read_text())["rows"]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)


# -------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-device", default="auto")
    parser.add_argument("--data", default=f"cifar10:{ARCHIVE}")
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="short measurements (the CPU and the suite)")
    parser.add_argument("--baseline", metavar="REV", help="also run the comparable jobs with the code of REV")
    parser.add_argument("--comparable-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from nas.data import load_data
    from nas.training import resolve_train_device

    device = resolve_train_device(args.train_device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cpu_quick = args.quick or device.type == "cpu"
    start = time.perf_counter()
    data = load_data(args.data, image_size=32) if args.data.startswith("cifar10:") else load_data(args.data)
    rows: dict[str, dict] = {"load_data": {"seconds": time.perf_counter() - start}}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    header = (f"{name}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# bench_engine: {header}", file=sys.stderr, flush=True)

    def run(job: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            rows[job] = fn()
        except Exception as exc:  # noqa: BLE001 (one failing job must not hide the others' figures)
            rows[job] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        rows[job]["wall_s"] = time.perf_counter() - t0
        print(f"{job}: {json.dumps(rows[job], default=float)}", file=sys.stderr, flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="bench_engine-"))
    comparable = [job for job in args.jobs if job in COMPARABLE]
    if args.comparable_only:
        rows.update(comparable_jobs(data, device, comparable, args.quick, scratch))
        args.json.write_text(json.dumps({"rows": rows}, default=float))
        shutil.rmtree(scratch, ignore_errors=True)
        return
    bare_steps = 20 if cpu_quick else 200
    if "bare" in args.jobs:
        run("bare56_b128", lambda: {"images_per_s": bare_loop(data, device, 56, 128, bare_steps)})
        run("bare56_b512", lambda: {"images_per_s": bare_loop(data, device, 56, 512, max(5, bare_steps // 4))})
    rows.update(comparable_jobs(data, device, comparable, args.quick, scratch))
    for job, (side, batch, _) in (QUICK_RETRAIN_SIZES if args.quick else RETRAIN_SIZES).items():
        if job in args.jobs:
            run(f"bare{side}_b{batch}", lambda side=side, batch=batch: {
                "images_per_s": bare_loop(data, device, side, batch, max(5, bare_steps // (4 if side > 100 else 1)))})
            if "images_per_s" in rows[job]:
                rows[job]["vs_bare"] = rows[job]["images_per_s"] / rows[f"bare{side}_b{batch}"]["images_per_s"]
    if args.baseline and comparable:
        for job, row in baseline(args.baseline, args, comparable).items():
            rows[f"{job} (before: {args.baseline})"] = row
            if "images_per_s" in row and "images_per_s" in rows.get(job, {}):
                rows[job]["vs_before"] = rows[job]["images_per_s"] / row["images_per_s"]
    if "reference" in args.jobs:
        run("reference", lambda: reference_steps(data, device, 30 if cpu_quick else None))
    if "concurrent" in args.jobs:
        k = 2 if device.type == "cpu" else args.concurrency
        run(f"concurrent{k}", lambda: concurrent(args.data, device, k, 15 if cpu_quick else 300))
    print(f"\n# {header}\n\n| job | images/s | seconds | against | notes |\n|---|---|---|---|---|")
    for job, row in rows.items():
        notes = row.get("error", "")
        rate = f"{row['images_per_s']:,.0f}" if "images_per_s" in row else ""
        against = ", ".join(f"{row[k]:.2f}x {k.removeprefix('vs_')}" for k in ("vs_bare", "vs_before") if k in row)
        print(f"| {job} | {rate} | {row.get('seconds', row.get('wall_s', 0)):.2f} | {against} | {notes} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "device": str(device), "rows": rows}, indent=2,
                                        default=float) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from nas.console import configure

    configure()  # the nas messages on stderr, as a nas command shows them
    main()
