"""From ToCo's auxiliary CAM to the supervision of its token contrast losses (pure tensor functions).

The auxiliary CAM (from an intermediate ViT layer, which keeps token diversity) is split by two thresholds
into confident background (max valid score <= low), confident foreground (> high, labelled by its best
class) and an uncertain band in between. That split gives

* the per-token labels whose pairwise relations supervise Patch Token Contrast (optionally after an online
  pixel-adaptive refinement, PAR, of the CAM with the image colours), and
* the places where Class Token Contrast cuts its local crops, and whether each crop counts as positive
  (it holds uncertain/foreground area) or negative (it is almost all confident background).

Conventions: ``cams`` are [B, C-1, H, W] float foreground CAMs (channel j = class j+1), ``labels`` are the
image-level multi-hot [B, C-1] vectors, label 0 is background and ``ignore_index`` (255) is unknown.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["normalize_cams", "uncertainty_map", "cams_to_labels", "par_refined_labels", "pool_labels_to_grid",
           "sample_local_crops", "ROI_BACKGROUND", "ROI_UNCERTAIN", "ROI_FOREGROUND"]

ROI_BACKGROUND = 0
ROI_UNCERTAIN = 1
ROI_FOREGROUND = 2


def normalize_cams(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Min-max normalise every map to [0, 1]: [B, K, H, W] float -> same shape (ToCo's per-map scaling)."""
    lo = cams.amin(dim=(2, 3), keepdim=True)
    cams = cams - lo
    return cams / (cams.amax(dim=(2, 3), keepdim=True) + eps)


