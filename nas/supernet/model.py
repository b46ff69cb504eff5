"""A weight-sharing supernet holding every architecture of a search space.

- Width, MLP ratio and stem width: each subnet uses the first channels of the largest weights (``w[:out, :in]``),
  its MLP hidden width ``int(width * mlp_ratio)`` as in ``swiftformer.arch``.
- Depth: a stage of depth d runs its first d block positions.
- Block kind: each position holds one block per kind the space can put there, with separate weights (a conv
  encoder and an attention encoder differ in graph and in BN placement), each sliced for width.
- Resolution changes no weight: the supernet runs at the size of its input.
- Task: classes, input channels and the distillation head are the supernet's, as ``SwiftFormer``'s constructor
  overrides an architecture's own values with its arguments.

``extract(arch)`` gives the ordinary ``swiftformer.SwiftFormer`` with the sliced weights and BN buffers, whose
eval outputs equal the supernet's for that architecture.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from search_spaces import SearchSpace
from swiftformer import SwiftFormer, SwiftFormerArch

from .blocks import BLOCK_KINDS, SuperEmbedding, SuperStem
from .layers import SlicedBatchNorm2d, SlicedLinear
from .spaces import SupernetError, check_represented, extreme_arch, max_stem_width, stage_maxima

_BLOCK_KEY = re.compile(r"^network\.(\d+)\.(\d+)\.(.*)$")


class SuperNet(nn.Module):
    """Every architecture of ``space`` in one module; ``forward(x, arch)`` runs one of them.

    ``num_classes``, ``in_chans`` and ``distillation`` default to the space's. Training-mode outputs follow
    ``SwiftFormer``: with the distillation head, ``(head, dist_head)`` logits unless
    ``set_distilled_training(False)``; eval mode returns their mean.
    """

    #: block type -> sliceable block; a subclass may hold fewer or more kinds (see ``blocks.BLOCK_KINDS``)
    block_kinds = BLOCK_KINDS

    def __init__(self, space: SearchSpace, num_classes: int | None = None, in_chans: int | None = None,
                 distillation: bool | None = None):
        super().__init__()
        check_represented(space)
        self.space = space
        self.num_classes = space.num_classes if num_classes is None else num_classes
        self.in_chans = space.in_chans if in_chans is None else in_chans
        self.distillation = space.distillation if distillation is None else distillation
        self.distilled_training = True
        self.maxima = stage_maxima(space)
        self.max_stem_width = max_stem_width(space)
        self.active_arch: SwiftFormerArch | None = None
        self._checked: set[SwiftFormerArch] = set()

        self.patch_embed = SuperStem(self.in_chans, self.max_stem_width, self.maxima[0].width)
        network: list[nn.Module] = []
        for s, stage in enumerate(self.maxima):
            if s > 0:  # a space downsamples between every pair of stages
                network.append(SuperEmbedding(self.maxima[s - 1].width, stage.width))
            network.append(nn.Sequential(*[self._make_slot(s, j, kinds) for j, kinds in enumerate(stage.slot_kinds)]))
        self.network = nn.Sequential(*network)
        self.num_features = self.maxima[-1].width
        self.norm = SlicedBatchNorm2d(self.num_features)
        if self.num_classes == 0:  # features: one identity head, as SwiftFormer
            self.head, self.dist_head = nn.Identity(), None
        else:
            self.head = SlicedLinear(self.num_features, self.num_classes)
            self.dist_head = SlicedLinear(self.num_features, self.num_classes) if self.distillation else None
        self.apply(SwiftFormer._init_weights)  # the model family's initialisation (trunc normal 0.02, zero bias)

    def _make_slot(self, stage: int, position: int, kinds: tuple[str, ...]) -> nn.ModuleDict:
        missing = [k for k in kinds if k not in self.block_kinds]
        if missing:
            raise SupernetError(f"stage{stage + 1}.block{position + 1}: block type {missing[0]!r} has no supernet "
                                f"block; supported: {', '.join(self.block_kinds)}")
        width, hidden = self.maxima[stage].width, self.maxima[stage].hidden
        return nn.ModuleDict({kind: self.block_kinds[kind](width, hidden) for kind in kinds})

    # ---------------------------------------------------------------------------------------- architectures
    def largest_arch(self) -> SwiftFormerArch:
        return extreme_arch(self.space, largest=True)

    def smallest_arch(self) -> SwiftFormerArch:
        return extreme_arch(self.space, largest=False)

    def check(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """``arch`` if the supernet holds it (it need not be a point of the space, only fit in the weights);
        otherwise a one-line SupernetError naming the dimension."""
        if arch in self._checked:
            return arch
        if len(arch.stages) != len(self.maxima):
            raise SupernetError(f"stages: the architecture has {len(arch.stages)}, the supernet {len(self.maxima)}")
        if not all(arch.downsample):
            raise SupernetError("downsample: the supernet halves the resolution between every pair of stages")
        if arch.stem_width > self.max_stem_width:
            raise SupernetError(f"stem_width = {arch.stem_width} exceeds the supernet's {self.max_stem_width}")
        for s, (stage, maxima) in enumerate(zip(arch.stages, self.maxima)):
            p = f"stage{s + 1}."
            if stage.width > maxima.width:
                raise SupernetError(f"{p}width = {stage.width} exceeds the supernet's {maxima.width}")
            if stage.depth > maxima.depth:
                raise SupernetError(f"{p}depth = {stage.depth} exceeds the supernet's {maxima.depth}")
            for j, block in enumerate(stage.blocks):
                if block.type not in maxima.slot_kinds[j]:
                    raise SupernetError(f"{p}block{j + 1}: type {block.type!r} is not held at this position "
                                        f"(held: {', '.join(maxima.slot_kinds[j])})")
                if int(stage.width * block.mlp_ratio) > maxima.hidden:
                    raise SupernetError(f"{p}block{j + 1}.mlp_ratio = {block.mlp_ratio:g} gives hidden width "
                                        f"{int(stage.width * block.mlp_ratio)} > the supernet's {maxima.hidden}")
        self._checked.add(arch)
        return arch

    def set_active(self, arch: SwiftFormerArch) -> None:
        """The subnet that ``forward(x)`` runs (and that BN calibration through ``reestimate_bn`` re-estimates)."""
        self.active_arch = self.check(arch)

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    # --------------------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor, arch: SwiftFormerArch) -> torch.Tensor:
        x = self.patch_embed(x, arch.stem_width, arch.stages[0].width)
        for s, stage in enumerate(arch.stages):
            if s > 0:
                x = self.network[2 * s - 1](x, stage.width)
            slots = self.network[2 * s]
            for j, block in enumerate(stage.blocks):
                x = slots[j][block.type](x, int(stage.width * block.mlp_ratio))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = x.mean(dim=(2, 3))
        if self.dist_head is None:
            return self.head(x)
        logits, dist_logits = self.head(x), self.dist_head(x)
        if self.training and self.distilled_training:
            return logits, dist_logits
        return (logits + dist_logits) / 2

    def forward(self, x: torch.Tensor, arch: SwiftFormerArch | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run ``arch`` (default: the active one, ``set_active``)."""
        if arch is None:
            if self.active_arch is None:
                raise SupernetError("no architecture: pass one or call set_active(arch) first")
            arch = self.active_arch
        return self.forward_head(self.forward_features(x, self.check(arch)))

    # -------------------------------------------------------------------------------------------- channels
    def sort_channels(self) -> None:
        """Reorder every block's MLP hidden channels by importance (OFA), most important first.

        The largest subnet computes the same function; narrower MLP ratios then keep the strongest channels.
        Each block kind sorts its own MLP (``sort_hidden_channels``); an attention encoder's local
        representation, whose hidden width is the stage width, is left alone.
        """
        for s in range(len(self.maxima)):
            for slot in self.network[2 * s]:
                for block in slot.values():
                    block.sort_hidden_channels()

    # ----------------------------------------------------------------------------------------- extraction
    def subnet_arch(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """``arch`` with the supernet's task (classes, input channels, distillation head)."""
        return self.check(arch).replace(num_classes=self.num_classes, in_chans=self.in_chans,
                                        distillation=self.distillation)

    def subnet_keys(self, arch: SwiftFormerArch) -> dict[str, tuple[str, torch.Size]]:
        """For each tensor of ``arch``'s ordinary model (official naming): the supernet tensor it is sliced from
        and its shape, i.e. the first ``shape[d]`` entries along each axis ``d``. Blocks map
        ``network.{2s}.{j}.*`` to ``network.{2s}.{j}.{kind}.*``; every other name is the same."""
        meta = SwiftFormer(self.subnet_arch(arch), device="meta")  # shapes only: no memory, no initialisation cost
        keys = {}
        for key, tensor in meta.state_dict().items():
            m = _BLOCK_KEY.match(key)
            if m is not None and int(m.group(1)) % 2 == 0:
                s, j = int(m.group(1)) // 2, int(m.group(2))
                keys[key] = (f"network.{2 * s}.{j}.{arch.stages[s].blocks[j].type}.{m.group(3)}", tensor.shape)
            else:
                keys[key] = (key, tensor.shape)
        return keys

    def sub_state_dict(self, arch: SwiftFormerArch) -> dict[str, torch.Tensor]:
        """``arch``'s weights and BN buffers in the official naming, which ``swiftformer.load_checkpoint`` loads
        strictly. Copies, so that saving one does not save the whole supernet's storage."""
        own = self.state_dict()
        return {key: own[source][tuple(slice(0, n) for n in shape)].clone()
                for key, (source, shape) in self.subnet_keys(arch).items()}

    def extract(self, arch: SwiftFormerArch) -> SwiftFormer:
        """The ordinary SwiftFormer for ``arch`` holding the supernet's sliced weights and BN statistics, on the
        supernet's device and dtype and in its train/eval mode."""
        # built on the meta device and given the sliced copies (assign): no initialisation that would be
        # overwritten, which for a large subnet costs more than scoring it
        model = SwiftFormer(self.subnet_arch(arch), device="meta")
        model.load_state_dict(self.sub_state_dict(arch), strict=True, assign=True)
        return model.train(self.training)
