"""Image reading with one-line errors naming the file (missing, empty, corrupt)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wsss.errors import InputError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as [H, W, 3] uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    buf = np.fromfile(str(path), dtype=np.uint8)
    if buf.size == 0:
        raise InputError(path, "image file is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(path, "corrupt or unsupported image (could not decode)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
