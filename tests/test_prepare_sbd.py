"""tools/prepare_sbd.py on a tiny VOC layout with SBD .mat files written in SBD's own structure (scipy savemat)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from wsss.data.palette import load_mask, save_mask
from wsss.data.sbd import read_sbd_mat, train_aug_ids
from wsss.data.voc import load_voc
from wsss.errors import InputError, WSSSError

from test_data_voc import load_tool, write_image

VOC_TRAIN = ["2007_000001", "2007_000002", "2007_000003"]
VOC_VAL = ["2007_000004"]
SBD_TRAIN = ["2007_000002", "2008_000005"]
SBD_VAL = ["2008_000006", "2007_000004"]   # SBD val holds a VOC val image: it must not enter train_aug
EXPECTED = ["2007_000001", "2007_000002", "2007_000003", "2008_000005", "2008_000006"]


def _mask(k: int, h: int = 10, w: int = 14) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[2:6, 1 + k:7 + k] = 1 + (3 * k) % 20
    return m


def write_sbd_mat(path: Path, seg: np.ndarray) -> None:
    """An SBD cls/<id>.mat: struct GTcls with Segmentation, Boundaries (cell per class), CategoriesPresent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)
    for c in range(20):
        boundaries[c, 0] = np.zeros(seg.shape, np.uint8)
    present = np.unique(seg[seg > 0]).astype(np.uint8)
    savemat(str(path), {"GTcls": {"Segmentation": seg, "Boundaries": boundaries, "CategoriesPresent": present}})


def make_layout(tmp: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """VOC root (train/val with SegmentationClass masks carrying a 255 band) and an SBD dataset/ folder."""
    root, sbd = tmp / "VOC2012", tmp / "benchmark_RELEASE" / "dataset"
    all_ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
    masks = {}
    for k, i in enumerate(all_ids):
        write_image(root / "JPEGImages" / f"{i}.jpg", h=10, w=14, seed=k)
        masks[i] = _mask(k)
    for i in VOC_TRAIN + VOC_VAL:
        voc = masks[i].copy()
        voc[0, :] = 255
        save_mask(root / "SegmentationClass" / f"{i}.png", voc)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    for i in SBD_TRAIN + SBD_VAL:
        write_sbd_mat(sbd / "cls" / f"{i}.mat", masks[i])
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return root, sbd, masks


def test_read_sbd_mat_returns_the_segmentation(tmp_path: Path) -> None:
    seg = _mask(3)
    write_sbd_mat(tmp_path / "x.mat", seg)
    out = read_sbd_mat(tmp_path / "x.mat")
    assert out.dtype == np.uint8 and np.array_equal(out, seg)
    savemat(str(tmp_path / "bad.mat"), {"other": np.zeros((2, 2))})
    with pytest.raises(InputError, match="GTcls.Segmentation"):
        read_sbd_mat(tmp_path / "bad.mat")


def test_train_aug_is_voc_train_and_sbd_minus_voc_val() -> None:
    assert train_aug_ids(VOC_TRAIN, VOC_VAL, SBD_TRAIN + SBD_VAL) == EXPECTED


def test_prepare_sbd_converts_fills_lists_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, sbd, masks = make_layout(tmp_path)
    tool = load_tool("prepare_sbd")
    assert tool.main(["--root", str(root), "--sbd", str(sbd), "--expect", str(len(EXPECTED))]) == 0
    out = capsys.readouterr().out
    assert "train_aug: 5 ids" in out and "2 VOC train ids are not in SBD" in out
    aug = root / "SegmentationClassAug"
    for i in SBD_TRAIN + SBD_VAL:  # every SBD mask converted, held-out ones included (harmless, as mmseg)
        assert np.array_equal(load_mask(aug / f"{i}.png"), masks[i])
    for i in ("2007_000001", "2007_000003"):  # VOC-only train ids: the VOC mask, 255 band and all
        assert np.array_equal(load_mask(aug / f"{i}.png"), load_mask(root / "SegmentationClass" / f"{i}.png"))
    listed = (root / "ImageSets/SegmentationAug/train_aug.txt").read_text().split()
    assert listed == EXPECTED
    ds = load_voc(root, "train_aug")
    assert ds.ids == EXPECTED and ds.mask_dir == aug
    labels = json.loads((root / "labels.json").read_text())
    assert labels["2008_000006"] == [int(masks["2008_000006"].max())]
    # a second run resumes: nothing converted again, same list
    assert tool.main(["--root", str(root), "--sbd", str(sbd), "--expect", "5", "--no-labels"]) == 0
    assert "0 SBD masks written" in capsys.readouterr().out


def test_size_check_refuses_an_incomplete_download(tmp_path: Path) -> None:
    root, sbd, _ = make_layout(tmp_path)
    tool = load_tool("prepare_sbd")
    with pytest.raises(WSSSError, match=r"train_aug has 5 ids, expected 10,582.*--expect 5"):
        tool.prepare_sbd(root, sbd)                      # default: the published 10,582
    (sbd / "cls" / "2008_000005.mat").unlink()
    with pytest.raises(InputError, match="1 of 4 SBD ids have no class mask"):
        tool.prepare_sbd(root, sbd, expect=None)


def test_mmseg_layout_names_the_ids_without_masks_and_gets_fixed(tmp_path: Path) -> None:
    """mmsegmentation's voc_aug.py: SBD masks only in SegmentationClassAug, trainaug.txt with all 10,582 ids."""
    root, sbd, masks = make_layout(tmp_path)
    for i in SBD_TRAIN + SBD_VAL:
        save_mask(root / "SegmentationClassAug" / f"{i}.png", masks[i])
    (root / "ImageSets/Segmentation/trainaug.txt").write_text("\n".join(reversed(EXPECTED)) + "\n")
    with pytest.raises(InputError) as e:
        load_voc(root, "trainaug")
    msg = str(e.value)
    assert "2 of 5 ids of split 'trainaug' lack masks" in msg and "2007_000001" in msg
    assert "2 of them are VOC images whose masks are in SegmentationClass" in msg and "prepare_sbd.py" in msg
    tool = load_tool("prepare_sbd")
    summary = tool.prepare_sbd(root, None, expect=5, labels=False)
    assert summary["copied_from_voc"] == ["2007_000001", "2007_000003"]
    assert load_voc(root, "trainaug").ids == list(reversed(EXPECTED))  # mmseg's own list now loads as well
    assert load_voc(root, "train_aug").ids == EXPECTED


def test_sbd_id_without_any_mask_says_where_to_get_it(tmp_path: Path) -> None:
    root, _, _ = make_layout(tmp_path)
    (root / "ImageSets/Segmentation/aug.txt").write_text("2008_000005\n2008_000006\n")  # mmseg aug.txt, no masks
    tool = load_tool("prepare_sbd")
    with pytest.raises(InputError, match=r"2 train_aug ids have a mask neither.*SBD images: pass --sbd"):
        tool.prepare_sbd(root, None, expect=None, labels=False)


def test_prepare_voc_warns_when_train_aug_is_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, _, _ = make_layout(tmp_path)
    tool = load_tool("prepare_voc")
    with caplog.at_level(logging.WARNING):
        summary = tool.prepare_voc(root, None)
    assert set(summary) == {"train", "val"}
    assert "no train_aug" in caplog.text and "prepare_sbd.py" in caplog.text
    with pytest.raises(InputError, match="prepare_sbd.py"):
        load_voc(root, "train_aug")
