"""Pseudo masks: the ignore band and background modes on hand-made CAMs, the stage end to end, resume after kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, subprocess_env
from wsss.artifacts import TMP_MARK, StageDir, read_manifest
from wsss.cam.io import save_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.palette import IGNORE_INDEX, load_mask
from wsss.data.synthetic import generate_synthetic
from wsss.errors import WSSSError
from wsss.refine.pseudo import (PseudoParams, background_score, combine_ignore_band, make_pseudo_mask,
                                restrict_to_labels, scores_to_probs)

# ------------------------------------------------------------------------------------------------------------
# Pure decision rules on hand-made CAMs (keys 2 and 5 of a 6-class problem; one pixel per column).

KEYS = np.array([2, 5])
#                    a     b     c     d     e     f     g
CAM_2 = np.array([0.90, 0.20, 0.01, 0.40, 0.31, 0.05, 0.00], np.float32)
CAM_5 = np.array([0.10, 0.25, 0.04, 0.60, 0.00, 0.05, 0.29], np.float32)
CAMS = np.stack([CAM_2, CAM_5])[:, None, :]  # [2, 1, 7]


def test_ignore_band_matches_hand_computed_labels():
    # conf_fg=0.30: fg decision = best class if its CAM beats 0.30 (ties -> background), else background.
    # conf_bg=0.05: bg decision = background only where every CAM is <= 0.05.
    # a: 0.90 -> class 2.  b: 0.25 < 0.30 but > 0.05 -> disagreement -> 255.  c: max 0.04 -> background.
    # d: 0.60 -> class 5.  e: 0.31 -> class 2.  f: max 0.05 ties conf_bg -> background.  g: 0.29 -> 255.
    expected = np.array([[2, IGNORE_INDEX, 0, 5, 2, 0, IGNORE_INDEX]], np.uint8)
    got = make_pseudo_mask(KEYS, CAMS, PseudoParams(conf_fg=0.30, conf_bg=0.05))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_combine_ignore_band_keeps_fg_decision_and_ignores_disagreement():
    fg = np.array([[0, 0, 3, 3]], np.uint8)
    bg = np.array([[0, 4, 0, 4]], np.uint8)
    np.testing.assert_array_equal(combine_ignore_band(fg, bg), [[0, IGNORE_INDEX, 3, 3]])


def test_single_threshold_and_power_modes():
    # Threshold 0.35: a -> 2, b (0.25) -> 0, d -> 5, e (0.31) -> 0, g -> 0.
    thr = make_pseudo_mask(KEYS, CAMS, PseudoParams(bg_threshold=0.35, conf_fg=None, conf_bg=None))
    np.testing.assert_array_equal(thr, [[2, 0, 0, 5, 0, 0, 0]])
    # Power 2: background = (1 - max)^2. a: 0.01 < 0.9 -> 2; b: 0.5625 > 0.25 -> 0; d: 0.16 < 0.6 -> 5;
    # e: 0.4761 > 0.31 -> 0; g: 0.5041 > 0.29 -> 0; c, f -> 0.
    pw = make_pseudo_mask(KEYS, CAMS, PseudoParams(bg_power=2.0, conf_fg=None, conf_bg=None))
    np.testing.assert_array_equal(pw, [[2, 0, 0, 5, 0, 0, 0]])
    np.testing.assert_allclose(background_score(CAMS, power=2.0)[0], (1 - np.maximum(CAM_2, CAM_5)) ** 2,
                               rtol=1e-6)


def test_min_confidence_ignores_uncertain_winners():
    # Threshold 0.2. Probabilities = scores / sum: a 0.9/1.2 = 0.75; d 0.6/1.2 = 0.5; c bg 0.2/0.25 = 0.8;
    # b: class 5 wins with 0.25/0.65 = 0.385. With min_confidence 0.6: a, c stay; b, d -> 255.
    p = PseudoParams(bg_threshold=0.2, conf_fg=None, conf_bg=None, min_confidence=0.6)
    got = make_pseudo_mask(KEYS, CAMS, p)
    assert got[0, 0] == 2 and got[0, 2] == 0
    assert got[0, 1] == IGNORE_INDEX and got[0, 3] == IGNORE_INDEX


def test_scores_to_probs_normalises_and_keeps_argmax():
    bg = background_score(CAMS, threshold=0.3)
    probs = scores_to_probs(CAMS, bg)
    assert probs.shape == (3, 1, 7)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
    raw = np.concatenate([bg[None], CAMS])
    np.testing.assert_array_equal(probs.argmax(0)[0, [0, 3, 4]], raw.argmax(0)[0, [0, 3, 4]])


def test_only_labelled_classes_survive():
    keys = np.array([1, 3, 4])
    cams = np.stack([np.full((4, 4), 0.2), np.full((4, 4), 0.9), np.full((4, 4), 0.5)]).astype(np.float32)
    k2, c2 = restrict_to_labels(keys, cams, [1, 4])
    np.testing.assert_array_equal(k2, [1, 4])
    mask = make_pseudo_mask(k2, c2, PseudoParams())
    assert set(np.unique(mask)) == {4}  # class 3 had the strongest CAM but is not labelled


@pytest.mark.parametrize("section, needle", [
    (dict(conf_fg=0.3, conf_bg=0.05, bg_threshold=0.2), "exactly one background mode"),
    (dict(conf_fg=None, conf_bg=None), "exactly one background mode"),
    (dict(conf_fg=0.05, conf_bg=0.3), "must be above"),
    (dict(conf_fg=0.3, conf_bg=None), "both conf_fg and conf_bg"),
    (dict(conf_fg=0.3, conf_bg=0.05, min_confidence=0.9), "min_confidence"),
    (dict(conf_fg=0.3, conf_bg=0.05, use_crf=True, crf=dict(n_iters=5)), "unknown CRF parameter"),
])
def test_inconsistent_pseudo_config_is_a_one_line_error(section, needle):
    with pytest.raises(WSSSError, match=needle):
        PseudoParams.from_config(section)


def test_direct_construction_is_validated_too():
    with pytest.raises(WSSSError, match="exactly one background mode"):
        PseudoParams(bg_threshold=0.3)  # the IRN band is on by default: a threshold must switch it off
    assert PseudoParams(bg_threshold=0.3, conf_fg=None, conf_bg=None).band is False


# ------------------------------------------------------------------------------------------------------------
# The stage, on a tiny synthetic dataset with CAMs made from its masks.

def blurred_cams(mask: np.ndarray, keys: list[int], sigma: float) -> np.ndarray:
    """[K, H, W] float32 in [0, 1]: each labelled class's mask, Gaussian-blurred and max-normalised."""
    if not keys:
        return np.zeros((0,) + mask.shape, np.float32)
    cams = np.stack([cv2.GaussianBlur((mask == k).astype(np.float32), (0, 0), sigma) for k in keys])
    return cams / np.maximum(cams.max(axis=(1, 2), keepdims=True), 1e-6)


