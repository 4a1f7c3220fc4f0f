"""Dense CRF: recovers regions from a blurred unary, clear failure without pydensecrf2, the crf stage."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from conftest import REPO
from wsss.artifacts import StageDir
from wsss.cam.io import load_cam, save_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.errors import WSSSError
from wsss.refine.crf import PRESETS, CRFParams, dense_crf, require_pydensecrf
from wsss.refine.pseudo import background_score, scores_to_probs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def two_region_problem(seed: int = 0, h: int = 48, w: int = 64):
    """Left half dark, right half bright (with pixel noise); the unary is a heavily blurred, noisy, shifted
    version of the true split, so thresholding it gets the boundary and scattered pixels wrong."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), bool)
    truth[:, w // 2:] = True
    image = np.where(truth[..., None], 200, 40).astype(np.float32) + rng.normal(0, 8, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    fg = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 6)
    fg = np.roll(fg, -4, axis=1)  # the CAM's boundary sits 4 px off the true one
    fg = np.clip(fg + rng.normal(0, 0.25, fg.shape), 0.01, 0.99).astype(np.float32)
    probs = np.stack([1 - fg, fg])
    return image, probs, truth


def test_crf_recovers_two_regions_from_blurred_unary():
    image, probs, truth = two_region_problem()
    before = probs.argmax(0) == 1
    refined = dense_crf(image, probs)
    after = refined.argmax(0) == 1
    assert refined.shape == probs.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)
    iou_before = min(iou(before, truth), iou(~before, ~truth))
    iou_after = min(iou(after, truth), iou(~after, ~truth))
    assert iou_after > 0.95, iou_after
    assert iou_after > iou_before + 0.05, (iou_before, iou_after)


def test_crf_without_pairwise_terms_keeps_the_unary_decision():
    """With zero pairwise weights the mean field is the unary's softmax: the argmax cannot change."""
    image, probs, _ = two_region_problem(seed=1)
    flat = CRFParams(gauss_compat=0, bilateral_compat=0)
    refined = dense_crf(image, probs, flat)
    np.testing.assert_array_equal(refined.argmax(0), probs.argmax(0))
    np.testing.assert_allclose(refined, probs, atol=1e-3)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_published_presets_all_fix_the_two_regions(preset):
    image, probs, truth = two_region_problem(seed=2)
    after = dense_crf(image, probs, PRESETS[preset]).argmax(0) == 1
    assert iou(after, truth) > 0.9


def test_single_label_is_returned_unchanged():
    image = np.zeros((5, 6, 3), np.uint8)
    out = dense_crf(image, np.ones((1, 5, 6), np.float32))
    np.testing.assert_array_equal(out, 1.0)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="image must be"):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.full((2, 5, 4), 0.5, np.float32))


def test_crf_params_reject_typos_and_negative_values():
    with pytest.raises(WSSSError, match="unknown CRF parameter"):
        CRFParams.from_config(dict(n_iters=5))
    with pytest.raises(WSSSError, match="bilateral_srgb must be >= 0"):
        CRFParams.from_config(dict(bilateral_srgb=-1))
    assert CRFParams.from_config(dict(n_iter="5")).n_iter == 5


def test_missing_pydensecrf_names_the_install_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # makes the import raise ImportError
    with pytest.raises(WSSSError, match="pip install pydensecrf2"):
        require_pydensecrf()
    image, probs, _ = two_region_problem()
    with pytest.raises(WSSSError, match="pip install pydensecrf2"):
        dense_crf(image, probs)


# ------------------------------------------------------------------------------------------------------------
# The crf stage.

