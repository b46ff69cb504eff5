"""What produced a result: the code's version, recorded with every run so that results from several sessions (or
machines) say which code each came from. A trustworthy ablation names its git commit and its data; a number whose
code has moved on since is still readable, but no longer silently mixed with the rest.
"""
from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

#: The folders whose edits change what a run computes; experiment outputs (journals, logs) may change freely.
CODE_PATHS = ("nas", "swiftformer", "search_spaces", "pyproject.toml")


@functools.cache
def code_version(root: Path | None = None) -> str:
    """The git commit of the checkout (12 hex digits, ``+modified`` when its code differs from that commit), or
    the installed package's version where there is no git checkout (a wheel, a worker without git)."""
    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        modified = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        try:
            return f"swiftnas {metadata.version('swiftnas')}"
        except metadata.PackageNotFoundError:
            return "unknown"
    return commit + ("+modified" if modified else "")