def make_cam_workdir(root: Path, work: Path, ids: list[str], labels: dict, masks, extra_key: int | None = None,
                     sigma: float = 2.0) -> None:
    """A complete 'make_cam' stage folder whose CAMs are blurred ground truth (plus an unlabelled class)."""
    sd = StageDir(work, "make_cam", "handmade")
    sd.begin()
    for i in ids:
        m = masks(i)
        keys = list(labels[i])
        cams = blurred_cams(m, keys, sigma)
        if extra_key is not None:  # a strong CAM of a class the image is NOT labelled with
            keys.append(extra_key)
            cams = np.concatenate([cams, np.full((1,) + m.shape, 0.95, np.float32)])
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams)
    sd.finish(items=len(ids))


def write_config(path: Path, data_root: Path, work: Path, **pseudo) -> Path:
    pseudo.setdefault("input", "make_cam")
    items = ", ".join(f"{k}={v!r}" for k, v in pseudo.items())
    path.write_text(
        f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, {str(REPO / 'configs/_base_/pseudo.py')!r}]\n"
        f"data = dict(type='synthetic', root={str(data_root)!r}, train_split='train', val_split='val', "
        f"cam_split='train')\n"
        f"work_dir = {str(work)!r}\n"
        f"pseudo = dict({items})\n")
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, num_train=8, num_val=0, seed=3, size=64)
    return root


