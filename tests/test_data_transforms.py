"""Albumentations pipelines (ignore padding, no invented labels, no deprecation warnings) and the torch
Dataset wrappers (augmentation reproducible from (seed, epoch, index), whatever the DataLoader workers)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wsss.data.base import SegDataset
from wsss.data.palette import save_mask
from wsss.data.torch_sets import ClassificationSet, InferenceSet, SegmentationSet
from wsss.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, classification_transform, segmentation_transform,
                                  to_tensor)


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def blocky_mask(h: int, w: int, labels=(0, 3, 7), seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed).choice(labels, (h // 4 + 1, w // 4 + 1)).astype(np.uint8)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_NEAREST)


@pytest.fixture
def tiny_ds(tmp_path: Path) -> SegDataset:
    ids = [f"im{i}" for i in range(6)]
    (tmp_path / "img").mkdir()
    for k, i in enumerate(ids):
        h, w = 40 + 6 * k, 56 - 4 * k
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), rand_image(h, w, k))
        save_mask(tmp_path / "gt" / f"{i}.png", blocky_mask(h, w, seed=k))
        save_mask(tmp_path / "pseudo" / f"{i}.png", np.full((h, w), 2, np.uint8))
    labels = {i: [3, 7] for i in ids}
    return SegDataset(name="t", split="train", ids=ids, class_names=[f"c{j}" for j in range(8)],
                      image_dir=tmp_path / "img", labels=labels, mask_dir=tmp_path / "gt")


def test_no_warnings_from_building_and_running_the_pipelines():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for train in (True, False):
            classification_transform(32, train)(image=rand_image(20, 30))
            segmentation_transform(32, train)(image=rand_image(20, 30), mask=blocky_mask(20, 30))


def test_segmentation_padding_is_ignore_and_keeps_labels_exactly():
    img, mask = rand_image(20, 30), blocky_mask(20, 30)
    t = segmentation_transform(48, train=True, scale_range=(1.0, 1.0))
    for s in range(10):
        t.set_random_seed(s)
        out = t(image=img, mask=mask)
        m = out["mask"]
        assert m.shape == (48, 48) and m.dtype == np.uint8 and out["image"].dtype == np.float32
        keep = m != 255
        assert keep.sum() == 20 * 30  # scale 1: every original pixel survives the pad-and-crop once
        rows, cols = np.nonzero(keep)
        crop = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert crop.shape == (20, 30)
        assert np.array_equal(crop, mask) or np.array_equal(crop, mask[:, ::-1])  # maybe flipped
        # padded image pixels are the mean colour, i.e. 0 after normalisation
        assert np.abs(out["image"][~keep]).max() < 0.02


def test_random_scale_never_invents_labels():
    img, mask = rand_image(37, 53, 1), blocky_mask(37, 53, labels=(0, 3, 7, 255), seed=1)
    t = segmentation_transform(32, train=True)
    for s in range(20):
        t.set_random_seed(s)
        m = t(image=img, mask=mask)["mask"]
        assert set(np.unique(m)) <= {0, 3, 7, 255}


def test_eval_transforms_resize_longer_side_and_pad():
    img, mask = rand_image(40, 20), blocky_mask(40, 20)
    out = segmentation_transform(64, train=False)(image=img, mask=mask)
    m = out["mask"]
    assert m.shape == (64, 64)
    assert (m[:, :16] == 255).all() and (m[:, 48:] == 255).all() and (m[:, 16:48] != 255).all()
    x = classification_transform(64, train=False)(image=img)["image"]
    expected = (img[0, 0] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0, 16], expected, atol=0.05)  # top-left image pixel after 2x upscale + pad
    assert np.abs(x[:, :16]).max() < 0.02
    t = to_tensor(x)
    assert t.shape == (3, 64, 64) and t.dtype == torch.float32 and t.is_contiguous()


def test_classification_set_reproducible_from_seed_epoch_index(tiny_ds):
    t = classification_transform(32, train=True)
    a = ClassificationSet(tiny_ds, t, seed=5)
    b = ClassificationSet(tiny_ds, classification_transform(32, train=True), seed=5)
    x0, y0, i0 = a[2]
    _ = [a[k] for k in (0, 5, 1)]  # other samples drawn in between do not matter
    x1, _, _ = a[2]
    x2, _, _ = b[2]
    assert torch.equal(x0, x1) and torch.equal(x0, x2)
    assert x0.shape == (3, 32, 32) and y0.tolist() == [0, 0, 1, 0, 0, 0, 1] and i0 == 2
    a.set_epoch(1)
    assert not torch.equal(a[2][0], x0)  # another epoch, another crop
    a.set_epoch(0)
    assert torch.equal(a[2][0], x0)
    c = ClassificationSet(tiny_ds, t, seed=6)
    assert not torch.equal(c[2][0], x0)


def test_segmentation_set_pseudo_masks_and_workers_do_not_change_batches(tiny_ds):
    from wsss.data.palette import load_mask

    pseudo = SegmentationSet(tiny_ds, segmentation_transform(32, train=True),
                             mask_fn=lambda i: load_mask(tiny_ds.image_dir.parent / "pseudo" / f"{i}.png", 8), seed=1)
    img, m, idx = pseudo[3]
    assert img.shape == (3, 32, 32) and m.dtype == torch.int64 and idx == 3
    assert set(m.unique().tolist()) <= {2, 255}
    gt = SegmentationSet(tiny_ds, segmentation_transform(32, train=True), seed=1)
    gt.set_epoch(2)

    def batches(workers: int) -> list[torch.Tensor]:
        dl = DataLoader(gt, batch_size=2, shuffle=False, num_workers=workers)
        return [torch.cat([x.flatten(), y.flatten().float()]) for x, y, _ in dl]

    for u, v in zip(batches(0), batches(2)):
        assert torch.equal(u, v)
    assert set(gt[0][1].unique().tolist()) <= {0, 3, 7, 255}


def test_inference_set_collates_lists_of_original_images(tiny_ds):
    ds = InferenceSet(tiny_ds)
    images, idx = next(iter(DataLoader(ds, batch_size=3, collate_fn=InferenceSet.collate)))
    assert idx == [0, 1, 2] and [im.shape for im in images] == [(40, 56, 3), (46, 52, 3), (52, 48, 3)]
    assert images[1].dtype == np.uint8
    np.testing.assert_array_equal(images[2], rand_image(52, 48, 2)[..., ::-1])  # written BGR by cv2, read RGB
