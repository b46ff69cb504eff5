"""The search: the most accurate architectures of a space within a latency budget.

Modules, in the order data flows through them: ``config`` (settings and the study's identity), ``context`` (what
a worker needs), ``evolution`` and ``pruning`` (sampler and pruner pieces), ``step`` (one trial: proposal, price,
de-duplication, then ``nas.trials.evaluate``), ``worker`` (the loop every worker runs), ``runner`` and
``ray_backend`` (local, ``--workers`` or Ray), ``report`` (every output, derived from the study). Storage, trial
status, heartbeat and recovery are every job's: ``nas.trials``.
"""
from .config import OBJECTIVES, SAMPLERS, SearchConfig, SearchError
from .context import SearchContext, build_context
from .report import load_run, write_outputs
from .runner import run_search
from .step import run_step
from ..trials.study import best_feasible, counted, recover_interrupted, status_of
from .worker import open_study, worker_loop

__all__ = ["OBJECTIVES", "SAMPLERS", "SearchConfig", "SearchContext", "SearchError", "best_feasible",
           "build_context", "counted", "load_run", "open_study", "recover_interrupted", "run_search", "run_step",
           "status_of", "worker_loop", "write_outputs"]
