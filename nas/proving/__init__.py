"""The proving ground: our search judged where the answers are known.

On NAS-Bench-201's tables (``nas.benchmarks``) every search of a plan (``plan``) runs as ``nas search`` runs, its
picks recorded (``run``); the report (``report``) sets them against each setting's oracle: regret against queries
with bootstrap intervals, the share that reaches the oracle, the share of picks that break the budget when latency
is predicted, and the published figures beside them. ``nas benchmark`` is the command.
"""
from .plan import HELP_SETTINGS, PLANS, SETTINGS, UNCONSTRAINED, Plan, RunSpec, Setting
from .run import ProvingError, load_results, run_plan, run_search_spec

__all__ = ["HELP_SETTINGS", "PLANS", "SETTINGS", "UNCONSTRAINED", "Plan", "ProvingError", "RunSpec", "Setting",
           "load_results", "run_plan", "run_search_spec"]