def _setup(tmp_path, n: int = 6, size: int = 64):
    data = tmp_path / "syn"
    generate_synthetic(data, num_train=n, num_val=0, seed=11, size=size)
    work = tmp_path / "work"
    cfg_path = tmp_path / "cfg.py"
    cfg_path.write_text(
        f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, {str(REPO / 'configs/_base_/crf.py')!r}]\n"
        f"data = dict(type='synthetic', root={str(data)!r}, cam_split='train')\n"
        f"work_dir = {str(work)!r}\n"
        "crf = dict(num_workers=2, bg_threshold=0.3)\n")
    cfg = load_config(cfg_path)
    ds = build_dataset(cfg.data, "train")
    sd = StageDir(work, "make_cam", "handmade")
    sd.begin()
    for i in ds.ids:
        m = ds.mask(i)
        keys = ds.labels[i]
        cams = np.stack([cv2.GaussianBlur((m == k).astype(np.float32), (0, 0), 3) for k in keys])
        cams /= cams.max(axis=(1, 2), keepdims=True)
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams)
    sd.finish(items=len(ds.ids))
    return cfg, ds, work


def test_crf_stage_writes_refined_cams_in_cam_format(tmp_path):
    from stages import crf

    cfg, ds, work = _setup(tmp_path)
    manifest = crf.run(cfg)
    assert manifest["status"] == "complete" and manifest["items"] == len(ds.ids)
    for i in ds.ids:
        keys_in, cams_in = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        keys, cams = load_cam(work / "crf" / "cams" / f"{i}.npz")
        np.testing.assert_array_equal(keys, keys_in)
        assert cams.shape == cams_in.shape
        assert cams.sum(0).max() <= 1.0 + 2e-3  # refined probabilities; background = 1 - sum
        # The file holds exactly the CRF posterior of the stage's unary (float16 rounding aside).
        image = ds.image(i)
        expected = dense_crf(image, scores_to_probs(cams_in, background_score(cams_in, threshold=0.3)))[1:]
        np.testing.assert_allclose(cams, expected, atol=1e-3)
    m = manifest["metrics"]
    assert 0.0 < m["miou"] <= 1.0 and m["images"] == len(ds.ids)
    assert (work / "crf" / "metrics.json").is_file()


def test_crf_stage_fails_before_writing_when_pydensecrf_is_missing(tmp_path, monkeypatch):
    from stages import crf

    cfg, _, work = _setup(tmp_path, n=2)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(WSSSError, match="pip install pydensecrf2"):
        crf.run(cfg)
    assert not (work / "crf").exists()


def test_crf_stage_needs_one_background_mode(tmp_path):
    from stages import crf

    cfg, _, _ = _setup(tmp_path, n=2)
    cfg.crf.bg_power = 2.0  # bg_threshold is also set
    with pytest.raises(WSSSError, match="exactly one of crf.bg_threshold and crf.bg_power"):
        crf.run(cfg)


# ------------------------------------------------------------------------------------------------------------
# The unary: IRN's hard-decision 'labels' vs 'softmax'.

