"""What every worker of a search needs, built once per process: predictor, space, latency table, data, proxy."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import search_spaces
from search_spaces import SearchSpace
from swiftformer import SwiftFormerArch

from ..data import load_data
from ..latency import LatencyPredictor
from ..latency.lut import LatencyTable, build_table
from ..latency.predictor import resolve_predictor
from ..progress import progress
from ..training import ProxyTask, attention_token_warnings, resolve_train_device
from .config import SearchConfig, digest


@dataclasses.dataclass
class SearchContext:
    cfg: SearchConfig
    predictor: LatencyPredictor
    space: SearchSpace  # with the data's classes and channels: its architectures are the ones that ship
    table: LatencyTable
    task: ProxyTask


def build_context(cfg: SearchConfig, quiet: bool = False, worker: int = 0) -> SearchContext:
    """``worker`` picks the training GPU (each local worker its own)."""
    predictor = resolve_predictor(cfg.device, cfg.predictor)
    base = search_spaces.load_space(cfg.space)
    sides = [cfg.proxy.resolution(r) for r in base.resolutions]
    data = load_data(cfg.data, image_size=max(max(sides), 32))
    space = dataclasses.replace(base, num_classes=data.num_classes, in_chans=data.channels)
    if not quiet:
        for line in attention_token_warnings(space, cfg.proxy):
            print(line, file=sys.stderr)
    table_path = Path(cfg.out) / "latency_table.json"
    key = digest({"predictor": predictor.to_dict(), "space": space.to_dict()})
    table = None
    if table_path.exists():
        try:
            saved = LatencyTable.load(table_path)
            table = saved if saved.space == f"{space.name}:{key}" else None
        except (ValueError, KeyError, TypeError):  # truncated or foreign: price the space again
            table = None
    if table is None:
        table = build_table(space, predictor, None if quiet else progress("pricing the space's blocks"))
        table.space = f"{space.name}:{key}"  # the space and the digest of what it was priced from
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.save(table_path)
    device = resolve_train_device(cfg.train_device, worker)
    return SearchContext(cfg, predictor, space, table, ProxyTask(data, cfg.proxy, device))


def task_arch(arch: SwiftFormerArch, space: SearchSpace) -> SwiftFormerArch:
    """A released variant as the space's architectures are: the data's classes and channels, its resolution."""
    return arch.replace(num_classes=space.num_classes, in_chans=space.in_chans, distillation=space.distillation,
                        resolution=space.resolutions[0])