def test_make_pseudo_stage_end_to_end(tiny_data, tmp_path):
    from stages import make_pseudo

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "cfg.py", tiny_data, work, num_workers=1))
    ds = build_dataset(cfg.data, "train")
    extra = ds.num_classes - 1
    make_cam_workdir(tiny_data, work, ds.ids, ds.labels, ds.mask, extra_key=extra)
    manifest = make_pseudo.run(cfg)
    assert manifest["status"] == "complete" and manifest["items"] == len(ds.ids)
    for i in ds.ids:
        m = load_mask(work / "make_pseudo" / "masks" / f"{i}.png", ds.num_classes)
        assert m.shape == ds.mask(i).shape
        allowed = {0, IGNORE_INDEX} | set(ds.labels[i])
        assert set(np.unique(m).tolist()) <= allowed, (i, np.unique(m), ds.labels[i])
    # The manifest's figures are the confusion-matrix mIoU of the written masks, recomputed here with numpy.
    metrics = manifest["metrics"]
    n = ds.num_classes
    inter, union_excl, union_wrong = np.zeros(n), np.zeros(n), np.zeros(n)
    ignored = total = 0
    for i in ds.ids:
        m = load_mask(work / "make_pseudo" / "masks" / f"{i}.png")
        gt = ds.mask(i)
        valid = gt != IGNORE_INDEX
        decided = valid & (m != IGNORE_INDEX)
        for c in range(n):
            inter[c] += np.sum(decided & (m == c) & (gt == c))
            union_excl[c] += np.sum(decided & ((m == c) | (gt == c)))
            union_wrong[c] += np.sum(valid & ((m == c) | (gt == c)))
        ignored += int(np.sum(m == IGNORE_INDEX))
        total += m.size
    present = union_excl > 0
    assert metrics["miou"] == pytest.approx(np.mean(inter[present] / union_excl[present]), abs=1e-6)
    present = union_wrong > 0
    assert metrics["miou_ignore_as_wrong"] == pytest.approx(np.mean(inter[present] / union_wrong[present]), abs=1e-6)
    assert metrics["ignored_share"] == pytest.approx(ignored / total, abs=1e-6)
    assert 0.0 < metrics["ignored_share"] < 0.5 and metrics["miou_ignore_as_wrong"] < metrics["miou"]
    assert (work / "make_pseudo" / "metrics.json").is_file()

    # Same config with another worker count: a no-op, not a 'different run'.
    cfg2 = load_config(write_config(tmp_path / "cfg2.py", tiny_data, work, num_workers=2))
    again = make_pseudo.run(cfg2)
    assert again["finished"] == manifest["finished"]


def test_make_pseudo_pool_and_crf_match_serial(tiny_data, tmp_path):
    """A 2-process pool writes the same masks as the serial loop, with and without CRF."""
    from stages import make_pseudo

    outs = {}
    for workers in (1, 2):
        work = tmp_path / f"w{workers}"
        cfg = load_config(write_config(tmp_path / f"c{workers}.py", tiny_data, work, num_workers=workers,
                                       use_crf=True))
        ds = build_dataset(cfg.data, "train")
        make_cam_workdir(tiny_data, work, ds.ids, ds.labels, ds.mask)
        make_pseudo.run(cfg)
        outs[workers] = {i: load_mask(work / "make_pseudo" / "masks" / f"{i}.png") for i in ds.ids}
    for i in outs[1]:
        np.testing.assert_array_equal(outs[1][i], outs[2][i])


def test_missing_cam_file_is_a_one_line_error(tiny_data, tmp_path):
    from stages import make_pseudo

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "cfg.py", tiny_data, work, num_workers=2))
    ds = build_dataset(cfg.data, "train")
    make_cam_workdir(tiny_data, work, ds.ids, ds.labels, ds.mask)
    (work / "make_cam" / "cams" / f"{ds.ids[3]}.npz").unlink()
    with pytest.raises(WSSSError, match=f"{ds.ids[3]}.npz: CAM file not found"):
        make_pseudo.run(cfg)


