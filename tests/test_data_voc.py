"""VOC-layout reader and tools/prepare_voc.py on tiny roots written by the tests."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.data.build import build_dataset
from wsss.data.classes import VOC_CLASSES
from wsss.data.palette import save_mask
from wsss.data.voc import labels_from_mask, load_voc, read_split_file
from wsss.errors import InputError, WSSSError

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_image(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return img


def make_voc(root: Path) -> dict[str, np.ndarray]:
    """3 ids: a (cat + person + 255 border), b (background only), c (dog); train = a, b; val = c."""
    masks = {}
    a = np.zeros((12, 16), np.uint8)
    a[2:6, 2:6] = 8     # cat
    a[6:10, 8:14] = 15  # person
    a[0, :] = 255       # boundary
    b = np.zeros((12, 16), np.uint8)
    b[5, 5] = 255
    c = np.zeros((12, 16), np.uint8)
    c[3:9, 3:9] = 12    # dog
    for k, (i, m) in enumerate({"2007_000001": a, "2007_000002": b, "2007_000003": c}.items()):
        write_image(root / "JPEGImages" / f"{i}.jpg", seed=k)
        save_mask(root / "SegmentationClass" / f"{i}.png", m)
        masks[i] = m
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000001\n2007_000002\n\n")
    (sets / "val.txt").write_text("2007_000003\n")
    return masks


def test_labels_from_mask_ignores_background_and_ignore():
    m = np.array([[0, 255, 3], [3, 20, 0]], np.uint8)
    assert labels_from_mask(m) == [3, 20]
    assert labels_from_mask(np.zeros((4, 4), np.uint8)) == []
    assert labels_from_mask(np.full((2, 2), 255, np.uint8)) == []


def test_load_voc_derives_labels_from_masks(tmp_path, caplog):
    masks = make_voc(tmp_path)
    with caplog.at_level(logging.INFO, logger="wsss.data.voc"):
        ds = load_voc(tmp_path, "train")
    assert "prepare_voc" in caplog.text
    assert ds.ids == ["2007_000001", "2007_000002"]
    assert ds.class_names == list(VOC_CLASSES) and ds.num_classes == 21
    assert ds.labels == {"2007_000001": [8, 15], "2007_000002": []}
    v = ds.label_vector("2007_000001")
    assert v.shape == (20,) and v[7] == 1 and v[14] == 1 and v.sum() == 2
    assert ds.image("2007_000001").shape == (12, 16, 3)
    np.testing.assert_array_equal(ds.mask("2007_000001"), masks["2007_000001"])
    assert load_voc(tmp_path, "val").labels == {"2007_000003": [12]}


def test_load_voc_prefers_labels_json_and_classes_txt(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "classes.txt").write_text("background\n" + "\n".join(f"k{i}" for i in range(1, 21)) + "\n")
    labels = {"2007_000001": [3], "2007_000002": [1, 2], "2007_000003": [20]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    ds = load_voc(tmp_path, "train")
    assert ds.labels == {"2007_000001": [3], "2007_000002": [1, 2]}  # from the file, not the masks
    assert ds.class_names[:3] == ["background", "k1", "k2"]


def test_labels_json_missing_id_or_bad_index_names_the_file(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"2007_000001": [8]}))
    with pytest.raises(InputError, match=r"labels\.json.*2007_000002"):
        load_voc(tmp_path, "train")
    (tmp_path / "labels.json").write_text(json.dumps({"2007_000001": [8], "2007_000002": [21]}))
    with pytest.raises(InputError, match=r"labels\.json.*outside 1\.\.20"):
        load_voc(tmp_path, "train")


def test_missing_split_file_names_it(tmp_path):
    make_voc(tmp_path)
    with pytest.raises(InputError, match=r"ImageSets/Segmentation/trainval\.txt"):
        load_voc(tmp_path, "trainval")


def test_split_listing_missing_image_names_split_file_and_id(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000099\n")
    with pytest.raises(InputError) as e:
        load_voc(tmp_path, "train")
    msg = str(e.value)
    assert "2007_000099" in msg and "train.txt" in msg and "\n" not in msg


def test_mask_label_out_of_range_names_the_mask(tmp_path):
    make_voc(tmp_path)
    bad = np.zeros((12, 16), np.uint8)
    bad[1, 1] = 30
    save_mask(tmp_path / "SegmentationClass/2007_000002.png", bad)
    with pytest.raises(InputError, match=r"2007_000002\.png.*\[30\]"):
        load_voc(tmp_path, "train")


def test_corrupt_jpeg_names_the_file(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "JPEGImages/2007_000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = load_voc(tmp_path, "val")
    with pytest.raises(InputError, match=r"2007_000003\.jpg.*corrupt"):
        ds.image("2007_000003")


def test_partly_missing_masks_is_an_error_but_no_masks_is_a_test_split(tmp_path):
    make_voc(tmp_path)
    write_image(tmp_path / "JPEGImages/2008_000001.jpg")
    write_image(tmp_path / "JPEGImages/2008_000002.jpg")
    (tmp_path / "ImageSets/Segmentation/test.txt").write_text("2008_000001\n2008_000002\n")
    ds = load_voc(tmp_path, "test")
    assert ds.mask_dir is None and ds.labels == {"2008_000001": [], "2008_000002": []}
    (tmp_path / "ImageSets/Segmentation/mixed.txt").write_text("2007_000001\n2008_000001\n")
    with pytest.raises(InputError, match=r"2008_000001\.png.*mixed\.txt"):
        load_voc(tmp_path, "mixed")


def test_train_aug_reads_sbd_masks_and_deeplab_list_format(tmp_path):
    make_voc(tmp_path)
    write_image(tmp_path / "JPEGImages/2008_000005.jpg")
    aug = np.zeros((12, 16), np.uint8)
    aug[4:8, 4:8] = 7  # car, only in the SBD mask
    save_mask(tmp_path / "SegmentationClassAug/2008_000005.png", aug)
    official_in_aug = np.zeros((12, 16), np.uint8)
    official_in_aug[1:3, 1:3] = 1  # SBD disagrees with VOC on 2007_000003: VOC's own mask wins for labels
    save_mask(tmp_path / "SegmentationClassAug/2007_000003.png", official_in_aug)
    (tmp_path / "ImageSets/SegmentationAug").mkdir(parents=True)
    (tmp_path / "ImageSets/SegmentationAug/train_aug.txt").write_text(
        "/JPEGImages/2008_000005.jpg /SegmentationClassAug/2008_000005.png\n"
        "/JPEGImages/2007_000003.jpg /SegmentationClassAug/2007_000003.png\n")
    ds = load_voc(tmp_path, "train_aug")
    assert ds.ids == ["2008_000005", "2007_000003"]
    assert ds.mask_dir.name == "SegmentationClassAug"
    assert ds.labels == {"2008_000005": [7], "2007_000003": [12]}
    np.testing.assert_array_equal(ds.mask("2008_000005"), aug)


def test_duplicate_id_in_split_file(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a\nb\na\n")
    with pytest.raises(InputError, match=r"'a' listed twice \(lines 1 and 3\)"):
        read_split_file(p)


def test_prepare_voc_writes_checked_labels_json(tmp_path, capsys):
    make_voc(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"other_id": [4]}))  # kept: not in the requested splits
    tool = load_tool("prepare_voc")
    assert tool.main(["--root", str(tmp_path)]) == 0
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert labels == {"2007_000001": [8, 15], "2007_000002": [], "2007_000003": [12], "other_id": [4]}
    out = capsys.readouterr().out
    assert "train: 2 images, 1 without foreground" in out and "cat 1" in out and "val: 1 images" in out
    assert load_voc(tmp_path, "train").labels["2007_000001"] == [8, 15]


def test_prepare_voc_reports_bad_mask_as_one_line(tmp_path, capsys):
    make_voc(tmp_path)
    bad = np.full((12, 16), 40, np.uint8)
    save_mask(tmp_path / "SegmentationClass/2007_000003.png", bad)
    assert load_tool("prepare_voc").main(["--root", str(tmp_path), "--splits", "val"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error: " in line]  # tqdm also writes there
    assert len(err) == 1 and "2007_000003.png: mask has labels [40]" in err[0]
    assert not (tmp_path / "labels.json").exists()


def test_build_dataset_voc_resolves_relative_root(tmp_path, monkeypatch):
    make_voc(tmp_path / "VOC2012")
    monkeypatch.chdir(tmp_path)
    ds = build_dataset({"type": "voc", "root": "VOC2012", "train_split": "train"}, "val")
    assert ds.name == "voc" and ds.split == "val" and ds.ids == ["2007_000003"]
    assert ds.image_dir == tmp_path / "VOC2012" / "JPEGImages"
    with pytest.raises(WSSSError, match="unknown data type 'nope'"):
        build_dataset({"type": "nope"}, "train")
    with pytest.raises(WSSSError, match="needs 'root'"):
        build_dataset({"type": "voc"}, "train")
