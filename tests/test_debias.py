"""Biased-object removal: the counts and the biased-cluster decision on hand-made cluster maps (object + rail),
and the debias stage end to end on images whose colours are the clusters."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.refine.debias import BiasRule, BiasStats, remove_biased

# clusters: 0 = object of class 1, 1 = rail (class 1's context), 2 = object of class 2, 3 = other background
A = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])  # labels {1}: CAM 1 covers object AND rail
B = np.array([[2, 2, 1, 1], [3, 3, 1, 1]])  # labels {2}: CAM 2 on its object; the rail is CAM-free here
C = np.array([[1, 1, 1, 1], [3, 3, 3, 3]])  # no label (context only): all CAM-free
CAM_A = np.ones((1, 2, 4), np.float32)
CAM_B = (B == 2).astype(np.float32)[None]


def stats() -> BiasStats:
    s = BiasStats(num_classes=3, num_clusters=4)
    s.update(A, np.array([1]), CAM_A, 0.5)
    s.update(B, np.array([2]), CAM_B, 0.5)
    s.update(C, np.array([], np.int64), np.zeros((0, 2, 4), np.float32), 0.5)
    return s


def test_measures_equal_the_hand_counts() -> None:
    m = stats().measures()
    # class 1: CAM covers clusters 0, 1 in A (4 + 4 px); without class 1 (B, C): cluster 1 has 8 px, all CAM-free,
    # cluster 3 6 px CAM-free, cluster 2 2 px under CAM 2; densities without: [0, 8, 2, 6] / 16, with: [4, 4] / 8
    assert m["share"][0].tolist() == [0.5, 0.5, 0.0, 0.0]
    assert m["bg_rate"][0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert m["presence"][0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])
    # class 2: CAM covers only cluster 2; without class 2 (A, C): cluster 1 has 8 px of which 4 CAM-free (C)
    assert m["share"][1].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert m["bg_rate"][1].tolist() == [0.0, 0.5, 0.0, 1.0]
    assert m["presence"][1].tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])
    # dataset-wide: cluster 1 has 12 px (A 4 under CAM 1, B 4 and C 4 CAM-free), cluster 3 6 px all CAM-free
    assert m["free_rate"][0].tolist() == pytest.approx([0.0, 8 / 12, 0.0, 1.0])
    assert np.array_equal(m["free_rate"][0], m["free_rate"][1])


def test_a_context_never_seen_without_its_class_is_found_by_the_dataset_wide_test() -> None:
    # full bias: the rail (cluster 1) appears only in images of class 1, so there is no class-absent evidence;
    # class 1's CAM covers the object (cluster 0) and 2 of the rail's 6 px in each image
    s = BiasStats(num_classes=2, num_clusters=2)
    q = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    cam = np.array([[[1, 1, 1, 1], [0, 0, 0, 0]]], np.float32)
    for _ in range(3):
        s.update(q, np.array([1]), cam, 0.5)
    m = s.measures()
    assert m["bg_rate"][0].tolist() == [0.0, 0.0] and m["presence"][0].tolist() == [0.0, 0.0]
    assert m["share"][0].tolist() == [0.5, 0.5]
    assert m["free_rate"][0].tolist() == pytest.approx([0.0, 4 / 6])
    assert s.biased(BiasRule(cam_threshold=0.5))[0].tolist() == [False, True]
    assert s.biased(BiasRule(cam_threshold=0.5, min_free_rate=0.7))[0].tolist() == [False, False]


def test_the_dataset_wide_test_never_takes_the_class_s_largest_cluster() -> None:
    # class 1's CAM lies mostly on cluster 1, a mix of object and surroundings that is CAM-free a bit more often
    # than not (free_rate 4 / 7 >= 0.5); removing it would delete the class, so only cluster 2 goes
    s = BiasStats(num_classes=2, num_clusters=3)
    q = np.array([[1, 1, 1, 1, 1, 1, 1, 2, 2]])
    cam = np.array([[[1, 1, 1, 0, 0, 0, 0, 1, 0]]], np.float32)
    s.update(q, np.array([1]), cam, 0.5)
    m = s.measures()
    assert m["share"][0].tolist() == pytest.approx([0.0, 0.75, 0.25])
    assert m["free_rate"][0].tolist() == pytest.approx([0.0, 4 / 7, 0.5])
    assert s.biased(BiasRule(cam_threshold=0.5))[0].tolist() == [False, False, True]
    assert s.biased(BiasRule(cam_threshold=0.5, keep_top=0))[0].tolist() == [False, True, True]


def test_the_rail_cluster_is_biased_for_its_class_only_and_removed_from_its_cams() -> None:
    biased = stats().biased(BiasRule(cam_threshold=0.5))
    assert biased.tolist() == [[False, True, False, False], [False, False, False, False]]
    out = remove_biased(np.array([1]), CAM_A, A, biased)
    assert out[0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]  # object kept, rail gone
    assert np.array_equal(remove_biased(np.array([2]), CAM_B, B, biased), CAM_B)


def test_an_object_cluster_shared_with_another_class_is_not_background() -> None:
    # class 2's object looks like class 1's (cluster 0 in both): where class 1 is absent, cluster 0 is under CAM 2
    s = BiasStats(num_classes=3, num_clusters=2)
    s.update(np.array([[0, 1]]), np.array([1]), np.ones((1, 1, 2), np.float32), 0.5)
    s.update(np.array([[0, 1]]), np.array([2]), np.array([[[1.0, 0.0]]], np.float32), 0.5)
    assert s.measures()["bg_rate"][0].tolist() == [0.0, 1.0]
    assert s.biased(BiasRule(cam_threshold=0.5))[0].tolist() == [False, True]


def flat_images(root: Path) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """A VOC-layout set of 16x16 images in three flat colours: red object (class 1), blue rail, green object
    (class 2), grey ground; masks = the objects. Returns the cluster-truth maps (0 object1, 1 rail, 2 object2,
    3 ground) and the labels."""
    colours = np.array([[220, 30, 30], [30, 30, 220], [30, 200, 30], [128, 128, 128]], np.uint8)
    layouts = {}
    for k in range(4):  # class 1 on the rail (its CAM will cover the rail too)
        m = np.full((16, 16), 1)
        m[4:10, 2 + k:8 + k] = 0
        layouts[f"a{k}"] = m
    for k in range(4):  # class 2 on ground next to a rail, CAM-free rail
        m = np.full((16, 16), 3)
        m[:, 10:] = 1
        m[5:11, 1 + k:7 + k] = 2
        layouts[f"b{k}"] = m
    for k in range(2):  # rails alone
        m = np.full((16, 16), 1)
        m[:, :4 + 2 * k] = 3
        layouts[f"c{k}"] = m
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    from wsss.data.palette import save_mask

    labels = {}
    for i, m in layouts.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.png"), cv2.cvtColor(colours[m], cv2.COLOR_RGB2BGR))
        gt = np.where(m == 0, 1, np.where(m == 2, 2, 0)).astype(np.uint8)
        save_mask(root / "SegmentationClass" / f"{i}.png", gt)
        labels[i] = sorted({int(v) for v in np.unique(gt)} - {0})
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in layouts))
    (root / "classes.txt").write_text("background\nobj1\nobj2\n")
    (root / "labels.json").write_text(json.dumps(labels))
    return layouts, labels


def test_debias_stage_removes_the_rail_and_keeps_the_object(tmp_path: Path) -> None:
    from stages import debias
    from wsss.artifacts import StageDir
    from wsss.cam.io import load_cam, save_cam
    from wsss.config import load_config

    layouts, labels = flat_images(tmp_path / "data")
    wd = tmp_path / "wd"
    seeds = StageDir(wd, "make_cam", "fake")
    seeds.begin()
    for i, m in layouts.items():  # biased seeds: class 1's CAM covers object + rail; class 2's only its object
        keys = labels[i]
        cams = [np.where(m <= 1, 0.9, 0.0) if c == 1 else np.where(m == 2, 0.9, 0.0) for c in keys]
        save_cam(seeds.path / "cams" / f"{i}.npz", keys, np.array(cams, np.float32).reshape(len(keys), 16, 16))
    seeds.finish(items=len(layouts))
    cfg_path = tmp_path / "c.py"
    cfg_path.write_text(f"work_dir = {str(wd)!r}\nseed = 0\n"
                        f"data = dict(type='voc', root={str(tmp_path / 'data')!r}, cam_split='train')\n"
                        "debias = dict(input='make_cam', backbone='rgb', clusters=4)\n")
    manifest = debias.run(load_config(cfg_path))
    assert manifest["status"] == "complete" and manifest["metrics"]["biased_clusters"] == 1
    for i in ("a0", "a3"):
        keys, cams = load_cam(wd / "debias" / "cams" / f"{i}.npz")
        assert keys.tolist() == [1]
        assert np.all(cams[0][layouts[i] == 0] > 0.89) and np.all(cams[0][layouts[i] == 1] == 0)
    keys, cams = load_cam(wd / "debias" / "cams" / "b1.npz")
    assert np.array_equal(cams[0] > 0.5, layouts["b1"] == 2)  # class 2 untouched
    info = json.loads((wd / "debias" / "clusters.json").read_text())
    assert len(info["biased"]["obj1"]) == 1 and info["biased"]["obj2"] == []
    # seeds are now exact: CAM mIoU 1.0 at the configured threshold
    assert json.loads((wd / "debias" / "metrics.json").read_text())["miou"] == pytest.approx(1.0)


def test_backbone_features_are_unit_vectors_per_pixel_and_cluster_maps_match_the_image() -> None:
    import torch

    from stages.debias import FeatureExtractor, cluster_map

    extract = FeatureExtractor(dict(arch="test_resnet"), scale=1.0)
    feats = extract(np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))
    assert feats.ndim == 3 and feats.shape[1:] == (2, 2)  # test_resnet: stride 32
    assert np.allclose(np.linalg.norm(feats, axis=0), 1.0, atol=1e-5)
    centers = torch.from_numpy(feats.reshape(feats.shape[0], -1).T[:2].copy())
    ids = cluster_map(feats, centers, (64, 48))
    assert ids.shape == (64, 48) and ids[0, 0] == 0 and ids[0, -1] == 1  # pixel (0,0) -> centre 0, (0,1) -> 1
