"""One dataset record for every source (VOC, COCO, custom folder, synthetic).

Readers are plain functions that return a ``SegDataset``; stages never care where the images came from.
Class index convention everywhere in wsss: 0 = background, 1..C-1 = foreground classes, 255 = ignore.
Image-level labels are lists of foreground indices (1..C-1); classifier logit ``j`` is class ``j + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsss.data.image_io import read_image
from wsss.data.palette import load_mask
from wsss.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".JPG", ".JPEG", ".PNG")


def find_image(folder: Path, image_id: str, source: str | Path | None = None) -> Path:
    """Path of ``<folder>/<image_id>.<ext>`` for a known image extension; one-line error if none exists."""
    for suf in IMAGE_SUFFIXES:
        p = folder / f"{image_id}{suf}"
        if p.is_file():
            return p
    where = f" (listed in {source})" if source else ""
    raise InputError(folder / f"{image_id}.jpg", f"image for id '{image_id}' not found{where}")


@dataclass
class SegDataset:
    """A split of a dataset: ids, class names, where images/masks are, image-level labels.

    ``mask_dir`` is None when the split has no pixel ground truth (custom data without masks);
    masks are then only unavailable for evaluation, never needed for training the WSSS chain.
    """

    name: str
    split: str
    ids: list[str]
    class_names: list[str]
    image_dir: Path
    labels: dict[str, list[int]]
    mask_dir: Path | None = None
    image_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    @property
    def has_masks(self) -> bool:
        return self.mask_dir is not None

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, image_id: str) -> Path:
        p = self.image_paths.get(image_id)
        if p is None:
            p = find_image(self.image_dir, image_id)
            self.image_paths[image_id] = p
        return p

    def image(self, image_id: str) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        return read_image(self.image_path(image_id))

    def mask_path(self, image_id: str) -> Path | None:
        return None if self.mask_dir is None else self.mask_dir / f"{image_id}.png"

    def mask(self, image_id: str) -> np.ndarray | None:
        """[H, W] uint8 ground truth (0 bg, 255 ignore), checked against the class range; None if absent."""
        p = self.mask_path(image_id)
        return None if p is None else load_mask(p, self.num_classes)

    def label_vector(self, image_id: str) -> np.ndarray:
        """Multi-hot [C-1] float32 over foreground classes (entry j is class j + 1)."""
        v = np.zeros(self.num_classes - 1, dtype=np.float32)
        for c in self.labels.get(image_id, []):
            v[c - 1] = 1.0
        return v
