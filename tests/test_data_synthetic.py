"""Synthetic dataset: determinism, layout, exact masks, co-occurrence bias, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.data import synthetic as S
from wsss.data.build import build_dataset
from wsss.data.voc import labels_from_mask, load_voc

REPO = Path(__file__).resolve().parents[1]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_dataset(tmp_path):
    a = S.generate_synthetic(tmp_path / "a", 8, 4, seed=3, size=64)
    S.generate_synthetic(tmp_path / "b", 8, 4, seed=3, size=64)
    ta, tb = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(ta) == 2 * 12 + 5 and ta == tb
    S.generate_synthetic(tmp_path / "c", 8, 4, seed=4, size=64)
    tc = tree_bytes(tmp_path / "c")
    assert ta["JPEGImages/train_00000.png"] != tc["JPEGImages/train_00000.png"]
    # the first images of a split do not depend on how many are requested
    S.generate_synthetic(tmp_path / "d", 3, 1, seed=3, size=64)
    assert tree_bytes(tmp_path / "d")["SegmentationClass/train_00002.png"] == ta["SegmentationClass/train_00002.png"]
    assert a["train"]["images"] == 8 and a["val"]["images"] == 4


def test_layout_reads_back_through_load_voc(tmp_path):
    root = tmp_path / "syn"
    S.generate_synthetic(root, 10, 5, seed=0, size=64, num_classes=7, image_format="jpg")
    ds = load_voc(root, "train")
    assert ds.class_names == ["background", "disc", "square", "triangle", "star", "ring", "cross", "crescent"]
    assert ds.ids == [f"train_{i:05d}" for i in range(10)]
    for i in ds.ids:
        img, mask = ds.image(i), ds.mask(i)
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= set(range(8)) and 1 <= len(ds.labels[i]) <= 3
        assert ds.labels[i] == labels_from_mask(mask)
    assert ds.image_path("train_00000").suffix == ".jpg"
    val = build_dataset({"type": "synthetic", "root": str(root)}, "val")
    assert len(val) == 5 and val.name == "synthetic"
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["params"]["seed"] == 0 and set(meta["backgrounds"].values()) <= set(S.BACKGROUNDS)


def test_regenerating_replaces_only_an_earlier_synthetic_dataset(tmp_path):
    S.generate_synthetic(tmp_path / "syn", 6, 2, seed=0, size=48)
    S.generate_synthetic(tmp_path / "syn", 2, 1, seed=0, size=48)
    assert len(list((tmp_path / "syn/JPEGImages").iterdir())) == 3  # stale files of the larger run are gone
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        S.generate_synthetic(tmp_path / "other", 2, 1, seed=0)


def test_mask_is_what_was_painted_on_top(monkeypatch):
    """Flat colours per class on a flat background, no photometric noise: away from edges every pixel shows
    exactly the colour of its mask label, including where a later object occludes an earlier one."""
    drawn: list[str] = []

    def flat_texture(style, rng, size):
        drawn.append(style.name)
        return np.full((size, size, 3), 30.0 * (S.CLASS_STYLES.index(style) + 1), np.float32)

    monkeypatch.setattr(S, "render_texture", flat_texture)
    monkeypatch.setattr(S, "render_background", lambda kind, rng, size: np.full((size, size, 3), 5.0, np.float32))
    checked = multi = 0
    for i in range(60):
        drawn.clear()
        img, mask, _ = S.render_sample(np.random.default_rng(i), 64, distractor_prob=0.0, photometric=False)
        if len(set(drawn)) < len(drawn):
            continue  # two instances of one class touching: their seam is not an interior of the class mask
        checked += 1
        multi += len(drawn) > 1
        names = [st.name for st in S.CLASS_STYLES]
        assert labels_from_mask(mask) == sorted(names.index(n) + 1 for n in drawn)  # none hidden entirely
        for c in np.unique(mask):
            inner = cv2.erode((mask == c).astype(np.uint8), np.ones((5, 5), np.uint8),
                              borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
            expected = 5 if c == 0 else 30 * int(c)
            assert np.abs(img[inner].astype(int) - expected).max() <= 2, (i, int(c))
    assert checked >= 20 and multi >= 5


def test_sample_layout_bias():
    rng = np.random.default_rng(0)
    own = total = 0
    for _ in range(3000):
        kind, classes = S.sample_layout(rng, 6, 0.8)
        assert 1 <= len(classes) <= 3
        own += sum(S.CLASS_STYLES[c].background == kind for c in classes)
        total += len(classes)
    assert abs(own / total - 0.8) < 0.03  # one owner per background: each object on its own kind w.p. bias
    for _ in range(200):
        kind, classes = S.sample_layout(rng, 6, 1.0)
        assert all(S.CLASS_STYLES[c].background == kind for c in classes)
        kind, classes = S.sample_layout(rng, 6, 0.0)
        assert not any(S.CLASS_STYLES[c].background == kind for c in classes)


def test_classes_differ_in_shape_texture_and_background():
    styles = S.CLASS_STYLES
    assert len(styles) >= 6 and len({s.name for s in styles}) == len(styles)
    assert len({(s.texture, s.color_a) for s in styles}) == len(styles)
    assert len({s.background for s in styles[:6]}) == 6 and set(S.BACKGROUNDS) >= {s.background for s in styles}
    for kind in S.BACKGROUNDS:
        bg = S.render_background(kind, np.random.default_rng(0), 64)
        assert bg.shape == (64, 64, 3) and bg.std() > 3  # textured, not flat


def test_bad_parameters():
    with pytest.raises(ValueError, match="num_classes"):
        S.generate_synthetic("/nonexistent/x", 1, 1, 0, num_classes=9)
    with pytest.raises(ValueError, match="bias"):
        S.generate_synthetic("/nonexistent/x", 1, 1, 0, bias=1.5)


def test_make_synthetic_cli_prints_class_counts_and_preview(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tool_make_synthetic", REPO / "tools" / "make_synthetic.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    preview = tmp_path / "preview.png"
    rc = tool.main(["--out", str(tmp_path / "syn"), "--num-train", "16", "--num-val", "2", "--seed", "1",
                    "--size", "64", "--preview", str(preview)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "train: 16 images; images per class: disc" in out and "share on own background" in out
    grid = cv2.imread(str(preview))
    assert grid.shape[1] == 4 * 128 + 3 * 4 and grid.shape[0] > 4 * 64


def test_context_only_split_has_empty_labels_and_each_class_background(tmp_path):
    root = tmp_path / "syn"
    S.generate_synthetic(root, 4, 1, seed=5, size=48, num_ood=8)
    ood = load_voc(root, S.OOD_SPLIT)
    assert ood.ids == [f"ood_{i:05d}" for i in range(8)]
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["params"]["num_ood"] == 8
    for i, image_id in enumerate(ood.ids):
        assert ood.labels[image_id] == [] and not ood.mask(image_id).any()
        assert meta["backgrounds"][image_id] == S.CLASS_STYLES[i % 6].background
    assert [S.context_kind(i, 6) for i in range(6)] == ["grass", "road", "water", "sky", "sand", "brick"]
    # the train split is byte-identical to a dataset generated without context-only images
    S.generate_synthetic(tmp_path / "plain", 4, 1, seed=5, size=48)
    assert {k: v for k, v in tree_bytes(root).items() if "train_" in k} == \
        {k: v for k, v in tree_bytes(tmp_path / "plain").items() if "train_" in k}
    # deterministic, and without effects or distractors the image is exactly the background of that kind
    S.generate_synthetic(tmp_path / "again", 4, 1, seed=5, size=48, num_ood=8)
    assert tree_bytes(tmp_path / "again")["JPEGImages/ood_00003.png"] == tree_bytes(root)["JPEGImages/ood_00003.png"]
    plain = S.render_context(np.random.default_rng(1), "water", 48, distractor_prob=0.0, photometric=False)
    rng = np.random.default_rng(1)
    expected = np.clip(np.rint(S.render_background("water", rng, 48)), 0, 255).astype(np.uint8)
    assert np.array_equal(plain, expected)
