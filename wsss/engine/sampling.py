"""A batch sampler whose order depends only on (seed, epoch), so training can resume at any iteration.

Each batch is a list of ``(epoch, index)`` pairs; the dataset wrapper seeds its augmentation from them
(see :func:`wsss.engine.seed.sample_seed`), which makes a resumed run see the same crops as an unbroken one,
with any number of DataLoader workers.
"""

from __future__ import annotations

from typing import Iterator

import torch

from wsss import dist


class ResumableBatchSampler:
    """Yields batches ``[(epoch, idx), ...]`` from iteration ``start_iter`` to ``max_iters``.

    Each epoch is a permutation of ``range(n)`` drawn from ``seed + epoch``; under DDP every rank takes a
    strided share of each global batch (``batch_size`` is per rank). Incomplete last batches are dropped.
    """

    def __init__(self, n: int, batch_size: int, max_iters: int, seed: int = 0, start_iter: int = 0,
                 shuffle: bool = True) -> None:
        self.n, self.batch_size, self.max_iters = n, batch_size, max_iters
        self.seed, self.start_iter, self.shuffle = seed, start_iter, shuffle
        self.rank, self.world = dist.rank(), dist.world_size()
        self.global_batch = batch_size * self.world
        if n < self.global_batch:
            raise ValueError(f"dataset of {n} images is smaller than one global batch ({self.global_batch})")
        self.per_epoch = n // self.global_batch

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __len__(self) -> int:
        return max(0, self.max_iters - self.start_iter)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        it = self.start_iter
        while it < self.max_iters:
            epoch, pos = divmod(it, self.per_epoch)
            order = self._order(epoch)
            for b in range(pos, self.per_epoch):
                if it >= self.max_iters:
                    return
                glob = order[b * self.global_batch:(b + 1) * self.global_batch]
                yield [(epoch, i) for i in glob[self.rank::self.world]]
                it += 1


class EpochIndexed(torch.utils.data.Dataset):
    """Adapts a dataset with ``set_epoch`` to :class:`ResumableBatchSampler`'s ``(epoch, index)`` items.

    The epoch is set per item, inside whichever DataLoader worker loads it, so a sample is augmented the same
    way whatever that worker did before (and whatever the number of workers).
    """

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        self.base.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.base[index]
