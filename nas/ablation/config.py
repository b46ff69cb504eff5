"""What an ablation is: its settings, which of them make a study's runs comparable, and its user errors."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftformer import SwiftFormerArch

from ..models import parse_model_ref
from ..trials.errors import RunError
from ..trials.execution import Execution
from ..training import ProxyConfig
from ..training.protocols import CANDIDATES, Protocol, named_protocol
from .grid import Grid, grid_variants
from .variants import Variant, placement_variants, type_variants

ABLATIONS = ("placement", "type", "grid")
PROTOCOLS = ("proxy", "reference", *CANDIDATES)  # the search's proxy, or a named one (nas/training/protocols.py)
DEFAULT_BASE = "swiftformer:xs"
DEFAULT_MAX_RUNS = 100


class AblationError(RunError):
    """An ablation that cannot start or go on; the message says what to change."""


@dataclass
class AblationConfig(Execution):
    ablation: str  # placement, type or grid
    base: str | None = None  # a model reference of the family (default: the grid's, else swiftformer:xs)
    grid: dict[str, Any] | None = None  # a parsed grid (Grid.to_dict()) for ablation "grid"
    kinds: list[str] | None = None  # block kinds of the type ablation (default: every kind of BLOCK_TYPES)
    data: str = "fashion-mnist"
    seeds: int = 3  # seeds 0..seeds-1, the same for every variant
    protocol: str = "proxy"  # the search's proxy (set by ``proxy``), the fidelity benchmark's reference or a
    # version-2 candidate reference (``nas.training.protocols.CANDIDATES``)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    max_runs: int = DEFAULT_MAX_RUNS  # variants x seeds above this is refused before anything trains
    reuse: list[str] = field(default_factory=list)  # other ablations' folders whose matching runs are copied
    out: str = ""
    study: str = ""

    def __post_init__(self) -> None:
        if self.ablation not in ABLATIONS:
            raise AblationError(f"unknown ablation {self.ablation!r}; accepted: placement, type, or a grid .yaml")
        if self.ablation == "grid" and self.grid is None:
            raise AblationError("a grid ablation needs its grid")
        if self.protocol not in PROTOCOLS:
            raise AblationError(f"unknown protocol {self.protocol!r}; accepted: {', '.join(PROTOCOLS)}")
        self.check_execution(AblationError)
        if self.seeds < 1 or self.max_runs < 1:
            raise AblationError("--seeds and --max-runs must be at least 1")
        if self.kinds is not None and self.ablation != "type":
            raise AblationError("--kinds belongs to the type ablation")
        self.base = _absolute(self.base or (self.grid or {}).get("base") or DEFAULT_BASE)
        self.data = _absolute(self.data)
        self.reuse = [str(Path(folder).resolve()) for folder in self.reuse]
        what = Grid(**self.grid).name if self.ablation == "grid" else self.ablation
        self.study = self.study or f"ablate-{what}-{Path(self.base.split(':')[-1]).stem}-{self.protocol}"
        self.out = str(Path(self.out or Path("runs") / self.study).resolve())

    def training_protocol(self) -> Protocol:
        """The protocol every run trains under (its seed set per run)."""
        return Protocol("proxy", self.proxy) if self.protocol == "proxy" else named_protocol(self.protocol)

    def storage_url(self) -> str:
        """``--storage`` if given, else the journal file in ``--out`` (several workers and Ray may share it)."""
        return self.checked_storage(self.storage or str(Path(self.out).resolve() / "study.journal"), self.out,
                                    AblationError)

    def base_arch(self, num_classes: int | None = None, in_chans: int | None = None) -> SwiftFormerArch:
        ref = parse_model_ref(self.base)
        if ref.arch is None:
            raise AblationError(f"base {self.base!r} is not of the SwiftFormer family; ablations derive variants "
                                "from swiftformer:<variant> or an architecture .json file")
        changes = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
        return ref.arch.replace(**changes)

    def variants(self, num_classes: int | None = None, in_chans: int | None = None) -> list[Variant]:
        """The distinct variants, the base among them, checked against ``max_runs``."""
        base = self.base_arch(num_classes, in_chans)
        if self.ablation == "placement":
            variants = placement_variants(base)
        elif self.ablation == "type":
            variants = type_variants(base, self.kinds)
        else:
            variants = grid_variants(Grid(**self.grid), base)
        runs = len(variants) * self.seeds
        if runs > self.max_runs:
            raise AblationError(f"this ablation is {len(variants)} variants x {self.seeds} seeds = {runs} runs, more "
                                f"than --max-runs {self.max_runs}; raise --max-runs or ask for fewer")
        return variants

    def identity(self) -> dict[str, Any]:
        """What must stay the same for runs to be comparable, and so for a run to resume a study. Seeds are not
        in it: asking for more seeds later adds runs to the same study."""
        protocol = self.training_protocol()
        config = {k: v for k, v in protocol.config.to_dict().items() if k != "seed"}
        return {"ablation": self.ablation, "base": self.base, "grid": self.grid, "kinds": self.kinds,
                "data": self.data, "protocol": protocol.name, "protocol_config": config}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["proxy"] = self.proxy.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AblationConfig":
        return cls(**{**data, "proxy": ProxyConfig.from_dict(data["proxy"])})


def _absolute(ref: str) -> str:
    """A reference whose path is made absolute (``arch.json``, ``cifar10:PATH``): Ray runs workers in other
    folders, and a study resumed from elsewhere must name the same files."""
    kind, sep, rest = ref.partition(":")
    path = Path(rest if sep and kind in ("cifar10", "imagefolder") else ref).expanduser()
    if not path.exists():
        return ref
    return f"{kind}:{path.resolve()}" if sep and kind in ("cifar10", "imagefolder") else str(path.resolve())
