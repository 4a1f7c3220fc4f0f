"""Seed quality: CAMs -> label maps, mIoU at a background threshold and over a threshold sweep, and the
classifier's mean average precision.

A CAM file holds maps only for the image's labelled classes; the label map is the argmax over
``[background = threshold, cams...]`` (ties go to background). Sweeping the threshold against ground truth
picks the best one *with the answers*, so it is reported as 'oracle', next to the configured threshold.

The sweep costs one pass: per pixel only the winning class and its score matter, so each image adds its
pixels to a histogram over (ground truth, winning class, threshold bin); every threshold's confusion matrix
is then a cumulative sum of that histogram.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from wsss.cam.io import load_cam
from wsss.data.base import SegDataset
from wsss.data.palette import IGNORE_INDEX
from wsss.errors import InputError
from wsss.eval.confusion import ConfusionMatrix

log = logging.getLogger(__name__)


def default_thresholds() -> list[float]:
    """0.05, 0.10, ..., 0.95 (exact two-decimal values, so 0.15 in a config matches the sweep)."""
    return [round(0.05 * i, 2) for i in range(1, 20)]


def cam_winner(keys: np.ndarray, cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel the best labelled class and its score.

    keys: [K] class indices; cams: [K, H, W] in [0, 1]. Returns (label [H, W] int64, score [H, W] float32);
    with K = 0 every pixel is background with score 0.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if cams.shape[0] == 0:
        shape = cams.shape[1:]
        return np.zeros(shape, np.int64), np.zeros(shape, np.float32)
    best = cams.argmax(axis=0)
    return keys[best], np.take_along_axis(cams, best[None], axis=0)[0].astype(np.float32)


def cam_to_labels(keys: np.ndarray, cams: np.ndarray, bg_threshold: float) -> np.ndarray:
    """CAM -> label map: argmax over [bg = threshold, cams] (ties -> background).

    keys: [K] class indices 1..C-1; cams: [K, H, W] float in [0, 1]. Returns [H, W] uint8.
    """
    label, score = cam_winner(keys, cams)
    return np.where(score > bg_threshold, label, 0).astype(np.uint8)


def _threshold_bins(score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each pixel the number of thresholds strictly below its score (0..T): at threshold index j the
    pixel is foreground iff j < bin."""
    return np.searchsorted(thresholds, score, side="left")


