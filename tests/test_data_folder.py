"""Custom folder + labels CSV reader, its errors, build_dataset('folder'), and the real coco128-voc photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.data.build import build_dataset
from wsss.data.classes import VOC_CLASSES, read_class_names
from wsss.data.folder import load_folder, read_labels_csv
from wsss.data.palette import save_mask
from wsss.data.voc import labels_from_mask
from wsss.errors import InputError, WSSSError

CLASSES = ["cat", "dog", "traffic light"]


def _shared() -> Path | None:
    for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (p / "data" / "coco128-voc" / "labels.csv").is_file():
            return p / "data" / "coco128-voc"
    return None


def make_folder(tmp: Path, csv_text: str, ids=("a", "b", "c")) -> tuple[Path, Path]:
    images = tmp / "images"
    images.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(ids):
        cv2.imwrite(str(images / f"{i}.{'png' if k % 2 else 'jpg'}"), np.full((8, 10, 3), 30 * k, np.uint8))
    csv = tmp / "labels.csv"
    csv.write_text(csv_text)
    return images, csv


def test_csv_with_header_empty_labels_and_spaces(tmp_path):
    images, csv = make_folder(tmp_path, "image_id,labels\na,dog;cat\nb,\nc, traffic light ; dog\n")
    ds = load_folder(images, csv, CLASSES)
    assert ds.class_names == ["background", "cat", "dog", "traffic light"]
    assert ds.ids == ["a", "b", "c"]
    assert ds.labels == {"a": [1, 2], "b": [], "c": [2, 3]}
    assert ds.mask_dir is None and ds.mask("a") is None
    assert ds.image("b").shape == (8, 10, 3)  # .png found as well as .jpg
    np.testing.assert_array_equal(ds.label_vector("c"), [0, 1, 1])


def test_csv_without_header_and_classes_file(tmp_path):
    images, csv = make_folder(tmp_path, "a,cat\nb\nc,dog\n")
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\ntraffic light\n")  # background left out: added
    ds = load_folder(images, csv, classes)
    assert ds.labels == {"a": [1], "b": [], "c": [2]}
    classes.write_text("background\ncat\ndog\n")
    assert load_folder(images, csv, classes).class_names == ["background", "cat", "dog"]
    classes.write_text("cat\nbackground\n")
    with pytest.raises(InputError, match="classes.txt.*'background' must be the first class"):
        read_class_names(classes)


def test_unknown_class_names_csv_line_and_name(tmp_path):
    images, csv = make_folder(tmp_path, "image_id,labels\na,cat\nb,dgo\nc,\n")
    with pytest.raises(InputError) as e:
        load_folder(images, csv, CLASSES)
    msg = str(e.value)
    assert str(csv) in msg and "line 3" in msg and "'dgo'" in msg and "\n" not in msg


def test_csv_format_errors(tmp_path):
    _, csv = make_folder(tmp_path, "a,cat,dog\n")
    with pytest.raises(InputError, match=r"line 1: expected 'image_id,labels'"):
        read_labels_csv(csv, ["background"] + CLASSES)
    csv.write_text("a,cat\na,dog\n")
    with pytest.raises(InputError, match=r"line 2: id 'a' already listed on line 1"):
        read_labels_csv(csv, ["background"] + CLASSES)
    csv.write_text("a,background\n")
    with pytest.raises(InputError, match="background"):
        read_labels_csv(csv, ["background"] + CLASSES)


def test_missing_image_names_the_file_and_csv(tmp_path):
    images, csv = make_folder(tmp_path, "a,cat\nb,\nzz,dog\n")
    with pytest.raises(InputError) as e:
        load_folder(images, csv, CLASSES)
    assert "zz.jpg" in str(e.value) and "labels.csv" in str(e.value)


def test_split_file_and_masks(tmp_path):
    images, csv = make_folder(tmp_path, "a,cat\nb,\nc,dog\n")
    masks = tmp_path / "masks"
    m = np.zeros((8, 10), np.uint8)
    m[2:5, 2:5] = 2
    save_mask(masks / "c.png", m)
    save_mask(masks / "a.png", np.ones((8, 10), np.uint8))
    split = tmp_path / "val.txt"
    split.write_text("c\na\n")
    ds = load_folder(images, csv, CLASSES, mask_dir=masks, split_file=split)
    assert ds.ids == ["c", "a"] and ds.split == "val"
    np.testing.assert_array_equal(ds.mask("c"), m)
    split.write_text("c\nb\n")  # b has no mask
    with pytest.raises(InputError, match=r"b\.png.*val\.txt"):
        load_folder(images, csv, CLASSES, mask_dir=masks, split_file=split)
    split.write_text("c\nnope\n")
    with pytest.raises(InputError, match=r"val\.txt.*'nope' has no row"):
        load_folder(images, csv, CLASSES, split_file=split)


def test_build_dataset_folder_relative_paths_and_split_files(tmp_path, monkeypatch):
    images, csv = make_folder(tmp_path, "a,cat\nb,\nc,dog\n")
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("c\n")
    monkeypatch.chdir(tmp_path)
    cfg = dict(type="folder", image_dir="images", labels_csv="labels.csv", classes=CLASSES, mask_dir=None,
               split_files=dict(train="train.txt", val="val.txt"))
    assert build_dataset(cfg, "train").ids == ["a", "b"]
    val = build_dataset(cfg, "val")
    assert val.ids == ["c"] and val.split == "val" and val.labels == {"c": [2]}
    with pytest.raises(WSSSError, match="not 'test'"):
        build_dataset(cfg, "test")
    everything = build_dataset({**cfg, "split_files": None}, "train")
    assert everything.ids == ["a", "b", "c"] and everything.split == "train"


@pytest.mark.skipif(_shared() is None, reason="shared coco128-voc data not present")
def test_coco128_voc_real_photos(tmp_path):
    root = _shared()
    ids = ["coco_train2017_000000000030", "coco_train2017_000000000036", "coco_train2017_000000000049",
           "coco_train2017_000000000071", "coco_train2017_000000000074"]
    split = tmp_path / "five.txt"
    split.write_text("\n".join(ids) + "\n")
    ds = load_folder(root / "JPEGImages", root / "labels.csv", list(VOC_CLASSES[1:]),
                     mask_dir=root / "SegmentationClass", split_file=split, name="coco128-voc")
    assert ds.num_classes == 21 and ds.ids == ids
    expected = [VOC_CLASSES.index(c) for c in ("horse", "person", "pottedplant")]
    assert ds.labels["coco_train2017_000000000049"] == expected
    for i in ids:
        img, mask = ds.image(i), ds.mask(i)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[:2] == mask.shape
        assert img.shape[0] > 100 and img.std() > 10  # a real photo, decoded
        assert labels_from_mask(mask) == ds.labels[i]  # CSV agrees with the masks it was derived from
