"""The CAM artifact format every CAM producer writes and every refinement reads.

``cams/<image_id>.npz`` holds ``keys`` (int16 foreground class indices present in the image, 1..C-1 with 0 =
background) and ``cams`` (float16 [len(keys), H, W] at the original image size, values in [0, 1]). One format
for the classifier, ToCo, CLIP and propagation outputs is what lets refinements compose in any order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.artifacts import atomic_path
from wsss.errors import InputError


def save_cam(path: str | Path, keys: np.ndarray | list[int], cams: np.ndarray) -> None:
    """Write a CAM file atomically. cams: [K, H, W] float in [0, 1]; keys: K class indices."""
    keys = np.asarray(keys, dtype=np.int16).reshape(-1)
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise ValueError(f"cams must be [K,H,W] with K={keys.shape[0]}, got {cams.shape}")
    cams = np.clip(np.nan_to_num(cams, nan=0.0), 0.0, 1.0).astype(np.float16)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, keys=keys, cams=cams)


def load_cam(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CAM file. Returns (keys int64 [K], cams float32 [K, H, W])."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "CAM file not found")
    try:
        with np.load(path) as z:
            keys = z["keys"].astype(np.int64)
            cams = z["cams"].astype(np.float32)
    except Exception as e:  # zipfile/KeyError/ValueError all mean the same to the user
        raise InputError(path, f"unreadable CAM file ({type(e).__name__}: {e})") from e
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise InputError(path, f"CAM file has cams {cams.shape} for {keys.shape[0]} keys")
    return keys, cams


def dense_scores(keys: np.ndarray, cams: np.ndarray, num_classes: int, bg: np.ndarray | float = 0.0,
                 ) -> np.ndarray:
    """Scatter per-key CAMs into a dense [C, H, W] score volume (channel 0 = background score ``bg``).

    Classes not in ``keys`` get -inf so an argmax can never choose them: pseudo masks contain only labelled
    classes by construction.
    """
    h, w = cams.shape[1:]
    out = np.full((num_classes, h, w), -np.inf, dtype=np.float32)
    out[0] = bg
    out[np.asarray(keys, dtype=np.int64)] = cams
    return out
