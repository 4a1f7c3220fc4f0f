"""Real photos: 5 COCO images of ../shared/data/coco128-voc through the folder reader and the whole chain.

The configs under test are the real ones (configs/real/coco128_lite0.py: EfficientNet-Lite0 with the offline
ImageNet weights), shrunk to a tiny schedule; nothing is asserted about quality (5 photos and 2 iterations
learn nothing), only what must hold for any run: ids and labels as in the CSV, CAMs at the photo's size with
the labelled classes only and values in [0, 1], pseudo masks holding only background, the labelled classes
and 255.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.cam.io import load_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.palette import IGNORE_INDEX, load_mask
from wsss.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "coco128-voc"
CONFIG = REPO / "configs" / "real" / "coco128_lite0.py"
# Four labelled photos of different sizes and classes, and one with no VOC class (background only).
IDS = ["coco_train2017_000000000049", "coco_train2017_000000000074", "coco_train2017_000000000030",
       "coco_train2017_000000000036", "coco_train2017_000000000009"]

pytestmark = pytest.mark.skipif(not (DATA / "labels.csv").is_file(),
                                reason=f"real-photo data not found at {DATA}")


def csv_labels() -> dict[str, list[str]]:
    """The labels CSV read independently of wsss: {id: [class names]}."""
    with open(DATA / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_id", "labels"]
    return {r[0]: [n for n in r[1].split(";") if n] for r in rows[1:]}


def tiny_config(tmp_path: Path):
    """The real config on a 5-id split file with a tiny schedule (call with the repo root as working directory:
    the config names the data relative to it, as CI sees it)."""
    split = tmp_path / "five.txt"
    split.write_text("\n".join(IDS) + "\n")
    tiny = {
        "data.split_files": {"all": str(split)},
        "data.val_split": None,
        "train_cls.iters": 2, "train_cls.batch_size": 2, "train_cls.crop_size": 64, "train_cls.num_workers": 0,
        "train_cls.ckpt_interval": 2, "train_cls.log_interval": 1,
        "cam.scales": [0.25], "cam.batch_size": 2, "cam.num_workers": 0,
        "train_aff.iters": 2, "train_aff.batch_size": 2, "train_aff.crop_size": 64, "train_aff.num_workers": 0,
        "train_aff.ckpt_interval": 2, "train_aff.log_interval": 1,
        "propagate.t": 16, "propagate.scales": [0.25], "propagate.flip": False,
        "propagate.par": dict(dilations=[1, 2, 4], num_iter=2, w1=0.3, w2=0.01, scale=0.25),
        "pseudo.num_workers": 1, "pseudo.crf.n_iter": 2,
    }
    return load_config(CONFIG, tiny, tmp_path / "work")


@pytest.fixture()
def five_photo_cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    return tiny_config(tmp_path)


def test_reader_loads_five_photos_with_csv_labels(five_photo_cfg):
    ds = build_dataset(five_photo_cfg.data, "all")
    truth = csv_labels()
    assert ds.ids == IDS
    assert ds.class_names[0] == "background" and len(ds.class_names) == 21
    for i in IDS:
        expected = np.zeros(20, np.float32)
        for name in truth[i]:
            expected[ds.class_names.index(name) - 1] = 1
        np.testing.assert_array_equal(ds.label_vector(i), expected)
        image, mask = ds.image(i), ds.mask(i)
        with Image.open(DATA / "JPEGImages" / f"{i}.jpg") as im:
            assert image.shape == (im.size[1], im.size[0], 3) and image.dtype == np.uint8
        assert mask.shape == image.shape[:2]
        # The CSV is derived from the masks: the mask's foreground classes are exactly the labels.
        assert sorted(set(np.unique(mask).tolist()) - {0}) == ds.labels[i]
    assert ds.labels[IDS[-1]] == [] and not ds.label_vector(IDS[-1]).any()


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("quality_real", REPO / "benchmarks" / "quality_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pipeline_runs_end_to_end_on_five_photos(five_photo_cfg, one_thread, tmp_path):
    cfg = five_photo_cfg
    results = run_pipeline(cfg)
    assert [r.status for r in results] == ["ran"] * len(cfg.pipeline)
    ds = build_dataset(cfg.data, "all")
    work = Path(cfg.work_dir)
    for stage in ("make_cam", "propagate_par", "propagate"):
        for i in IDS:
            keys, cams = load_cam(work / stage / "cams" / f"{i}.npz")
            h, w = ds.image(i).shape[:2]
            assert keys.tolist() == ds.labels[i], (stage, i)
            assert cams.shape == (len(ds.labels[i]), h, w), (stage, i)
            assert np.isfinite(cams).all() and cams.min(initial=0) >= 0 and cams.max(initial=0) <= 1, (stage, i)
    for i in IDS[:-1]:  # every class map of the seeds is max-normalised
        _, cams = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        np.testing.assert_allclose(cams.reshape(len(cams), -1).max(1), 1.0, atol=1e-3)
    for stage in ("make_pseudo", "make_pseudo_crf"):
        for i in IDS:
            mask = load_mask(work / stage / "masks" / f"{i}.png", ds.num_classes)
            assert mask.shape == ds.mask(i).shape, (stage, i)
            assert set(np.unique(mask).tolist()) <= {0, IGNORE_INDEX, *ds.labels[i]}, (stage, i)
    # Every stage scored itself against the masks: mIoU is a proportion.
    for stage in ("make_cam", "propagate_par", "propagate", "make_pseudo", "make_pseudo_crf"):
        m = json.loads((work / stage / "metrics.json").read_text())
        assert 0.0 <= m["miou"] <= 1.0, stage
    # The benchmark's report and picture work on these artifacts: header + separator + 3 CAM rows + 2 mask
    # rows + 3 baseline rows (no mAP row: this config has no val split); 4 labelled photos -> 4 grid rows of
    # 150 px cells (+16 px label, 4 px gap) under a 22 px title bar.
    bench = _benchmark_module()
    table = bench.protocol_table({"tiny": dict(main=work, baselines=bench.label_baselines(ds))})
    assert len(table.splitlines()) == 2 + 3 + 2 + 3
    assert "baseline, no model: first label, centred ellipse" in table
    with Image.open(bench.example_figure(cfg, tmp_path / "grid.png", num=8, cell=150)) as im:
        assert im.size == (4 * 150 + 3 * 4, 22 + 4 * (150 + 16 + 4))
