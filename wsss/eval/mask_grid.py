"""Picture grids for looking at pseudo masks: image | CAM | pseudo mask | ground truth, one row per image.

Why: mIoU says how good masks are on average; a grid shows *how* they fail (CAMs on the discriminative part
only, leakage into the co-occurring background, an ignore band that swallows thin objects). Pure array code:
panels in, one RGB array out; writing the file is the caller's job.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from wsss.data.palette import IGNORE_INDEX, colorize, voc_colormap

_GREY = 200


def cam_heatmap(image: np.ndarray, cams: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with a JET heat map of the strongest CAM per pixel.

    image: [H, W, 3] uint8 RGB; cams: [K, H, W] float in [0, 1] (K may be 0). Returns [H, W, 3] uint8 RGB.
    """
    h, w = image.shape[:2]
    peak = cams.max(axis=0) if cams.shape[0] else np.zeros((h, w), np.float32)
    if peak.shape != (h, w):
        peak = cv2.resize(peak.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(peak * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return (alpha * heat.astype(np.float32) + (1 - alpha) * image.astype(np.float32)).round().astype(np.uint8)


def mask_panel(mask: np.ndarray) -> np.ndarray:
    """[H, W] uint8 labels -> [H, W, 3] uint8 RGB in the VOC colours (255 = ignore in VOC's cream)."""
    return colorize(mask)


def _fit(panel: np.ndarray | None, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), _GREY, np.uint8)
    if panel is None:
        cv2.putText(out, "n/a", (width // 2 - 14, height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 90, 90), 1,
                    cv2.LINE_AA)
        return out
    if panel.ndim == 2:
        panel = np.repeat(panel[..., None], 3, axis=2)
    h, w = panel.shape[:2]
    s = min(height / h, width / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    resized = cv2.resize(panel, (nw, nh), interpolation=cv2.INTER_NEAREST)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


def mask_grid(rows: Sequence[Sequence[np.ndarray | None]], titles: Sequence[str],
              row_labels: Sequence[str] | None = None, cell: int = 160, gap: int = 4) -> np.ndarray:
    """Lay panels out in a grid with column titles (and optional row labels under each row's first panel).

    rows: one sequence of panels per image, each [h, w, 3] uint8 RGB (or None for 'not available'); every
    panel is scaled (nearest neighbour, aspect kept) into a ``cell`` x ``cell`` box.
    Returns [H, W, 3] uint8 RGB on a white background.
    """
    if not rows:
        raise ValueError("mask_grid needs at least one row")
    cols = max(len(r) for r in rows)
    title_h, label_h = 22, (16 if row_labels else 0)
    height = title_h + len(rows) * (cell + label_h + gap)
    width = cols * (cell + gap) - gap
    grid = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for c, t in enumerate(titles[:cols]):
        cv2.putText(grid, t, (c * (cell + gap) + 4, 16), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        y = title_h + r * (cell + label_h + gap)
        for c in range(cols):
            panel = row[c] if c < len(row) else None
            grid[y:y + cell, c * (cell + gap):c * (cell + gap) + cell] = _fit(panel, cell, cell)
        if row_labels:
            cv2.putText(grid, str(row_labels[r])[:40], (4, y + cell + 12), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def legend_entries(masks: Sequence[np.ndarray], class_names: Sequence[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, RGB colour) of every label present in ``masks`` ([H, W] uint8 each), in label order; 255 is
    'ignore'. Labels past ``class_names`` are shown by number."""
    present = sorted(set().union(*(np.unique(m).tolist() for m in masks))) if masks else []
    cmap = voc_colormap()
    out = []
    for label in present:
        name = "ignore" if label == IGNORE_INDEX else (class_names[label] if label < len(class_names) else str(label))
        out.append((name, tuple(int(v) for v in cmap[label])))
    return out


def add_legend(grid: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int]]], swatch: int = 12) -> np.ndarray:
    """The grid with a colour legend below it: a swatch and the class name per entry, wrapped to the grid's
    width. grid: [H, W, 3] uint8 RGB; returns [H + legend height, W, 3] uint8 RGB."""
    if not entries:
        return grid
    width = grid.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    items = [(name, colour, swatch + 6 + cv2.getTextSize(name, font, 0.4, 1)[0][0] + 14) for name, colour in entries]
    lines: list[list[tuple[str, tuple[int, int, int], int]]] = [[]]
    used = 0
    for item in items:
        if lines[-1] and used + item[2] > width:
            lines.append([])
            used = 0
        lines[-1].append(item)
        used += item[2]
    row_h = swatch + 8
    legend = np.full((row_h * len(lines) + 4, width, 3), 255, np.uint8)
    for r, line in enumerate(lines):
        x, y = 4, 4 + r * row_h
        for name, colour, w in line:
            legend[y:y + swatch, x:x + swatch] = colour
            cv2.rectangle(legend, (x, y), (x + swatch - 1, y + swatch - 1), (0, 0, 0), 1)
            cv2.putText(legend, name, (x + swatch + 5, y + swatch - 2), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            x += w
    return np.concatenate([grid, legend], axis=0)
