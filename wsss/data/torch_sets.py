"""torch ``Dataset`` wrappers over a SegDataset for training (classification, segmentation) and inference.

Determinism: each sample's augmentation is a pure function of (seed, epoch, index). Before transforming
sample ``index`` the wrapper reseeds the albumentations Compose with generators built from
``SeedSequence([seed, epoch, index])``, so the crop an image gets does not depend on the number of DataLoader
workers, on which worker draws it, or on whether training was resumed mid-epoch. Call ``set_epoch(e)`` in the
main process before iterating each epoch: DataLoader workers copy the dataset when an epoch's iterator starts,
so keep ``persistent_workers=False`` (the default) or workers would keep the epoch they started with.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from wsss.data.base import SegDataset
from wsss.data.transforms import to_tensor
from wsss.errors import InputError


def sample_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """Independent numpy + python generators for one (seed, epoch, index) triple."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])
    np_state, py_state = ss.generate_state(2, dtype=np.uint64)
    return np.random.default_rng(int(np_state)), random.Random(int(py_state))


def seed_transform(transform: Callable, seed: int, epoch: int, index: int) -> None:
    """Make the next call of ``transform`` reproducible from (seed, epoch, index).

    albumentations Composes get their own generators (``set_random_state``, shared by all child transforms so
    their draws are not correlated); any other callable falls back to seeding the global numpy/python RNGs.
    """
    rng, py = sample_generators(seed, epoch, index)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(rng, py)
    else:
        np.random.seed(int(rng.integers(2**32)))
        random.seed(int(py.getrandbits(64)))


class _EpochSeeded(Dataset):
    def __init__(self, ds: SegDataset, transform: Callable, seed: int = 0) -> None:
        self.ds = ds
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (same epoch + index -> same augmented sample)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ds)

    def _apply(self, index: int, **inputs: Any) -> dict:
        seed_transform(self.transform, self.seed, self.epoch, index)
        return self.transform(**inputs)


class ClassificationSet(_EpochSeeded):
    """Items: (image [3, H, W] float32 normalised, labels [C-1] float32 multi-hot, index int)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image_id = self.ds.ids[index]
        out = self._apply(index, image=self.ds.image(image_id))
        return to_tensor(out["image"]), torch.from_numpy(self.ds.label_vector(image_id)), index


class SegmentationSet(_EpochSeeded):
    """Items: (image [3, H, W] float32 normalised, mask [H, W] int64 with 255 = ignore, index int).

    ``mask_fn(image_id) -> [H, W] uint8`` defaults to the ground truth ``ds.mask``; training on pseudo masks
    passes a reader of ``<work_dir>/make_pseudo/masks/<id>.png`` instead.
    """

    def __init__(self, ds: SegDataset, transform: Callable, mask_fn: Callable[[str], np.ndarray | None] | None = None,
                 seed: int = 0) -> None:
        super().__init__(ds, transform, seed)
        self.mask_fn = mask_fn if mask_fn is not None else ds.mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image_id = self.ds.ids[index]
        image = self.ds.image(image_id)
        mask = self.mask_fn(image_id)
        if mask is None:
            raise InputError(self.ds.image_path(image_id), f"no mask for id '{image_id}' (dataset has no masks)")
        if mask.shape != image.shape[:2]:
            raise InputError(self.ds.image_path(image_id),
                             f"mask of id '{image_id}' is {mask.shape[1]}x{mask.shape[0]}, image is "
                             f"{image.shape[1]}x{image.shape[0]}")
        out = self._apply(index, image=image, mask=mask)
        return to_tensor(out["image"]), torch.from_numpy(out["mask"].astype(np.int64)), index


class InferenceSet(Dataset):
    """Items: (image [H, W, 3] uint8 RGB at original size, index int); use ``collate_fn=InferenceSet.collate``."""

    def __init__(self, ds: SegDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.ds.image(self.ds.ids[index]), index

    @staticmethod
    def collate(batch: list[tuple[np.ndarray, int]]) -> tuple[list[np.ndarray], list[int]]:
        """Images of different sizes stay a list: ([image, ...], [index, ...])."""
        return [b[0] for b in batch], [int(b[1]) for b in batch]