def test_make_pseudo_resumes_after_kill(tmp_path):
    from stages import make_pseudo

    data = tmp_path / "syn"
    generate_synthetic(data, num_train=24, num_val=0, seed=5, size=80)
    runs = {}
    for name in ("killed", "clean"):
        work = tmp_path / name
        cfg_path = write_config(tmp_path / f"{name}.py", data, work, num_workers=1, use_crf=True)
        cfg = load_config(cfg_path)
        ds = build_dataset(cfg.data, "train")
        make_cam_workdir(data, work, ds.ids, ds.labels, ds.mask)
        runs[name] = (work, cfg_path, cfg)

    work, cfg_path, cfg = runs["killed"]
    masks = work / "make_pseudo" / "masks"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "make_pseudo.py"), str(cfg_path)],
                            env=subprocess_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if masks.is_dir() and len(list(masks.glob("*.png"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(masks.glob("*.png"))
    assert 3 <= len(done) < len(ds.ids)
    for p in done:  # every file that exists is a complete mask
        load_mask(p)
    assert read_manifest(work / "make_pseudo")["status"] == "running"

    cfg.pseudo.num_workers = 2  # resume with another worker count: same artifacts, not a 'different run'
    make_pseudo.run(cfg)  # resumes: only the missing masks are made
    assert not [p for p in masks.parent.rglob(f"*{TMP_MARK}*")], "temp files left behind"
    clean_work, _, clean_cfg = runs["clean"]
    clean_cfg.pseudo.num_workers = 2
    make_pseudo.run(clean_cfg)
    for i in ds.ids:
        a = (masks / f"{i}.png").read_bytes()
        b = (clean_work / "make_pseudo" / "masks" / f"{i}.png").read_bytes()
        assert a == b, i


def test_visualize_masks_grid(tiny_data, tmp_path):
    """tools/visualize.py masks: one row per image, the panels are the image, CAM, mask and GT."""
    import argparse
    import importlib.util

    from PIL import Image

    from stages import make_pseudo
    from wsss.data.palette import colorize

    spec = importlib.util.spec_from_file_location("vis_masks", REPO / "tools" / "_visualize_masks.py")
    vis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis)

    work = tmp_path / "work"
    cfg_path = write_config(tmp_path / "cfg.py", tiny_data, work, num_workers=1)
    cfg = load_config(cfg_path)
    ds = build_dataset(cfg.data, "train")
    make_cam_workdir(tiny_data, work, ds.ids, ds.labels, ds.mask)
    make_pseudo.run(cfg)
    parser = argparse.ArgumentParser()
    vis.add_masks_parser(parser.add_subparsers())
    out = tmp_path / "grid.png"
    args = parser.parse_args(["masks", str(cfg_path), "--num", "3", "--cell", "64", "--out", str(out)])
    assert args.func(args) == 0
    grid = np.array(Image.open(out).convert("RGB"))
    title_h, label_h, gap, cell = 22, 16, 4, 64
    body = title_h + 3 * (cell + label_h + gap)
    assert grid.shape[0] > body and grid.shape[1:] == (4 * (cell + gap) - gap, 3)
    # Below the panels: a colour legend with a swatch for every label shown in the masks.
    legend = grid[body:].reshape(-1, 3)
    shown = set()
    for i in ds.ids[:3]:
        pseudo = load_mask(work / "make_pseudo" / "masks" / f"{i}.png")
        shown |= set(np.unique(ds.mask(i)).tolist()) | set(np.unique(pseudo).tolist())
    from wsss.data.palette import voc_colormap
    for label in shown:
        assert (legend == voc_colormap()[label]).all(axis=1).any(), label
    # Panel (row 1, column 3) is the ground truth of the second image in VOC colours (64x64 -> no resize).
    y = title_h + 1 * (cell + label_h + gap)
    def panel(col: int) -> np.ndarray:
        return grid[y:y + cell, col * (cell + gap):col * (cell + gap) + cell]

    np.testing.assert_array_equal(panel(3), colorize(ds.mask(ds.ids[1])))
    np.testing.assert_array_equal(panel(2), colorize(load_mask(work / "make_pseudo" / "masks" / f"{ds.ids[1]}.png")))
    np.testing.assert_array_equal(panel(0), ds.image(ds.ids[1]))
