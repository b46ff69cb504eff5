"""Parsing of the quantities users type: latency budgets and durations."""
from __future__ import annotations

import re

_LATENCY_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$")


def parse_latency_ms(text: str) -> float:
    """``1ms``, ``1 ms``, ``0.8ms``, ``800us`` -> milliseconds; anything else is a ValueError saying why."""
    match = _QUANTITY.match(str(text))
    accepted = "a positive number with a unit: ms, us or s (e.g. 1ms, 0.8 ms, 800us)"
    if not match:
        raise ValueError(f"latency budget {text!r} is not {accepted}")
    value, unit = float(match.group(1)), match.group(2)
    if unit not in _LATENCY_UNITS:
        raise ValueError(f"latency budget {text!r} has {'no unit' if not unit else f'unit {unit!r}'}; "
                         f"expected {accepted}")
    if value <= 0:
        raise ValueError(f"latency budget {text!r} must be positive; expected {accepted}")
    return value * _LATENCY_UNITS[unit]


def parse_duration_s(text: str) -> float:
    """``30m``, ``1h``, ``90s``, ``45`` (seconds) -> seconds."""
    match = _QUANTITY.match(str(text))
    if not match or (match.group(2) and match.group(2) not in _DURATION_UNITS) or float(match.group(1)) <= 0:
        raise ValueError(f"duration {text!r} is not a positive number with an optional unit s, m or h "
                         "(e.g. 90s, 30m, 2h)")
    return float(match.group(1)) * _DURATION_UNITS.get(match.group(2) or "s", 1)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
