"""A retraining's processes: one, or a ``torchrun`` job of several (seeding is the engine's: ``nas.engine.policy``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Processes:
    """This process's place in a ``torchrun`` job (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Processes":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: torch.device) -> None:
        if self.world > 1 and not torch_dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)  # NCCL binds each process to its own GPU
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def finish(self) -> None:
        if self.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any process (every process gets the same answer)."""
        if self.world == 1:
            return flag
        tensor = torch.tensor([float(flag)], device=device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return bool(tensor.item())

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()
