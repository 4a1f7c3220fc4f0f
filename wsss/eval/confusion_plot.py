"""Pictures of a segmentation evaluation: the row-normalised confusion matrix and a per-class IoU bar chart.

A table of 21 (or 81) IoUs hides *which* classes are confused with which (chair with dining table, train
with background on rails); the confusion image shows it at a glance. Uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wsss.artifacts import atomic_path  # noqa: E402

__all__ = ["normalize_rows", "confusion_figure", "iou_bar_figure", "save_figure"]


def normalize_rows(mat: np.ndarray) -> np.ndarray:
    """[C, C] counts (rows = ground truth) -> [C, C] float64 fractions of each true class; empty rows stay 0."""
    mat = np.asarray(mat, dtype=np.float64)
    totals = mat.sum(axis=1, keepdims=True)
    return np.divide(mat, totals, out=np.zeros_like(mat), where=totals > 0)


def confusion_figure(mat: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """Heat map of the row-normalised confusion matrix (true class down, predicted class across).

    Cells are annotated with percentages when there are at most 30 classes (COCO's 81 would be unreadable).
    """
    frac = normalize_rows(mat)
    n = len(class_names)
    side = max(4.0, 0.38 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if title:
        ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if frac[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * frac[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def iou_bar_figure(ious: dict[str, Sequence[float | None]], class_names: Sequence[str], title: str = "") -> Figure:
    """Grouped bars of per-class IoU (percent), one group per class, one bar per entry of ``ious``.

    ``ious`` maps a series name (e.g. 'single-scale', 'multi-scale + flip') to [C] IoUs (None/NaN = class
    absent, drawn as no bar). The legend gives each series' mIoU.
    """
    names = list(class_names)
    n, k = len(names), max(1, len(ious))
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n * k + 2.0), 4.0))
    for s, (label, values) in enumerate(ious.items()):
        v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
        miou = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        ax.bar(np.arange(n) + (s - (k - 1) / 2) * width, np.nan_to_num(100 * v), width,
               label=f"{label} (mIoU {100 * miou:.1f})")
    ax.set_xticks(range(n), labels=names, rotation=90, fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` as PNG atomically and free it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
