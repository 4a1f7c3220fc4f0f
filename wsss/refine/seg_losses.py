"""Losses of ToCo's segmentation branch (Ru et al., CVPR 2023) as pure functions over tensors.

ToCo trains a segmentation decoder on its own PAR-refined CAM pseudo labels with two terms:

* a *balanced* cross-entropy: the mean CE over background pixels and the mean CE over foreground pixels,
  averaged, so the (usually dominant) background does not swamp the objects; ignored pixels drop out;
* a *dense energy* (CRF) regulariser of Tang et al. ("On Regularized Losses for Weakly-supervised CNN
  Segmentation", ECCV 2018): ``-sum_k S_k^T (G * (W S_k))`` with ``W`` a fully connected Gaussian kernel over
  position and colour, ``S`` the softmax predictions and ``G`` a gate (1 on pseudo-label-ignored pixels,
  ``1 - max_k S_k`` elsewhere). It rewards predictions that agree between nearby pixels of similar colour,
  i.e. it pulls the ignored band and uncertain pixels towards their colour-coherent neighbours.

Written from the formulas, not from the reference code. The reference filters with a permutohedral lattice
(an approximation, C++ on CPU); here ``W S`` is the exact dense sum, computed in row chunks so memory stays
``chunk x N`` (N pixels after ``scale_factor``) — cheap at the synthetic sizes, O(N^2) time at VOC's
(224 x 224 after the 0.5 rescale: 2.5e9 kernel entries per image and step; not timed on a GPU here). As in the
reference the gradient is the one of its hand-written backward, ``-2 * G * (W S) / B`` (gate and filter treated
as constants).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["balanced_seg_loss", "dense_gaussian_filter", "dense_energy_loss"]


def balanced_seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """0.5 * (mean CE over background pixels + mean CE over foreground pixels).

    logits: [B, C, H, W] float (C includes background, channel 0); labels: [B, H, W] long, ``ignore_index``
    ignored. A side (background / foreground) without pixels contributes 0 (the reference's later version
    also drops a non-finite side). Returns a scalar.
    """
    bg = labels.masked_fill(labels != 0, ignore_index)
    fg = labels.masked_fill(labels == 0, ignore_index)
    zero = logits.sum() * 0.0

    def side(target: torch.Tensor) -> torch.Tensor:
        if not bool((target != ignore_index).any()):
            return zero
        return F.cross_entropy(logits.float(), target, ignore_index=ignore_index)

    return 0.5 * (side(bg) + side(fg))


def dense_gaussian_filter(features: torch.Tensor, values: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Exact fully connected Gaussian filtering: ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j``.

    features: [N, D] float (already divided by their bandwidths); values: [N, K]. Returns [N, K].
    The self-term (j = i, weight 1) is included. Rows are processed ``chunk`` at a time.
    """
    out = []
    sq = (features * features).sum(dim=1)
    for start in range(0, features.shape[0], chunk):
        f = features[start:start + chunk]
        k = (f @ features.T).mul_(2.0).sub_(sq[None, :]).sub_(sq[start:start + chunk, None])  # -|f_i - f_j|^2
        out.append(k.clamp_max_(0.0).mul_(0.5).exp_() @ values)
    return torch.cat(out, dim=0)


def dense_energy_loss(images: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, sigma_rgb: float = 15.0,
                      sigma_xy: float = 100.0, scale_factor: float = 0.5, weight: float = 1e-7,
                      roi: torch.Tensor | None = None, ignore_index: int = 255, chunk: int = 4096) -> torch.Tensor:
    """Gated dense-CRF energy of soft predictions (ToCo's ``w_reg`` term; defaults = ToCo's VOC values).

    images: [B, 3, H, W] float RGB in 0..255 (colours are compared in that unit, ``sigma_rgb``).
    probs: [B, K, H, W] softmax predictions (gradient flows into them).
    labels: [B, H, W] long pseudo labels; ``ignore_index`` marks the unlabelled band (gate 1 there).
    sigma_xy: spatial bandwidth in pixels of the input; scale_factor: everything is resized by it first
        (images and labels nearest, predictions bilinear) and ``sigma_xy`` with it, as the reference does.
    roi: [B, H, W] {0, 1} valid-image mask (1 everywhere by default); predictions outside are zeroed.
    weight: the loss scale (ToCo 1e-7: the energy is a sum over pixel pairs, not a mean).
    Returns a scalar: ``-weight * sum_b sum_k S_k^T (G * W S_k) / B``.
    """
    b, k, h, w = probs.shape
    if roi is None:
        roi = probs.new_ones((b, h, w))
    if scale_factor != 1.0:
        size = (max(1, int(h * scale_factor)), max(1, int(w * scale_factor)))
        images = F.interpolate(images.float(), size=size, mode="nearest")
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        roi = F.interpolate(roi[:, None].float(), size=size, mode="nearest")[:, 0]
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    sigma = float(sigma_xy) * float(scale_factor)
    hs, ws = probs.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(hs, device=probs.device, dtype=torch.float32),
                            torch.arange(ws, device=probs.device, dtype=torch.float32), indexing="ij")
    xy = torch.stack([ys, xs], dim=-1).reshape(-1, 2) / sigma  # [N, 2]
    seg = probs.float() * roi[:, None]
    filtered = []
    with torch.no_grad():
        gate = (roi - seg.amax(dim=1))
        gate = torch.where(labels == ignore_index, torch.ones_like(gate), gate).clamp_min(0.0)
        for i in range(b):
            rgb = images[i].float().reshape(3, -1).T / float(sigma_rgb)  # [N, 3]
            s = seg[i].detach().reshape(k, -1).T  # [N, K]
            ws_i = dense_gaussian_filter(torch.cat([xy, rgb], dim=1), s, chunk).T.reshape(k, hs, ws)
            filtered.append(ws_i * gate[i][None])
        gated = torch.stack(filtered)  # [B, K, hs, ws], G * (W S), a constant
    energy = (seg * gated).sum() / b
    # value -energy, gradient -2 * G * (W S) / B (the reference's backward)
    return float(weight) * (-2.0 * energy + energy.detach())
