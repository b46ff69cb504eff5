"""Run a plan in chunks: its next steps, each a resumable ``nas`` command, until the chunk's time is spent.

A chunk (``minutes``) gives each command the time left: searches and ablations stop starting trainings then,
retrainings and the supernet checkpoint and stop. A command that ended on its own is done (``done/<step>.json``
records its command, machine, device and date; a retraining's ``results.json`` says it by itself); one cut by the
chunk's end is run again by the next chunk, which continues it. Retrainings run ``plan.workers`` at once (each
its own process: on one GPU they share it, as the search's workers do). Output of every command goes to
``logs/<step>.log`` in the plan's folder, and each command line, with its machine and date, to ``commands.log``.
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Callable

from ..files import write_json
from .plan import Plan
from .steps import Phase, Step, is_done, marker, phases

logger = logging.getLogger(__name__)

GRACE_S = 5.0  # a command that returns this long before its time ran out ended on its own


@functools.lru_cache(maxsize=8)
def machine(train_device: str) -> str:
    """The machine a step ran on, as the results record it (the GPU's name from nvidia-smi: the runner itself
    never opens a CUDA context, which would hold device memory beside its trainings)."""
    text = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores), training on {train_device}"
    if train_device != "cpu" and shutil.which("nvidia-smi"):
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True)
        names = sorted(set(found.stdout.split("\n")) - {""}) if found.returncode == 0 else []
        text += f": {', '.join(names)}" if names else ""
    return text


class Chunk:
    """One chunk's clock and its bookkeeping."""

    def __init__(self, plan: Plan, minutes: float | None, train_device: str,
                 say: Callable[[str], None] = lambda text: logger.info(text)):
        self.plan, self.root, self.train_device, self.say = plan, plan.root, train_device, say
        self.deadline = time.time() + 60 * minutes if minutes else None
        self.ran: list[str] = []

    def left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def expired(self) -> bool:
        left = self.left_s()
        return left is not None and left <= 0

    def command(self, step: Step) -> tuple[list[str], float | None]:
        left = self.left_s()
        argv = [sys.executable, "-m", "nas", *step.argv]
        if left is not None:
            argv += ["--timeout", f"{max(1, int(left))}s"] if step.limit == "timeout" else \
                ["--minutes", f"{max(left, 1.0) / 60:.3f}"]
        return argv, left

    def start(self, step: Step) -> tuple[subprocess.Popen, float, float | None, list[str]]:
        argv, left = self.command(step)
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        line = " ".join(["python", "-m", "nas", *argv[3:]])
        with open(self.root / "commands.log", "a") as f:
            f.write(f"{stamp} | {machine(self.train_device)} | {line}\n")
        self.say(f"[{step.key}] $ {line}")
        log = open(logs / (step.key.replace("/", "__") + ".log"), "a")
        log.write(f"== {stamp}: {line}\n")
        log.flush()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return process, time.time(), left, argv

    def finish(self, step: Step, process: subprocess.Popen, started: float, left: float | None,
               argv: list[str]) -> bool:
        """Record how a step's command ended; True if the step is done."""
        seconds = time.time() - started
        self.ran.append(step.key)
        if process.returncode != 0:
            tail = (self.root / "logs" / (step.key.replace("/", "__") + ".log")).read_text().strip().splitlines()
            self.say(f"[{step.key}] failed (exit {process.returncode}) after {seconds:.0f} s: "
                     f"{tail[-1] if tail else 'no output'}")
            return False
        ended_itself = left is None or seconds < left - GRACE_S
        if ended_itself:
            path = marker(self.root, step.key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {
                "step": step.key, "command": " ".join(["python", "-m", "nas", *argv[3:]]),
                "machine": machine(self.train_device), "seconds": round(seconds, 1),
                "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
        done = is_done(self.root, step)
        self.say(f"[{step.key}] {'done' if done else 'stopped at the chunk end; the next chunk continues it'} "
                 f"after {seconds:.0f} s")
        return done

    def run_phase(self, phase: Phase) -> bool:
        """Run a phase's steps (``plan.workers`` at once if parallel); True when all are done."""
        width = self.plan.workers if phase.parallel else 1
        queue, running, ok = list(phase.steps), [], True
        while queue or running:
            while queue and len(running) < width and not self.expired():
                step = queue.pop(0)
                running.append((step, *self.start(step)))
            if not running:
                break
            time.sleep(0.2)
            for item in [r for r in running if r[1].poll() is not None]:
                running.remove(item)
                ok = self.finish(*item) and ok
        return ok and not queue


def run_plan(plan: Plan, minutes: float | None = None, verdicts: tuple[str, ...] | None = None,
             train_device: str = "auto", say: Callable[[str], None] | None = None) -> list[str]:
    """Run the plan's next steps for ``verdicts`` (default: the plan's, in order) for at most ``minutes``; returns
    the steps it ran. A verdict whose phase did not finish waits for the next chunk; the others go on."""
    chunk = Chunk(plan, minutes, train_device, **({"say": say} if say else {}))
    plan.root.mkdir(parents=True, exist_ok=True)
    for verdict in verdicts or plan.verdicts:
        for phase in phases(plan, plan.root, verdict, train_device):
            if chunk.expired():
                chunk.say(f"the chunk's {minutes:g} minutes are spent; run the same command to continue")
                return chunk.ran
            left = chunk.left_s()
            if phase.needs_minutes and left is not None and left < 60 * phase.needs_minutes:
                chunk.say(f"verdict {verdict!r} waits for a chunk with {phase.needs_minutes:g} minutes left "
                          f"for {', '.join(s.key for s in phase.steps)} (their state stays on the machine)")
                break
            if phase.prepare:
                phase.prepare()
            if not chunk.run_phase(phase):
                chunk.say(f"verdict {verdict!r} waits: {len(phase.steps)} step(s) of its phase not done")
                break
    return chunk.ran
