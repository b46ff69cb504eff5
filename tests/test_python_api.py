"""SwiftNAS as a library (issue 38, item 1): README's Python API examples run as written (the data swapped for a
tiny tree of images), and importing any ``nas`` module changes no global state."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_examples_run(tmp_path, tiny_imagefolder, monkeypatch, capsys):
    examples = readme_examples()
    assert len(examples) == 3
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {}
    for code in examples:
        code = code.replace('DATA = "fashion-mnist"', f'DATA = "imagefolder:{tiny_imagefolder}"')
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the README's own examples)
    out = capsys.readouterr().out
    assert "best found" in out and "oracle" in out  # the search's summary
    assert len(namespace["best"]) == 3 and namespace["best"]["val_accuracy"].is_monotonic_decreasing
    assert (tmp_path / "runs/ablate-type-xs/summary.csv").is_file() and "conv" in out
    assert re.search(r"swiftformer:s \d+\.\d{3} ms", out)


def test_importing_nas_changes_no_global_state():
    """In a fresh process: every module of the package imported, then the log levels and handlers, Optuna's
    verbosity, the warning filters and matplotlib's backend compared with before (the libraries SwiftNAS uses are
    imported first: scipy and sympy add warning filters of their own when imported)."""
    probe = r"""
import logging, pkgutil, importlib, warnings
import matplotlib, optuna
import pandas, scipy.sparse, scipy.special, scipy.stats, sympy, timm, torch  # (their own import-time filters)
def state():
    return (logging.getLogger().level, len(logging.getLogger().handlers), logging.getLogger("nas").handlers,
            logging.getLogger("nas").level, optuna.logging.get_verbosity(), list(warnings.filters),
            matplotlib.rcParams._get_backend_or_none(), logging.getLogger("optuna").level)
before = state()
import nas
names = [m.name for m in pkgutil.walk_packages(nas.__path__, "nas.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
after = state()
changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
print(len(names), changed)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    count, changed = done.stdout.split(maxsplit=1)
    assert int(count) > 80 and changed.strip() == "[]", done.stdout
