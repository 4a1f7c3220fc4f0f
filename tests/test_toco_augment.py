"""ToCo's augmentation preset (train_cls.augmentation='toco', wsss.data.transforms.MultiViewTransform)."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.data.torch_sets import seed_transform
from wsss.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, MultiViewTransform, classification_train_transform,
                                  classification_transform)
from wsss.errors import WSSSError

OFF = dict(jitter_p=0.0, gray_p=0.0, blur_p=(0.0, 0.0, 0.0), solarize_p=0.0)


def views(t, image: np.ndarray, seed: int = 0, index: int = 0) -> np.ndarray:
    seed_transform(t, seed, 0, index)
    return t(image=image)["image"]


def to_uint8(view: np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation of one view [H, W, 3] -> uint8."""
    return np.clip(np.round((view * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255.0), 0, 255).astype(np.uint8)


def photo(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_views_are_deterministic_per_sample_and_differ_across_samples():
    t = MultiViewTransform(32, (0.7, 1.3))
    img = photo()
    a, b = views(t, img, seed=3, index=5), views(t, img, seed=3, index=5)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, views(t, img, seed=3, index=6))
    assert not np.array_equal(a, views(t, img, seed=4, index=5))
    assert not np.array_equal(a[0], a[1])  # the second global view is its own crop and colours


def test_main_view_and_local_source_share_geometry():
    """With the colour operations off, the local-crop source is pixel-identical to the main view (the aux CAM
    computed on the main view places the crops)."""
    t = MultiViewTransform(32, (0.7, 1.3), **OFF)
    for i in range(4):
        v = views(t, photo(seed=i), index=i)
        assert np.array_equal(v[0], v[2])


def test_solarize_with_p1_inverts_pixels_from_128_up():
    """PIL's solarize (ToCo's): values >= 128 become 255 - v, the rest stay. A square image with
    second_scale=(1, 1) makes the second view the whole image (possibly flipped)."""
    img = np.tile(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), (1, 1, 3))
    t = MultiViewTransform(16, (1.0, 1.0), **{**OFF, "solarize_p": 1.0, "second_scale": (1.0, 1.0)})
    expected = np.where(img >= 128, 255 - img, img)
    for i in range(3):
        got = to_uint8(views(t, img, index=i)[1])
        assert np.array_equal(got, expected) or np.array_equal(got, expected[:, ::-1])
        main = to_uint8(views(t, img, index=i)[0])  # solarize is on the second view only
        assert np.array_equal(main, img) or np.array_equal(main, img[:, ::-1])


def test_grayscale_with_p1_gives_equal_channels_in_every_view():
    t = MultiViewTransform(32, (0.8, 1.2), **{**OFF, "gray_p": 1.0})
    v = views(t, photo(), index=1)
    for k in range(3):
        u = to_uint8(v[k]).astype(int)
        assert np.abs(u[..., 0] - u[..., 1]).max() <= 1 and np.abs(u[..., 1] - u[..., 2]).max() <= 1


def test_second_view_crop_area_stays_in_its_scale_range():
    """Encode each pixel's column / row in R / G: the span of the values in the second view is the crop's
    width / height in source pixels, so its area fraction must lie in second_scale (0.4-1)."""
    h, w = 120, 160
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    t = MultiViewTransform(48, (1.0, 1.0), **OFF)
    fractions = []
    for i in range(30):
        v = to_uint8(views(t, img, index=i)[1]).astype(int)
        width = v[..., 0].max() - v[..., 0].min() + 1
        height = v[..., 1].max() - v[..., 1].min() + 1
        fractions.append(width * height / (h * w))
    assert min(fractions) >= 0.4 * 0.9 and max(fractions) <= 1.0  # 10% slack: bicubic edges, integer sides
    assert min(fractions) < 0.7  # the range is used, not just full crops


def test_gaussian_blur_with_p1_smooths_the_main_view():
    img = photo(32, 32)
    sharp = views(MultiViewTransform(32, (1.0, 1.0), **OFF), img)[0]
    blurred = views(MultiViewTransform(32, (1.0, 1.0), **{**OFF, "blur_p": (1.0, 0.0, 0.0),
                                                           "blur_sigma": (1.5, 1.5)}), img)[0]
    tv = lambda x: np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()  # noqa: E731
    assert tv(blurred) < 0.6 * tv(sharp)


def test_wsss_preset_is_the_classification_transform():
    img = photo()
    a = classification_train_transform(32, (0.7, 1.3), "wsss", color_jitter=0.3)
    b = classification_transform(32, train=True, scale_range=(0.7, 1.3), color_jitter=0.3)
    assert np.array_equal(views(a, img, index=2), views(b, img, index=2))


def test_bad_presets_are_refused():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        classification_train_transform(32, augmentation="dino")
    with pytest.raises(ValueError, match="unknown ToCo augmentation options"):
        MultiViewTransform(32, solarise_p=1.0)
    from stages import train_cls
    from wsss.config import Config

    with pytest.raises(WSSSError, match="train_cls.augmentation='dino': must be one of 'wsss', 'toco'"):
        train_cls.settings(Config(dict(train_cls=dict(augmentation="dino"))))
