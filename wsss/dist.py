"""torch.distributed helpers: rank, world size, sharding of image ids, barriers.

Works unchanged without torchrun (rank 0 of 1). Under ``torchrun`` the process group is created from the
environment: NCCL when CUDA is available, gloo otherwise (how the CPU tests run 2 ranks).
"""

from __future__ import annotations

import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env() -> bool:
    """Initialise the default process group when launched by torchrun. Returns True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("WSSS_DIST_BACKEND") != "gloo" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (round robin, so ranks get near-equal counts)."""
    return list(items[rank()::world_size()])


def local_device() -> torch.device:
    """The device this rank computes on: its GPU under torchrun with CUDA, else the first GPU, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def resolve_device(name: str | None = "auto") -> torch.device:
    """``'auto'`` -> this rank's GPU when CUDA is available, else CPU; any other value is used as given."""
    if name in (None, "auto"):
        return local_device()
    return torch.device(name)


def wrap_ddp(model: torch.nn.Module, device: torch.device, sync_bn: bool = False,
             find_unused_parameters: bool = False) -> torch.nn.Module:
    """The model as every training stage trains it: itself in one process, DDP under torchrun.

    ``sync_bn`` converts BatchNorm to SyncBatchNorm on CUDA (dense prediction with small per-GPU batches).
    """
    if world_size() <= 1:
        return model
    if sync_bn and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters)
