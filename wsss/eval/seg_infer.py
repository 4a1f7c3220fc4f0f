"""Segmentation-net inference on whole images: whole or sliding-window, multi-scale and flip, as pure functions.

Why here and not in the stage: the same inference is used by evaluation, by the fully supervised upper bound and
by anyone who wants predictions in a notebook. Everything works on one normalised image tensor at a time and
returns class probabilities at the original image size, averaged over the views (softmax, then mean), the way
DeepLab and mmsegmentation test-time augmentation does it.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["image_to_tensor", "forward_whole", "forward_sliding", "predict_probs", "Prediction"]

Model = Callable[[torch.Tensor], torch.Tensor]


def image_to_tensor(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> [1, 3, H, W] float32 normalised with ``mean``/``std`` (fractions of 255)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - m) / s).unsqueeze(0)


def forward_whole(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Logits of the whole image in one pass: x [B, 3, H, W] -> [B, C, H, W] float32."""
    return model(x).float()


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins covering ``size`` with windows of ``crop`` every ``stride`` (last window flush)."""
    if size <= crop:
        return [0]
    n = math.ceil((size - crop) / stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(n)})


def forward_sliding(model: Model, x: torch.Tensor, crop_size: int, stride: int) -> torch.Tensor:
    """Logits from overlapping ``crop_size`` windows every ``stride`` pixels, averaged where they overlap.

    x [B, 3, H, W] -> [B, C, H, W] float32. Images smaller than a window are passed whole (the model accepts
    any size), so memory is bounded by one window whatever the image size.
    """
    if stride <= 0 or crop_size <= 0:
        raise ValueError(f"crop_size and stride must be positive, got {crop_size}, {stride}")
    b, _, h, w = x.shape
    out: torch.Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=x.device)
    for y0 in _starts(h, crop_size, stride):
        for x0 in _starts(w, crop_size, stride):
            y1, x1 = min(y0 + crop_size, h), min(x0 + crop_size, w)
            logits = model(x[:, :, y0:y1, x0:x1]).float()
            if out is None:
                out = torch.zeros(b, logits.shape[1], h, w, device=x.device)
            out[:, :, y0:y1, x0:x1] += logits
            count[:, :, y0:y1, x0:x1] += 1
    assert out is not None
    return out / count


class Prediction(NamedTuple):
    """``probs``: [B, C, H, W] float32 mean softmax over all views; ``single``: the scale-1.0 unflipped view's
    softmax when it is among the views (so single-scale numbers come free with a multi-scale run), else None."""

    probs: torch.Tensor
    single: torch.Tensor | None


@torch.no_grad()
def predict_probs(model: Model, x: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False,
                  mode: str = "whole", crop_size: int = 512, stride: int = 341,
                  autocast: bool = False) -> Prediction:
    """Class probabilities of x [B, 3, H, W] at its own size, averaged over ``scales`` x (flip or not).

    Each view is resized bilinearly, run ``whole`` or ``slide`` (windows of ``crop_size`` every ``stride``),
    un-flipped, resized back to H x W, soft-maxed; the views' probabilities are averaged. ``autocast`` runs the
    model in float16 on CUDA (probabilities stay float32).
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"inference mode must be 'whole' or 'slide', got '{mode}'")
    if not scales:
        raise ValueError("scales must not be empty")
    h, w = x.shape[2:]
    total: torch.Tensor | None = None
    single: torch.Tensor | None = None
    n = 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))),
                                               mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            xi = xs.flip(-1) if flipped else xs
            with torch.autocast(device_type=x.device.type, dtype=torch.float16,
                                enabled=autocast and x.device.type == "cuda"):
                logits = forward_whole(model, xi) if mode == "whole" else forward_sliding(model, xi, crop_size,
                                                                                            stride)
            logits = logits.float()
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            probs = logits.softmax(dim=1)
            if s == 1.0 and not flipped:
                single = probs
            total = probs.clone() if total is None else total.add_(probs)
            n += 1
    assert total is not None
    return Prediction(total / n, single)
