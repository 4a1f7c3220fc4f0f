"""How big the objects are on the CAM grid: the numbers that say whether a benchmark is in the VOC regime.

Why: a CAM at output stride s sees an object d pixels across as d / s cells. On VOC (~500x375 photos, crop
512, stride 16) the grid is 32x32 and objects are 6-20 cells across; 96 px synthetic images at stride 16 give a
6x6 grid with objects 2-3 cells across, where propagation and boundary refinement have nothing to work on.
:func:`object_diameters` measures each object of a mask (a connected component of one class) by its
equivalent diameter ``sqrt(4 * area / pi)``, the diameter of the disc of the same area.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from wsss.data.palette import IGNORE_INDEX

__all__ = ["object_diameters", "regime_summary"]


def object_diameters(mask: np.ndarray, min_area: int = 1) -> list[float]:
    """Equivalent diameters (pixels) of the 8-connected components of every foreground class of ``mask``.

    mask: [H, W] uint8 labels, 0 background, 255 ignore (both skipped). Components below ``min_area`` pixels
    (slivers left by occlusion) are skipped.
    """
    out: list[float] = []
    for c in np.unique(mask):
        if c in (0, IGNORE_INDEX):
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
        for area in stats[1:, cv2.CC_STAT_AREA]:
            if area >= min_area:
                out.append(float(np.sqrt(4.0 * area / np.pi)))
    return out


def regime_summary(masks: Iterable[np.ndarray], stride: int, min_area: int = 16) -> dict:
    """Grid size and object size in grid cells over ``masks`` for CAMs at output ``stride``.

    Returns ``grid`` (cells of the median image side), ``objects`` (count), ``median_px`` / ``p10_px`` /
    ``p90_px`` (equivalent diameter percentiles in pixels) and the same in cells (``median_cells``, ...).
    """
    diam: list[float] = []
    sides: list[int] = []
    for m in masks:
        sides.append(min(m.shape))
        diam += object_diameters(m, min_area)
    d = np.asarray(diam, dtype=np.float64)
    side = float(np.median(sides)) if sides else 0.0
    pct = (lambda q: float(np.percentile(d, q))) if d.size else (lambda q: float("nan"))
    out = {"stride": int(stride), "image_side": side, "grid": side / stride, "objects": int(d.size),
           "median_px": pct(50), "p10_px": pct(10), "p90_px": pct(90)}
    out.update({k.replace("_px", "_cells"): v / stride for k, v in list(out.items()) if k.endswith("_px")})
    return out
