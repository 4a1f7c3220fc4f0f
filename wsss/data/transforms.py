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
    """[H, W, 3] float numpy (already normalised) -> contiguous [3, H, W] float32 tensor (no rescaling);
    stacked views [V, H, W, 3] -> [V, 3, H, W]."""
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"expected an [H, W, C] image or [V, H, W, C] views, got shape {image.shape}")
    order = (2, 0, 1) if image.ndim == 3 else (0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(order), dtype=np.float32))


# --- classifier augmentation presets --------------------------------------------------------------------
CLS_AUGMENTATIONS = ("wsss", "toco")
TOCO_VIEW_DEFAULTS: dict = dict(
    jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2, blur_sigma=(0.1, 2.0), blur_p=(1.0, 0.1, 0.5),
    solarize_p=0.2, solarize_threshold=128, second_scale=(0.4, 1.0))


def _toco_photometric(jitter: tuple[float, float, float, float], jitter_p: float, gray_p: float,
                      blur_sigma: tuple[float, float], blur_p: float) -> list[A.BasicTransform]:
    """ToCo's photometric chain (DINO's): colour jitter with probability, random grayscale, Gaussian blur."""
    b, c, s, h = (float(v) for v in jitter)
    return [A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=float(jitter_p)),
            A.ToGray(num_output_channels=3, p=float(gray_p)),
            A.GaussianBlur(blur_limit=0, sigma_limit=tuple(float(v) for v in blur_sigma), p=float(blur_p))]


class MultiViewTransform:
    """ToCo's views of one training image, stacked: ``t(image=uint8 [H, W, 3])['image']`` -> float32
    ``[3, crop, crop, 3]`` (view, H, W, channel), each view normalised.

    * view 0, the main input (ToCo's "global view 1"): random rescale, pad, random crop, h-flip (the wsss
      geometry), then colour jitter, grayscale, blur;
    * view 1, the second global view: ``RandomResizedCrop(crop, scale=second_scale)`` of the *original* image
      (bicubic), h-flip, jitter, grayscale, blur, solarize;
    * view 2, the source of CTC's local crops: the same geometric crop as view 0 with its own jitter,
      grayscale and blur draws (ToCo flips it independently, which misaligns it with the CAM the crops are
      placed by; here it keeps view 0's geometry).

    ``blur_p`` is (view 0, view 1, view 2). Why a class and not one Compose: the views come from different
    geometries of the same image. Each sub-pipeline gets its own generators derived from the ones
    ``set_random_state`` receives, so a sample's views depend only on (seed, epoch, index).
    """

    def __init__(self, crop_size: int, scale_range: tuple[float, float] = (0.5, 1.5),
                 mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                 **options) -> None:
        unknown = sorted(set(options) - set(TOCO_VIEW_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown ToCo augmentation options {unknown}; known: {sorted(TOCO_VIEW_DEFAULTS)}")
        o = {**TOCO_VIEW_DEFAULTS, **options}
        lo, hi = (float(v) for v in o["second_scale"])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"second_scale must satisfy 0 < lo <= hi <= 1, got {o['second_scale']}")
        if len(o["blur_p"]) != 3:
            raise ValueError(f"blur_p must give (main, second, local) probabilities, got {o['blur_p']}")
        photo = lambda p: _toco_photometric(o["jitter"], o["jitter_p"], o["gray_p"], o["blur_sigma"], p)  # noqa: E731
        norm = A.Normalize(mean=mean, std=std, max_pixel_value=255.0)
        # albumentations' Solarize inverts values >= threshold_range * 255; ToCo's PIL solarize inverts >= 128
        thr = (float(o["solarize_threshold"]) - 0.5) / 255.0
        self.geometry = A.Compose(_scale_crop_flip(crop_size, scale_range, mean))
        self.main = A.Compose(photo(o["blur_p"][0]) + [norm])
        self.second = A.Compose([A.RandomResizedCrop(size=(crop_size, crop_size), scale=(lo, hi),
                                                     interpolation=cv2.INTER_CUBIC),
                                 A.HorizontalFlip(p=0.5)] + photo(o["blur_p"][1])
                                + [A.Solarize(threshold_range=(thr, thr), p=float(o["solarize_p"])), norm])
        self.local = A.Compose(photo(o["blur_p"][2]) + [norm])
        self._parts = (self.geometry, self.main, self.second, self.local)

    def set_random_state(self, rng: np.random.Generator, py_rng) -> None:
        """Seed every sub-pipeline from one (numpy, python) generator pair, reproducibly."""
        import random

        for part in self._parts:
            part.set_random_state(np.random.default_rng(int(rng.integers(2**63))),
                                  random.Random(int(py_rng.getrandbits(64))))

    def __call__(self, image: np.ndarray, **_) -> dict:
        crop = self.geometry(image=image)["image"]
        views = [self.main(image=crop)["image"], self.second(image=image)["image"], self.local(image=crop)["image"]]
        return {"image": np.stack(views).astype(np.float32, copy=False)}


def classification_train_transform(crop_size: int, scale_range: tuple[float, float] = (0.5, 1.5),
                                   augmentation: str = "wsss", color_jitter: float = 0.3,
                                   options: dict | None = None):
    """The training pipeline of a classifier augmentation preset.

    'wsss': :func:`classification_transform` (one view; jitter ``color_jitter``, hue <= 0.05; a ToCo model
    makes its second global view by flipping). 'toco': :class:`MultiViewTransform` (three stacked views).
    ``options`` overrides the ToCo preset's values (keys of ``TOCO_VIEW_DEFAULTS``).
    """
    if augmentation == "wsss":
        if options:
            raise ValueError("augmentation options apply to the 'toco' preset only")
        return classification_transform(crop_size, train=True, scale_range=scale_range, color_jitter=color_jitter)
    if augmentation == "toco":
        return MultiViewTransform(crop_size, scale_range, **dict(options or {}))
    raise ValueError(f"augmentation must be one of {CLS_AUGMENTATIONS}, got '{augmentation}'")
