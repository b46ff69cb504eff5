"""Ablations as a job: variants of a base architecture trained over paired seeds, compared with intervals.

Modules, in the order data flows through them: ``variants`` (placement and type ablations) and ``grid`` (users'
YAML grids) derive the variants; ``config`` (settings, the study's identity, size limits); ``run`` (the study,
its workers, ``--workers`` processes and Ray through ``nas.trials``); ``stats`` (paired statistics);
``report`` (every output, derived from the study).
"""
from .config import ABLATIONS, PROTOCOLS, AblationConfig, AblationError
from .grid import Grid, GridError, load_grid, parse_grid
from .report import write_outputs
from .run import load_ablation, run_ablation
from .variants import Variant, VariantError, placement_variants, type_variants

__all__ = ["ABLATIONS", "PROTOCOLS", "AblationConfig", "AblationError", "Grid", "GridError", "Variant",
           "VariantError", "load_ablation", "load_grid", "parse_grid", "placement_variants", "run_ablation",
           "type_variants", "write_outputs"]
