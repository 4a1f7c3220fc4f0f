"""COCO instances -> VOC-layout root (tools/prepare_coco.py) on a tiny COCO JSON written by the test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from wsss.data.build import build_dataset
from wsss.data.classes import COCO_CATEGORY_IDS, COCO_CLASSES, COCO_ID_TO_INDEX
from wsss.data.palette import load_mask
from wsss.data.voc import load_voc
from wsss.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PERSON, CAR, DOG, TOOTHBRUSH = 1, 3, 18, 90  # COCO category ids


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(tmp: Path, name: str = "instances_train2014.json", prefix: str = "COCO_train2014_") -> tuple[Path, Path]:
    """Image 1 (20x30): person rect, dog rect inside it (listed first), crowd car as uncompressed RLE over
    columns 16..26; image 2 (16x16): toothbrush as compressed RLE over rows 4..9, cols 3..8; image 3: nothing."""
    images = tmp / "images"
    images.mkdir(parents=True, exist_ok=True)
    sizes = {1: (20, 30), 2: (16, 16), 3: (10, 12)}
    infos = []
    for k, (h, w) in sizes.items():
        fn = f"{prefix}{k:012d}.jpg"
        cv2.imwrite(str(images / fn), np.full((h, w, 3), 40 * k, np.uint8))
        infos.append({"id": k, "file_name": fn, "height": h, "width": w})
    crowd_counts = [20 * 16, 20 * 11, 20 * 3]  # column-major runs: cols 0-15 off, 16-26 on, 27-29 off
    tb = np.zeros((16, 16), np.uint8, order="F")
    tb[4:10, 3:9] = 1
    tb_rle = mask_utils.encode(np.asfortranarray(tb))
    tb_rle["counts"] = tb_rle["counts"].decode("ascii")
    anns = [
        {"id": 10, "image_id": 1, "category_id": DOG, "iscrowd": 0, "segmentation": rect(10, 6, 16, 12), "area": 36},
        {"id": 11, "image_id": 1, "category_id": PERSON, "iscrowd": 0, "segmentation": rect(2, 2, 20, 16), "area": 252},
        {"id": 12, "image_id": 1, "category_id": CAR, "iscrowd": 1, "area": 220,
         "segmentation": {"counts": crowd_counts, "size": [20, 30]}},
        {"id": 13, "image_id": 2, "category_id": TOOTHBRUSH, "iscrowd": 0, "segmentation": tb_rle, "area": 36},
    ]
    cats = [{"id": cid, "name": COCO_CLASSES[COCO_ID_TO_INDEX[cid]], "supercategory": "x"} for cid in COCO_CATEGORY_IDS]
    path = tmp / name
    path.write_text(json.dumps({"images": infos, "annotations": anns, "categories": cats}))
    return path, images


def test_coco_class_tables():
    assert len(COCO_CLASSES) == 81 and COCO_CLASSES[0] == "background"
    assert len(COCO_ID_TO_INDEX) == 80 and sorted(COCO_ID_TO_INDEX.values()) == list(range(1, 81))
    assert COCO_ID_TO_INDEX[1] == 1 and COCO_ID_TO_INDEX[13] == 12 and COCO_ID_TO_INDEX[90] == 80
    assert COCO_CLASSES[COCO_ID_TO_INDEX[DOG]] == "dog" and COCO_CLASSES[80] == "toothbrush"
    assert 12 not in COCO_ID_TO_INDEX and 83 not in COCO_ID_TO_INDEX


def test_prepare_coco_masks_by_hand(tmp_path, capsys):
    instances, images = write_coco(tmp_path)
    out = tmp_path / "coco_wsss"
    tool = load_tool("prepare_coco")
    argv = ["--instances", str(instances), "--images", str(images), "--out", str(out), "--split", "train"]
    assert tool.main(argv) == 0
    assert "train: 2 of 3 images" in capsys.readouterr().out

    m1 = load_mask(out / "SegmentationClass/COCO_train2014_000000000001.png", 81)
    dog, person = COCO_ID_TO_INDEX[DOG], COCO_ID_TO_INDEX[PERSON]
    assert (dog, person) == (17, 1)
    assert m1[0, 0] == 0 and m1[18, 5] == 0            # outside everything
    assert m1[4, 4] == person and m1[14, 18] == person  # person only (also over the crowd columns 16..19)
    assert (m1[7:11, 11:15] == dog).all()               # smaller dog painted over the larger person
    assert (m1[:, 22:27] == 255).all()                  # crowd-only columns are ignore
    assert (m1[:, 27:] == 0).all()
    assert m1[1, 17] == 255 and m1[10, 17] == person    # crowd above the person, person inside it
    m2 = load_mask(out / "SegmentationClass/COCO_train2014_000000000002.png", 81)
    expected = np.zeros((16, 16), np.uint8)
    expected[4:10, 3:9] = 80
    np.testing.assert_array_equal(m2, expected)        # RLE decodes exactly
    assert (out / "SegmentationClass/COCO_train2014_000000000003.png").is_file()  # written, left out of the split

    assert (out / "ImageSets/Segmentation/train.txt").read_text().split() == [
        "COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    assert (out / "classes.txt").read_text().splitlines() == list(COCO_CLASSES)
    link = out / "JPEGImages/COCO_train2014_000000000001.jpg"
    assert link.is_file() and link.read_bytes() == (images / "COCO_train2014_000000000001.jpg").read_bytes()
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {"COCO_train2014_000000000001": [1, 17], "COCO_train2014_000000000002": [80]}

    ds = load_voc(out, "train")
    assert ds.num_classes == 81 and ds.class_names[17] == "dog"
    assert ds.labels["COCO_train2014_000000000001"] == [1, 17]
    assert ds.image("COCO_train2014_000000000002").shape == (16, 16, 3)
    assert build_dataset({"type": "coco", "root": str(out)}, "train").name == "coco"


def test_prepare_coco_second_split_merges_labels_and_keep_empty(tmp_path):
    instances, images = write_coco(tmp_path)
    val_json, val_images = write_coco(tmp_path / "v", "instances_val2014.json", "COCO_val2014_")
    out = tmp_path / "coco_wsss"
    tool = load_tool("prepare_coco")
    train_argv = ["--instances", str(instances), "--images", str(images), "--out", str(out), "--split", "train"]
    assert tool.main(train_argv) == 0
    assert tool.main(["--instances", str(val_json), "--images", str(val_images), "--out", str(out), "--split", "val",
                      "--keep-empty"]) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels) == 5 and labels["COCO_val2014_000000000003"] == []
    assert len(load_voc(out, "train")) == 2 and len(load_voc(out, "val")) == 3
    # re-running reuses the existing masks (resume) and gives the same files
    before = (out / "SegmentationClass/COCO_train2014_000000000001.png").read_bytes()
    assert tool.main(train_argv) == 0
    assert (out / "SegmentationClass/COCO_train2014_000000000001.png").read_bytes() == before


def test_prepare_coco_missing_image_is_one_line(tmp_path, capsys):
    instances, images = write_coco(tmp_path)
    (images / "COCO_train2014_000000000002.jpg").unlink()
    tool = load_tool("prepare_coco")
    assert tool.main(["--instances", str(instances), "--images", str(images), "--out", str(tmp_path / "o"),
                      "--split", "train"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error: " in line]
    assert len(err) == 1 and "COCO_train2014_000000000002.jpg" in err[0] and "not found" in err[0]


def test_existing_root_with_other_classes_is_refused(tmp_path):
    from wsss.data.coco import check_classes_file

    (tmp_path / "classes.txt").write_text("background\ncat\n")
    with pytest.raises(InputError, match="classes.txt"):
        check_classes_file(tmp_path)
