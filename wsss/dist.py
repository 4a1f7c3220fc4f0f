"""torch.distributed helpers: rank, world size, sharding of image ids, barriers, reductions.

Works unchanged without torchrun (rank 0 of 1). Under ``torchrun`` the process group is created from the
environment: NCCL when CUDA is available, gloo otherwise (how the CPU tests run 2 ranks).

Assumptions of a multi-node run (``torchrun --nnodes N ...``): every node sees the same work dir and dataset at
the same path (a shared file system): ranks write their shard of per-image artifacts into one stage folder, rank 0
writes the manifests, and every rank reads what the others wrote after a barrier. The process-group timeout
(``dist_timeout_min`` in the config, env ``WSSS_DIST_TIMEOUT_MIN``, default 60 minutes) bounds how long a rank
waits in a collective for the others, e.g. while they finish an uneven share of a resumed per-image stage.
"""

from __future__ import annotations

import datetime
import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


#: Minutes a rank waits in a collective before the job fails (NCCL's own default is 10).
DEFAULT_TIMEOUT_MIN = 60.0


def timeout_minutes(configured: float | None = None) -> float:
    """The process-group timeout: env ``WSSS_DIST_TIMEOUT_MIN``, else the config's value, else 60 minutes."""
    env = os.environ.get("WSSS_DIST_TIMEOUT_MIN")
    value = float(env) if env else (float(configured) if configured else DEFAULT_TIMEOUT_MIN)
    if value <= 0:
        raise ValueError(f"the distributed timeout must be positive minutes, got {value}")
    return value


def init_from_env(timeout_min: float | None = None) -> bool:
    """Initialise the default process group when launched by torchrun. Returns True if distributed.

    ``timeout_min``: the config's ``dist_timeout_min`` (see :func:`timeout_minutes`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("WSSS_DIST_BACKEND") != "gloo" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes(timeout_min)))
    return True


def local_world_size() -> int:
    """Ranks on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without torchrun): they share its cores."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


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


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all ranks (in place, and returned); a no-op in one process. Integer tensors sum
    exactly, so a confusion matrix accumulated on shards equals the one of a single process."""
    if is_distributed():
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            moved = t.to(local_device())
            dist.all_reduce(moved)
            t.copy_(moved.cpu())
        else:
            dist.all_reduce(t)
    return t


def raise_first_error(error: BaseException | None, collective: bool = True) -> None:
    """Call on every rank after work that may fail on some: all ranks raise when any did (the first rank's
    message), instead of the healthy ones waiting forever in the next collective. Re-raises ``error`` itself
    on a rank that had one. ``collective=False`` (work done by this rank alone, e.g. rank 0 scoring every
    image): no collective, just re-raise ``error``."""
    if not collective or not is_distributed():
        if error is not None:
            raise error
        return
    messages: list = [None] * world_size()
    dist.all_gather_object(messages, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        from wsss.errors import WSSSError
        r, m = failed[0]
        raise WSSSError(f"rank {r} failed: {m}")


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
