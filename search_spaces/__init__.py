"""Search spaces: declarative ones over the SwiftFormer family (in Python or YAML/JSON files), and the two
spaces of the public tabular benchmarks, NAS-Bench-201's cell (``nb201``) and HW-NAS-Bench's FBNet (``fbnet``).
All three implement one interface (``interface.Space``), which is all the search, the latency tables and the
scorers use.

``load_space("swiftformer")`` gives a shipped space by name; ``load_space("my_space.yaml")`` reads a file.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .fbnet import FBNetArch, FBNetSpace
from .interface import Architecture, Space
from .nb201 import NB201Arch, NB201Space
from .space import ATTENTION_MODES, DEFAULT_ATTN_KINDS, SearchSpace, SpaceError, StageChoices

__all__ = ["ATTENTION_MODES", "Architecture", "DEFAULT_ATTN_KINDS", "FBNetArch", "FBNetSpace", "NB201Arch",
           "NB201Space", "SearchSpace", "Space", "SpaceError", "StageChoices", "builtin_spaces", "load_space",
           "space_from_dict"]

TABULAR_SPACES = {"nb201": NB201Space, "fbnet": FBNetSpace}  # defined in code: the benchmarks' fixed spaces

_TOP_FIELDS = {"name", "description", "resolution", "stem_width", "stages", "num_classes", "in_chans",
               "distillation"}
_STAGE_FIELDS = {"depth", "width", "mlp_ratio", "attention", "attn_blocks", "attn_kinds"}


def builtin_spaces() -> list[str]:
    folder = resources.files(__name__) / "spaces"
    return sorted([p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith((".yaml", ".json"))]
                  + list(TABULAR_SPACES))


def load_space(name_or_path: str | Path) -> Space:
    """A shipped space by name, or a SwiftFormer space file (.yaml, .yml, .json)."""
    text = str(name_or_path)
    path = Path(text)
    if text in TABULAR_SPACES:
        return TABULAR_SPACES[text]()
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise SpaceError(f"space file {text!r} does not exist")
        where = text
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text: damaged, or not a space file"
            raise SpaceError(f"cannot read space file {text!r} ({reason}); give --space a YAML or JSON space") \
                from None
    elif text in builtin_spaces():
        where = f"space {text!r}"
        shipped = next(p for p in (resources.files(__name__) / "spaces").iterdir()
                       if p.name.rsplit(".", 1)[0] == text)
        raw = shipped.read_text()
        path = Path(shipped.name)  # its suffix says how to parse it
    else:
        raise SpaceError(f"unknown space {text!r}; accepted: {', '.join(builtin_spaces())}, or a .yaml/.json file")
    try:
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise SpaceError(f"{where}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {reason}") from None
    return space_from_dict(data, where, default_name=Path(text).stem if Path(text).suffix else text)


def space_from_dict(data: Any, where: str = "space", default_name: str = "custom") -> SearchSpace:
    """Build and validate a space; errors name the field, e.g. ``stages[1].width``."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    _no_unknown(where, data, _TOP_FIELDS)
    if "stages" not in data:
        raise SpaceError(f"{where}: missing field 'stages'")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise SpaceError(f"{where}: stages must be a non-empty list of stages")
    stages = tuple(_stage(f"{where}: stages[{i}]", s) for i, s in enumerate(data["stages"]))
    stem = data.get("stem_width", "auto")
    stem_widths = None if stem == "auto" else _ints(f"{where}: stem_width", stem)
    return SearchSpace(
        name=str(data.get("name", default_name)), stages=stages,
        resolutions=_ints(f"{where}: resolution", data.get("resolution", [224])),
        stem_widths=stem_widths, num_classes=_int(f"{where}: num_classes", data.get("num_classes", 1000), 0),
        in_chans=_int(f"{where}: in_chans", data.get("in_chans", 3), 1),
        distillation=_bool(f"{where}: distillation", data.get("distillation", True)),
        description=str(data.get("description", "")))


def _stage(where: str, data: Any) -> StageChoices:
    if not isinstance(data, Mapping):
        raise SpaceError(f"{where}: expected a mapping with depth, width, ..., got {data!r}")
    _no_unknown(where, data, _STAGE_FIELDS)
    for required in ("depth", "width"):
        if required not in data:
            raise SpaceError(f"{where}: missing field {required!r}")
    attention = data.get("attention", "last")
    if attention not in ATTENTION_MODES:
        raise SpaceError(f"{where}.attention: {attention!r} is unknown; accepted: {', '.join(ATTENTION_MODES)}")
    if attention == "mask" and "attn_blocks" in data:
        raise SpaceError(f"{where}.attn_blocks: only with attention: last (a mask allows any subset)")
    ratios = data.get("mlp_ratio", [4])
    ratios = ratios if isinstance(ratios, list) else [ratios]
    if not ratios or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios):
        raise SpaceError(f"{where}.mlp_ratio: expected a non-empty list of positive numbers, got {ratios!r}")
    depths = _ints(f"{where}.depth", data["depth"])
    if attention == "mask" and max(depths) > 12:
        raise SpaceError(f"{where}.depth: attention 'mask' allows depths up to 12 (2^depth masks), got {max(depths)}")
    widths = _ints(f"{where}.width", data["width"])
    attn_blocks = _ints(f"{where}.attn_blocks", data.get("attn_blocks", [0, 1]), minimum=0) if attention == "last" \
        else ()
    kinds = data.get("attn_kinds", list(DEFAULT_ATTN_KINDS))
    try:
        return StageChoices(depths=depths, widths=widths, mlp_ratios=tuple(float(r) for r in ratios),
                            attention=attention, attn_blocks=attn_blocks,
                            attn_kinds=tuple(kinds if isinstance(kinds, list) else [kinds]))
    except SpaceError as exc:  # StageChoices checks attn_kinds: say where
        raise SpaceError(f"{where}.{exc}") from None


def _no_unknown(where: str, data: Mapping, allowed: set[str]) -> None:
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise SpaceError(f"{where}: unknown field {unknown[0]!r}; accepted: {', '.join(sorted(allowed))}")


def _ints(where: str, value: Any, minimum: int = 1) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise SpaceError(f"{where}: expected a non-empty list of {kind}, got {value!r}")
    if len(set(values)) != len(values):
        raise SpaceError(f"{where}: repeated choices in {value!r}")
    return tuple(sorted(values))


def _int(where: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpaceError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpaceError(f"{where}: expected true or false, got {value!r}")
    return value