class ThresholdSweep:
    """Confusion matrices of CAM label maps at many background thresholds, accumulated in one pass."""

    def __init__(self, num_classes: int, thresholds: Sequence[float]) -> None:
        self.num_classes = num_classes
        self.thresholds = np.asarray(sorted(set(float(t) for t in thresholds)), dtype=np.float64)
        t = len(self.thresholds)
        # hist[gt, winner, bin]: pixel counts; bin = number of thresholds below the winner's score
        self.hist = np.zeros((num_classes, num_classes, t + 1), dtype=np.int64)

    def update(self, keys: np.ndarray, cams: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: keys [K], cams [K, H, W], gt [H, W] (255 ignored)."""
        label, score = cam_winner(keys, cams)
        if gt.shape != label.shape:
            raise ValueError(f"CAM is {label.shape[1]}x{label.shape[0]}, ground truth {gt.shape[1]}x{gt.shape[0]}")
        keep = gt != IGNORE_INDEX
        g = gt[keep].astype(np.int64)
        if g.size and g.max() >= self.num_classes:
            raise ValueError(f"ground-truth label {int(g.max())} >= num_classes {self.num_classes}")
        lab = label[keep]
        b = _threshold_bins(score[keep].astype(np.float64), self.thresholds)
        n, t1 = self.num_classes, len(self.thresholds) + 1
        flat = (g * n + lab) * t1 + b
        self.hist += np.bincount(flat, minlength=n * n * t1).reshape(n, n, t1)

    def reduce(self) -> None:
        """Sum the histogram over all ranks (no-op in one process): integer counts, so the sweep of sharded
        images equals the single-process one exactly."""
        from wsss import dist
        if dist.is_distributed():
            self.hist = dist.all_reduce_sum(torch.from_numpy(self.hist)).numpy()

    def matrix(self, j: int) -> ConfusionMatrix:
        """The confusion matrix at threshold index ``j``."""
        fg = self.hist[:, :, j + 1:].sum(axis=2)  # winner kept where its score > thresholds[j]
        bg = self.hist[:, :, : j + 1].sum(axis=2).sum(axis=1)  # everything else -> background
        mat = fg.copy()
        mat[:, 0] += bg
        cm = ConfusionMatrix(self.num_classes)
        cm.mat = torch.from_numpy(mat)
        return cm

    def index(self, threshold: float) -> int:
        j = int(np.argmin(np.abs(self.thresholds - threshold)))
        if abs(self.thresholds[j] - threshold) > 1e-9:
            raise KeyError(f"threshold {threshold} not in the sweep")
        return j


def evaluate_cam_dir(cam_dir: str | Path, dataset: SegDataset, thresholds: Iterable[float] | None = None,
                     bg_threshold: float = 0.15, ids: Sequence[str] | None = None,
                     progress: bool = False, distributed: bool = False) -> dict:
    """Score ``cam_dir/<id>.npz`` against the dataset's masks over a threshold sweep, in one pass.

    ``distributed``: call it on every rank; each scores its shard of the ids and the histograms are summed, so
    every rank returns the result of all images (identical to one process's) in 1/world_size of the time.

    Returns a JSON-able dict: ``bg_threshold``, ``miou`` and ``summary`` (per-class IoU / precision / recall,
    :meth:`ConfusionMatrix.summary`) at the configured threshold; ``oracle`` = ``{threshold, miou}`` of the
    best threshold on the sweep; ``sweep`` = ``{threshold: miou}``; ``num_images``.
    Raises InputError for a missing/corrupt CAM file or one whose size differs from its mask.
    """
    cam_dir = Path(cam_dir)
    if not dataset.has_masks:
        raise InputError(cam_dir, f"split '{dataset.split}' of {dataset.name} has no ground-truth masks to evaluate")
    ts = set(default_thresholds() if thresholds is None else [round(float(t), 6) for t in thresholds])
    ts.add(round(float(bg_threshold), 6))
    sweep = ThresholdSweep(dataset.num_classes, sorted(ts))
    from wsss import dist

    ids = list(dataset.ids if ids is None else ids)
    mine = dist.shard(ids) if distributed else ids
    it: Iterable[str] = mine
    if progress:
        from tqdm import tqdm
        it = tqdm(mine, desc=f"eval {cam_dir.parent.name or cam_dir.name}", unit="img", disable=not dist.is_main())
    error: BaseException | None = None
    try:
        for image_id in it:
            keys, cams = load_cam(cam_dir / f"{image_id}.npz")
            gt = dataset.mask(image_id)
            try:
                sweep.update(keys, cams, gt)
            except ValueError as e:
                raise InputError(cam_dir / f"{image_id}.npz", str(e)) from e
    except Exception as e:  # noqa: BLE001 - every rank must learn of it before the reduction
        error = e
    dist.raise_first_error(error, collective=distributed)
    if distributed:
        sweep.reduce()
    per_t = {float(t): sweep.matrix(j).miou() for j, t in enumerate(sweep.thresholds)}
    best_t = max(per_t, key=lambda t: (-1.0 if np.isnan(per_t[t]) else per_t[t]))
    j = sweep.index(round(float(bg_threshold), 6))
    summary = sweep.matrix(j).summary(dataset.class_names)
    return {
        "bg_threshold": float(bg_threshold),
        "miou": summary["miou"],
        "summary": summary,
        "oracle": {"threshold": best_t, "miou": round(per_t[best_t], 6)},
        "sweep": {f"{t:.2f}": round(m, 6) for t, m in per_t.items()},
        "num_images": len(ids),
    }


def format_cam_report(result: dict, title: str = "") -> str:
    """Per-class table at the configured threshold plus the oracle line."""
    from wsss.eval.confusion import format_table

    table = format_table(result["summary"], title=title)
    o = result["oracle"]
    return (f"{table}\nat bg threshold {result['bg_threshold']:.2f}: mIoU {100 * (result['miou'] or 0):.2f}; "
            f"oracle (threshold swept on ground truth) {100 * o['miou']:.2f} at {o['threshold']:.2f}")


# --- classifier quality --------------------------------------------------------------------------------
def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class: mean of the precision at the rank of every positive.

    scores: [N] float; targets: [N] {0, 1}. Ties are broken by putting negatives first (pessimistic),
    so the value never depends on input order. NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    npos = int(targets.sum())
    if npos == 0:
        return float("nan")
    order = np.lexsort((targets, -scores))  # score descending, negatives before positives on ties
    hits = targets[order]
    tp = np.cumsum(hits)
    precision_at = tp / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].sum() / npos)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP over classes with at least one positive. scores, targets: [N, K]. Returns (mAP, per-class AP [K])."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    ap = np.array([average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])])
    valid = ~np.isnan(ap)
    return (float(ap[valid].mean()) if valid.any() else float("nan")), ap
