"""Albumentations pipelines for the classifier (image only) and the segmentation net (image + mask).

Why these choices: padding uses the mean colour for images (it normalises to 0, so padded borders carry no
signal) and 255 for masks (padding is 'ignore', never background); masks are always resized with nearest
interpolation so no transform can invent a label that was not in the input mask.
Outputs are numpy ``[H, W, 3] float32`` images normalised with the ImageNet mean/std and ``[H, W] uint8``
masks; ``to_tensor`` makes the ``[3, H, W]`` tensor. Randomness is driven by the Compose's own generators,
which ``wsss.data.torch_sets`` reseeds per sample from (seed, epoch, index).
Written against albumentations 2.x (``fill`` / ``fill_mask``, ``set_random_state``).
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsss.data.palette import IGNORE_INDEX  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _mean_fill(mean: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(float(round(m * 255.0)) for m in mean)


def _resize_pad(crop_size: int, mean: tuple[float, float, float]) -> list[A.BasicTransform]:
    """Eval geometry: longer side to crop_size (aspect kept), centred padding to a crop_size square."""
    return [
        A.LongestMaxSize(max_size=crop_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="center",
                      border_mode=cv2.BORDER_CONSTANT, fill=_mean_fill(mean), fill_mask=IGNORE_INDEX),
    ]


def _scale_crop_flip(crop_size: int, scale_range: tuple[float, float],
                     mean: tuple[float, float, float]) -> list[A.BasicTransform]:
    """Train geometry: random rescale, pad (mean colour / 255) to at least crop_size, random crop, h-flip."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    return [
        A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="center",
                      border_mode=cv2.BORDER_CONSTANT, fill=_mean_fill(mean), fill_mask=IGNORE_INDEX),
        A.RandomCrop(height=crop_size, width=crop_size),
        A.HorizontalFlip(p=0.5),
    ]


def classification_transform(crop_size: int, train: bool, scale_range: tuple[float, float] = (0.5, 1.5),
                             mean: tuple[float, float, float] = IMAGENET_MEAN,
                             std: tuple[float, float, float] = IMAGENET_STD,
                             color_jitter: float = 0.3) -> A.Compose:
    """Image-only pipeline: ``t(image=uint8 [H, W, 3])['image']`` -> float32 [crop, crop, 3], normalised.

    Train: random scale in ``scale_range``, pad, random crop, h-flip, colour jitter (p=0.8, hue +-0.05).
    Eval: resize the longer side to ``crop_size`` and pad to a square.
    """
    ops = _scale_crop_flip(crop_size, scale_range, mean) if train else _resize_pad(crop_size, mean)
    if train and color_jitter > 0:
        ops.append(A.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter,
                                 hue=min(0.05, color_jitter), p=0.8))
    ops.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(ops)


def segmentation_transform(crop_size: int, train: bool, scale_range: tuple[float, float] = (0.5, 2.0),
                           mean: tuple[float, float, float] = IMAGENET_MEAN,
                           std: tuple[float, float, float] = IMAGENET_STD) -> A.Compose:
    """Image + mask pipeline: ``t(image=uint8 [H, W, 3], mask=uint8 [H, W])`` -> float32 image, uint8 mask.

    Same geometry as ``classification_transform`` (no colour jitter); padded mask pixels are 255 (ignore)
    and masks are resized with nearest interpolation, so the output labels are a subset of the input's plus 255.
    """
    ops = _scale_crop_flip(crop_size, scale_range, mean) if train else _resize_pad(crop_size, mean)
    ops.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(ops, mask_interpolation=cv2.INTER_NEAREST)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """[H, W, 3] float numpy (already normalised) -> contiguous [3, H, W] float32 tensor (no rescaling)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an [H, W, C] image, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