def test_labels_unary_matches_unary_from_labels_semantics_on_a_3x3_toy():
    """3 labels on 3x3 pixels: the decided label (argmax) gets -log(0.7), every other one -log(0.3 / 2);
    the softmax unary is -log p. Expected energies written out by hand, pixel by pixel."""
    from wsss.refine.crf import crf_unary

    # argmax per pixel (row-major): 0 1 2 / 2 1 0 / 1 1 0
    winner = np.array([0, 1, 2, 2, 1, 0, 1, 1, 0])
    probs = np.full((3, 9), 0.2, np.float32)
    probs[winner, np.arange(9)] = 0.6
    probs = probs.reshape(3, 3, 3)
    got = crf_unary(probs, CRFParams(unary="labels", gt_prob=0.7))
    on, off = -np.log(0.7), -np.log(0.15)  # 0.3567, 1.8971
    expected = np.array([[on, off, off, off, off, on, off, off, on],
                         [off, on, off, off, on, off, on, on, off],
                         [off, off, on, on, off, off, off, off, off]], np.float32)
    assert got.shape == (3, 9) and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # gt_prob moves both energies; label 0 is a label like any other (zero_unsure=False)
    got5 = crf_unary(probs, CRFParams(unary="labels", gt_prob=0.5))
    np.testing.assert_allclose(got5[0, 0], -np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(got5[1, 0], -np.log(0.25), rtol=1e-6)
    soft = crf_unary(probs, CRFParams(unary="softmax"))
    np.testing.assert_allclose(soft, -np.log(probs.reshape(3, 9)), rtol=1e-6)


def test_unary_settings_are_validated():
    with pytest.raises(WSSSError, match="unary must be one of"):
        CRFParams.from_config(dict(unary="hard"))
    with pytest.raises(WSSSError, match=r"gt_prob must be in \(0, 1\)"):
        CRFParams.from_config(dict(unary="labels", gt_prob=1.0))
    assert CRFParams.from_config({}).unary == "softmax"
    assert CRFParams.from_config({}, default_unary="labels").unary == "labels"
    assert CRFParams.from_config(dict(unary=None), default_unary="labels").unary == "labels"
    assert CRFParams.from_config(dict(unary="softmax"), default_unary="labels").unary == "softmax"
    assert PRESETS["irn"].unary == "labels"
    assert (PRESETS["toco"].bilateral_sxy, PRESETS["toco"].bilateral_srgb, PRESETS["toco"].bilateral_compat) == (36, 3, 4)
    assert (PRESETS["toco_seg"].gauss_sxy, PRESETS["toco_seg"].gauss_compat, PRESETS["toco_seg"].bilateral_sxy,
            PRESETS["toco_seg"].bilateral_srgb) == (1, 1, 121, 5)


def _thin_object_near_threshold():
    """A 20x8 object on a 40x40 picture (30 grey levels brighter), whose CAM is 0.32: just above the 0.30
    background. The softmax unary is then 0.52 vs 0.48 inside the object: too weak against the pairwise terms."""
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 40), bool)
    truth[10:30, 16:24] = True
    image = np.clip(np.where(truth[..., None], 140, 110) + rng.normal(0, 3, (40, 40, 3)), 0, 255).astype(np.uint8)
    cams = np.where(truth, 0.32, 0.02).astype(np.float32)[None]
    return image, cams, truth


def test_softmax_unary_erodes_foreground_near_the_threshold_and_labels_unary_keeps_it():
    from wsss.refine.pseudo import PseudoParams, make_pseudo_mask

    image, cams, truth = _thin_object_near_threshold()
    keys = np.array([3])
    kept = {}
    for unary in ("softmax", "labels"):
        single = PseudoParams(bg_threshold=0.3, conf_fg=None, conf_bg=None, crf=CRFParams(unary=unary))
        mask = make_pseudo_mask(keys, cams, single, image)
        kept[unary] = (int((mask == 3).sum()), int(((mask == 3) & truth).sum()))
        assert np.array_equal(make_pseudo_mask(keys, cams, PseudoParams(bg_threshold=0.3, conf_fg=None,
                                                                        conf_bg=None), None) == 3, truth)
    assert truth.sum() == 160
    assert kept["softmax"] == (0, 0)  # the whole object is eaten by the background
    assert kept["labels"] == (160, 160)  # all of it kept, nothing added
    # the IRN band: from_config picks 'labels' for conf_fg/conf_bg, and the fg decision keeps the object
    band = PseudoParams.from_config(dict(conf_fg=0.3, conf_bg=0.05, use_crf=True, crf={}))
    assert band.crf.unary == "labels"
    mask = make_pseudo_mask(keys, cams, band, image)
    assert int(((mask == 3) & truth).sum()) == 160 and int((mask == 0).sum()) == 1600 - 160
    soft_band = PseudoParams.from_config(dict(conf_fg=0.3, conf_bg=0.05, use_crf=True, crf=dict(unary="softmax")))
    assert int((make_pseudo_mask(keys, cams, soft_band, image) == 3).sum()) == 0
    assert PseudoParams.from_config(dict(conf_fg=None, conf_bg=None, bg_threshold=0.3, use_crf=True)).crf.unary \
        == "softmax"
