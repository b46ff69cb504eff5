"""The three verdicts SwiftNAS exists to give, as resumable plans (issue 28).

1. Does the search discover better variants? (default and one-shot searches per budget, winners retrained
   against the released variants within the budget, paired seeds, test top-1)
2. Does attention placement pay? (`nas ablate placement` and `type`, with the seeds the measured noise asks for)
3. A discovered family: a Pareto search's front, retrained beside XS, S and L1.

A plan (``plan.py``) names the trainings at one scale; ``steps.py`` knows what is done from the plan's folder;
``runner.py`` runs the next steps for a chunk of minutes; ``report.py`` reads the verdicts out.
"""
from .plan import Plan, PlanError, load_plan
from .report import write_report
from .runner import run_plan

__all__ = ["Plan", "PlanError", "load_plan", "run_plan", "write_report"]