def _valid_max(cams: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best score and its class (1-based) among the image's labelled classes: ([B, H, W], [B, H, W] long)."""
    valid = cams * labels[:, :, None, None].to(cams.dtype)
    value, index = valid.max(dim=1)
    return value, index + 1


def uncertainty_map(cams: torch.Tensor, labels: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """[B, H, W] uint8: ROI_BACKGROUND where the best valid score <= low, ROI_FOREGROUND where >= high,
    ROI_UNCERTAIN in between. cams: [B, C-1, H, W] in [0, 1]; labels: [B, C-1] multi-hot."""
    value, _ = _valid_max(cams, labels)
    roi = torch.full(value.shape, ROI_UNCERTAIN, dtype=torch.uint8, device=cams.device)
    roi[value <= low] = ROI_BACKGROUND
    roi[value >= high] = ROI_FOREGROUND
    return roi


def cams_to_labels(cams: torch.Tensor, labels: torch.Tensor, low: float, high: float,
                   ignore_index: int = 255) -> torch.Tensor:
    """Two-threshold hard labels: [B, H, W] long, best valid class where score > high, 0 where <= low,
    ``ignore_index`` in between. cams: [B, C-1, H, W] in [0, 1]; labels: [B, C-1] multi-hot."""
    value, cls = _valid_max(cams, labels)
    out = torch.full_like(cls, ignore_index)
    out[value > high] = cls[value > high]
    out[value <= low] = 0
    return out


def par_refined_labels(images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor, low: float, high: float,
                       refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], down_scale: int = 2,
                       ignore_index: int = 255) -> torch.Tensor:
    """Two-threshold labels after an image-guided refinement of the CAM (ToCo's online PAR step).

    images: [B, 3, H, W] float (any per-channel affine normalisation: PAR compares colours relative to the
            local colour spread, so it is invariant to it).
    cams: [B, C-1, H, W] in [0, 1]. labels: [B, C-1] multi-hot.
    refine: ``refine(images [B,3,h,w], probs [B,K,h,w]) -> [B,K,h,w]``, e.g. PAR with fixed settings.
    The CAM gets a constant background channel (once at ``high``, once at ``low``), absent classes get
    probability 0, a softmax turns scores into probabilities, ``refine`` propagates them at 1/down_scale
    resolution, and the argmax at full size gives two label maps. A pixel is foreground (its class) where the
    high-background map says so, background where both maps say background, ``ignore_index`` otherwise.
    Returns [B, H, W] long.
    """
    b, k, h, w = cams.shape
    size = (max(1, h // down_scale), max(1, w // down_scale))
    small_img = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    small_cam = F.interpolate(cams, size=size, mode="bilinear", align_corners=False)
    absent = (labels <= 0)[:, :, None, None].expand_as(small_cam)
    small_cam = small_cam.masked_fill(absent, float("-inf"))

    def probs_with_background(bg_score: float) -> torch.Tensor:
        bg = torch.full((b, 1) + size, bg_score, dtype=cams.dtype, device=cams.device)
        return torch.softmax(torch.cat([bg, small_cam], dim=1), dim=1)

    # one refinement call for both maps: the affinities depend on the image only, each channel propagates alone
    probs = refine(small_img, torch.cat([probs_with_background(high), probs_with_background(low)], dim=1))
    probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
    lab_high = probs[:, :k + 1].argmax(dim=1)
    lab_low = probs[:, k + 1:].argmax(dim=1)
    out = torch.where(lab_high > 0, lab_high, torch.full_like(lab_high, ignore_index))
    out[(lab_high == 0) & (lab_low == 0)] = 0
    return out


def pool_labels_to_grid(labels: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int = 255,
                        min_fraction: float = 0.5) -> torch.Tensor:
    """Pixel labels [B, H, W] long -> token labels [B, h, w] long by majority vote inside each cell.

    A cell takes its most frequent label; it is ``ignore_index`` when that label is ``ignore_index`` or
    covers less than ``min_fraction`` of the cell (mixed cells make unreliable token relations).
    num_classes: number of classes including background (labels in [0, num_classes) or ignore_index).
    """
    lab = labels.clone()
    lab[(lab < 0) | (lab >= num_classes)] = num_classes  # ignore goes to an extra channel
    onehot = F.one_hot(lab, num_classes + 1).permute(0, 3, 1, 2).float()
    frac = F.adaptive_avg_pool2d(onehot, size)
    best, arg = frac.max(dim=1)
    arg[(arg == num_classes) | (best < min_fraction)] = ignore_index
    return arg


def sample_local_crops(images: torch.Tensor, roi: torch.Tensor, num_crops: int, crop_size: int,
                       out_size: int | None = None, negative_max_fraction: float = 0.2,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut CTC's local crops where the auxiliary CAM is not confident foreground.

    images: [B, 3, H, W]; roi: [B, H, W] from :func:`uncertainty_map`.
    Crop centres are drawn (without replacement when possible) among pixels that are not confident
    foreground and whose crop fits inside the image; an image without such pixels draws from every
    position. A crop of side ``min(crop_size, H, W)`` is resized to ``out_size`` (default ``crop_size``)
    when the sides differ. A crop is negative when at most ``negative_max_fraction`` of its pixels are
    uncertain or foreground (it shows almost only background), positive otherwise.
    Returns (crops [B, num_crops, 3, out, out], positive [B, num_crops] bool).
    """
    b, c, h, w = images.shape
    side = min(crop_size, h, w)
    out = out_size or crop_size
    half = side // 2
    ys = torch.arange(h, device=images.device)
    xs = torch.arange(w, device=images.device)
    fits = ((ys[:, None] >= half) & (ys[:, None] + side - half <= h)) & \
           ((xs[None, :] >= half) & (xs[None, :] + side - half <= w))
    crops = images.new_empty((b, num_crops, c, out, out))
    positive = torch.zeros((b, num_crops), dtype=torch.bool, device=images.device)
    for i in range(b):
        cand = (fits & (roi[i] != ROI_FOREGROUND)).nonzero()
        if cand.shape[0] == 0:
            cand = fits.nonzero()
        order = torch.randperm(cand.shape[0], generator=generator, device="cpu").to(cand.device)
        if cand.shape[0] < num_crops:  # too few places: reuse some
            extra = torch.randint(cand.shape[0], (num_crops - cand.shape[0],), generator=generator, device="cpu")
            order = torch.cat([order, extra.to(cand.device)])
        centres = cand[order[:num_crops]]
        for j, (cy, cx) in enumerate(centres.tolist()):
            y0, x0 = cy - half, cx - half
            patch = images[i, :, y0:y0 + side, x0:x0 + side]
            if side != out:
                patch = F.interpolate(patch[None], size=(out, out), mode="bilinear", align_corners=False)[0]
            crops[i, j] = patch
            not_bg = (roi[i, y0:y0 + side, x0:x0 + side] != ROI_BACKGROUND).float().mean()
            positive[i, j] = bool(not_bg > negative_max_fraction)
    return crops, positive
