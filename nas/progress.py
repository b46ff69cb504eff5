"""Progress of long work on stderr: a tqdm bar with rate and ETA on a terminal, a few milestone lines in logs."""
from __future__ import annotations

import logging
import sys
from typing import Callable

logger = logging.getLogger(__name__)


def progress(label: str) -> Callable[[int, int], None]:
    """``report(done, total)``; on a terminal a tqdm bar, elsewhere a line at each quarter."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = None

        def live(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, desc=label, file=sys.stderr, leave=True, dynamic_ncols=True)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return live
    printed: set[int] = set()

    def report(done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if quarter > 0 and quarter not in printed:
            printed.add(quarter)
            logger.info(f"{label} {done}/{total}")

    return report
