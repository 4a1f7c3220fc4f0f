"""Pictures a person looks at: CAM heat-map overlays, labelled panels and grids (numpy + OpenCV only).

All functions take and return ``[H, W, 3] uint8 RGB`` arrays; writing files is the caller's job.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from wsss.data.palette import colorize


def heatmap(cam: np.ndarray) -> np.ndarray:
    """[H, W] float in [0, 1] -> [H, W, 3] uint8 RGB with the jet colour map."""
    u8 = np.clip(np.nan_to_num(cam) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_cam(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a CAM heat map onto an image: image [H, W, 3] uint8, cam [H, W] in [0, 1] (same size)."""
    if image.shape[:2] != cam.shape:
        raise ValueError(f"image {image.shape[:2]} and CAM {cam.shape} differ in size")
    return cv2.addWeighted(image, 1.0 - alpha, heatmap(cam), alpha, 0.0)


def caption(tile: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """A white strip with ``text`` above ``tile``."""
    strip = np.full((height, tile.shape[1], 3), 255, np.uint8)
    scale = max(0.3, height / 40)
    cv2.putText(strip, text[: max(1, tile.shape[1] // 6)], (2, height - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def _fit(tile: np.ndarray, height: int) -> np.ndarray:
    if tile.shape[0] == height:
        return tile
    w = max(1, round(tile.shape[1] * height / tile.shape[0]))
    return cv2.resize(tile, (w, height), interpolation=cv2.INTER_AREA)


def cam_panel(image: np.ndarray, keys: Sequence[int], cams: np.ndarray, class_names: Sequence[str],
              gt: np.ndarray | None = None, pred: np.ndarray | None = None, height: int = 160,
              title: str = "") -> np.ndarray:
    """One row: the image, one overlay per labelled class, then optional ground truth and predicted labels.

    keys: [K] class indices; cams: [K, H, W] in [0, 1]; gt / pred: [H, W] label maps (VOC colours).
    Every tile is scaled to ``height`` and captioned.
    """
    tiles = [caption(_fit(image, height), title or "image")]
    for k, cam in zip(keys, cams):
        tiles.append(caption(_fit(overlay_cam(image, cam), height), str(class_names[int(k)])))
    if gt is not None:
        tiles.append(caption(_fit(colorize(gt), height), "ground truth"))
    if pred is not None:
        tiles.append(caption(_fit(colorize(pred), height), "CAM labels"))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, axis=1)


def stack_rows(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Stack panels of possibly different widths into one image (right-padded with white)."""
    if not rows:
        raise ValueError("nothing to stack")
    width = max(r.shape[1] for r in rows)
    out = []
    for k, r in enumerate(rows):
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out.append(np.concatenate([r, pad], axis=1))
        if k < len(rows) - 1:
            out.append(np.full((gap, width, 3), 255, np.uint8))
    return np.concatenate(out, axis=0)
