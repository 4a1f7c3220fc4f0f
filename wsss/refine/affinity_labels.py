"""Affinity supervision from CAMs: confident seeds, then per-pair labels within a radius.

Why: CAMs are right where they are confident and wrong around their borders. AffinityNet/IRN only trust the
confident parts: pixels with a strong CAM are foreground of their class, pixels where every CAM is weak are
background, the band in between is ignored. Two pixels within a small radius that both carry a seed label then
say whether they belong together (same label: positive pair) or not (different labels: negative pair). An
affinity network learns these relations and generalises them into the ignored band, which is what lets a random
walk grow the CAMs up to object boundaries.

Seed rule (IRN ``cam_to_ir_label``, thresholds 0.30 / 0.05 on CAMs normalised to [0, 1]):
``max_k cam_k > conf_fg`` -> argmax class; ``max_k cam_k <= conf_bg`` -> background (0); otherwise 255 (ignore).

Pair representation: the same as :func:`wsss.ops.random_walk`'s affinity, ``[B, E, h, w]`` where entry
``[b, e, y, x]`` relates pixel ``(y, x)`` to ``(y + dy_e, x + dx_e)`` for the E offsets of a radius
(:func:`wsss.ops.radius_offsets`). Pairs whose second pixel falls outside the grid carry no label.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from wsss.data.palette import IGNORE_INDEX
from wsss.refine.crf import CRFParams
from wsss.refine.pseudo import PseudoParams, make_pseudo_mask

__all__ = ["seed_labels", "downsample_labels", "pair_labels", "pair_counts"]


def seed_labels(keys: np.ndarray, cams: np.ndarray, conf_fg: float = 0.30, conf_bg: float = 0.05,
                image: np.ndarray | None = None, crf: CRFParams | None = None) -> np.ndarray:
    """Confident foreground / background / ignore labels from one image's CAMs.

    keys: [K] int foreground class indices (1..C-1); cams: [K, H, W] float in [0, 1]; image: [H, W, 3] uint8
    RGB, needed only with ``crf`` (IRN refines both decisions with a dense CRF).
    Returns [H, W] uint8: the argmax class where ``max cam > conf_fg``, 0 where ``max cam <= conf_bg``,
    255 (ignore) in between (without CRF). This is the ignore-band rule of :mod:`wsss.refine.pseudo`, reused.
    """
    if not 0.0 <= conf_bg < conf_fg:
        raise ValueError(f"need 0 <= conf_bg < conf_fg, got conf_bg={conf_bg}, conf_fg={conf_fg}")
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise ValueError(f"cams must be [K, H, W] with K={keys.shape[0]}, got {cams.shape}")
    params = PseudoParams(conf_fg=float(conf_fg), conf_bg=float(conf_bg), crf=crf)
    return make_pseudo_mask(keys, cams, params, image)


def downsample_labels(labels: torch.Tensor, stride: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Labels on the feature grid: the label at the centre pixel of each ``stride x stride`` cell.

    labels: [..., H, W] integer; returns [..., h, w] with ``h = ceil(H / stride)`` (or ``size``). Sampling the
    centre (not a majority vote) keeps the result a subset of the input labels and costs nothing.
    """
    if stride == 1 and size is None:
        return labels
    h = size[0] if size else -(-labels.shape[-2] // stride)
    w = size[1] if size else -(-labels.shape[-1] // stride)
    ys = torch.clamp(torch.arange(h) * stride + stride // 2, max=labels.shape[-2] - 1)
    xs = torch.clamp(torch.arange(w) * stride + stride // 2, max=labels.shape[-1] - 1)
    return labels[..., ys[:, None], xs[None, :]]


def _shifted(labels: torch.Tensor, dy: int, dx: int, fill: int) -> torch.Tensor:
    """``out[..., y, x] = labels[..., y + dy, x + dx]``, ``fill`` where that falls outside the grid."""
    h, w = labels.shape[-2:]
    out = torch.full_like(labels, fill)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = labels[..., ys + dy:ye + dy, xs + dx:xe + dx]
    return out


def pair_labels(labels: torch.Tensor, offsets: Sequence[tuple[int, int]] | torch.Tensor,
                ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positive/negative pair masks for every pixel and offset.

    labels: [B, h, w] integer seeds on the feature grid (0 bg, 1..C-1 fg, ``ignore_index`` unknown);
    offsets: E pairs ``(dy, dx)``. Returns ``(bg_pos, fg_pos, neg)``, each [B, E, h, w] bool:
    ``bg_pos`` both pixels background, ``fg_pos`` both the same foreground class, ``neg`` two different
    labels; a pair with an ignored pixel or a partner outside the grid is in none of the three.
    """
    labels = labels.long()
    offs = [(int(dy), int(dx)) for dy, dx in (offsets.tolist() if torch.is_tensor(offsets) else offsets)]
    valid_a = labels != ignore_index
    bg_pos, fg_pos, neg = [], [], []
    for dy, dx in offs:
        other = _shifted(labels, dy, dx, ignore_index)
        both = valid_a & (other != ignore_index)
        same = both & (labels == other)
        bg_pos.append(same & (labels == 0))
        fg_pos.append(same & (labels != 0))
        neg.append(both & (labels != other))
    return torch.stack(bg_pos, 1), torch.stack(fg_pos, 1), torch.stack(neg, 1)


def pair_counts(bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor) -> dict[str, int]:
    """Number of pairs of each kind (logged during training: a run with no negatives learns nothing)."""
    return {"bg_pos": int(bg_pos.sum()), "fg_pos": int(fg_pos.sum()), "neg": int(neg.sum())}
