"""Progress of long work on stderr: a live counter on a terminal, a few milestone lines in logs."""
from __future__ import annotations

import sys
from typing import Callable


def progress(label: str) -> Callable[[int, int], None]:
    """``report(done, total)``; on a terminal rewrites one line, elsewhere prints at each quarter."""
    live = sys.stderr.isatty()
    printed: set[int] = set()

    def report(done: int, total: int) -> None:
        if live:
            print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
            return
        quarter = 4 * done // max(total, 1)
        if quarter > 0 and quarter not in printed:
            printed.add(quarter)
            print(f"{label} {done}/{total}", file=sys.stderr, flush=True)

    return report
