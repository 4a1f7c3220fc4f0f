"""VOC colour palette and palette-PNG mask I/O (0 = background, 255 = ignore)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsss.artifacts import atomic_path
from wsss.errors import InputError

IGNORE_INDEX = 255


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC bit-interleaved colormap: [n, 3] uint8."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


_PALETTE = voc_colormap().reshape(-1).tolist()


def save_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a [H, W] uint8 label mask as a VOC palette PNG, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got {mask.shape}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def load_mask(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a label PNG (palette or grey) as [H, W] uint8; checks labels are < num_classes or 255."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "mask file not found")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise InputError(path, f"mask must be a palette or greyscale PNG, got mode {im.mode}")
            arr = np.array(im)
    except InputError:
        raise
    except Exception as e:
        raise InputError(path, f"unreadable mask ({type(e).__name__}: {e})") from e
    if arr.max(initial=0) > 255:
        raise InputError(path, f"mask label {int(arr.max())} does not fit uint8")
    arr = arr.astype(np.uint8)
    if num_classes is not None:
        bad = np.unique(arr[(arr >= num_classes) & (arr != IGNORE_INDEX)])
        if bad.size:
            raise InputError(path, f"mask has labels {bad.tolist()[:5]} outside 0..{num_classes - 1} and 255")
    return arr


def colorize(mask: np.ndarray) -> np.ndarray:
    """[H, W] labels -> [H, W, 3] uint8 RGB with the VOC colours (255 shown in its VOC cream colour)."""
    return voc_colormap()[np.asarray(mask, dtype=np.uint8)]
