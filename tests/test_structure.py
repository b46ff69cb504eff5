"""Arrows point down: no import circles in ``nas``, the model family never imports the search, the training engine
imports nothing above it, and the identity pieces (digest, training side, protocol specs) load without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` -> the modules of the project it imports (at any depth of its code, except under
    ``if TYPE_CHECKING``), with ``from . import x`` counted as the submodule x."""
    modules = {}
    for path in (ROOT / package).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{alias.name}" for alias in node.names]
                names = [s for s in subs if s in modules] or [target]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            edges[module] |= {n for n in names if n != module and n.split(".")[0] in ("nas", "swiftformer",
                                                                                      "search_spaces")}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_module_of_nas_imports_itself_in_a_circle():
    assert _cycles(_imports("nas")) == []


def test_the_model_family_never_imports_the_search_and_the_engine_nothing_above_it():
    family = _imports("swiftformer")
    assert not any(t.startswith(("nas", "search_spaces")) for targets in family.values() for t in targets)
    engine = {m: t for m, t in _imports("nas").items() if m.startswith("nas.engine")}
    above = ("nas.search", "nas.ablation", "nas.fidelity", "nas.cli", "nas.supernet", "nas.training")
    assert not any(t.startswith(above) for targets in engine.values() for t in targets), engine


def test_the_identity_pieces_load_without_torch():
    code = ("import sys, nas.identity as i; assert 'torch' not in sys.modules; "
            "print(i.training_side(224, 4.0), i.digest({'a': 1}), i.ProxyConfig().resolution(224))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    side, digest, resolution = done.stdout.split()
    assert side == resolution == "56" and len(digest) == 12 and int(digest, 16) >= 0


def test_the_benchmark_tables_sit_below_the_search_and_the_spaces_below_nas():
    """``nas.benchmarks`` (tables, tabular scores) is what the search reads; ``nas.proving`` runs searches on it."""
    tables = {m: t for m, t in _imports("nas").items() if m.startswith("nas.benchmarks")}
    assert not any(t.startswith(("nas.search", "nas.proving", "nas.cli")) for targets in tables.values()
                   for t in targets), tables
    spaces = _imports("search_spaces")
    assert not any(t.startswith("nas") for targets in spaces.values() for t in targets), spaces
