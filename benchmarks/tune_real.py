"""Choose the small-data stage-1 settings on a tune split of the training photos (never on the held-out photos).

    python benchmarks/tune_real.py [--work-root work_dirs/tune_real] [--threads 1] [--variants "a;b;..."]

The tune split is ``configs/real/coco128_splits/tune_{train,val}.txt`` (72 / 24 of the 96 training photos, made by
``tools/make_real_splits.py --ids .../train.txt --size 24 --names tune_train,tune_val``). Each variant is
``configs/real/coco128_small.py`` with the overrides of ``START`` (the first guess) and its own, trained on
tune_train and scored on tune_val: classifier mAP and seed-CAM mIoU at ``cam.bg_threshold`` with the ORACLE
threshold (swept on ground truth) beside it. Only
train_cls and make_cam run. Variants with the same backbone and augmentation share the cached features (copied
into each work dir before its train_cls runs), so a variant costs seconds after the first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from wsss.config import load_config

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the sibling benchmarks of this checkout
    sys.path.insert(0, str(ROOT))
CONFIG = "configs/real/coco128_small.py"
SPLITS = "configs/real/coco128_splits"
TUNE = {
    "data.split_files.tune_train": f"{SPLITS}/tune_train.txt",
    "data.split_files.tune_val": f"{SPLITS}/tune_val.txt",
    "data.train_split": "tune_train", "data.val_split": "tune_val", "data.cam_split": "tune_val",
}
# The head made of the mapped ImageNet rows, max-pooled per class (wsss.models.imagenet_head), trainable.
_ROWS = dict(_delete_=True, type="imagenet_mapped", backbone="tf_efficientnet_lite0",
             weights="efficientnet-lite0-package", output_stride=16, reduce="max")
# Where the search started (the first guess, before any tune run): the cam_classifier head initialised from the
# mean of the mapped ImageNet rows, lr 0.01, background threshold 0.15. Variants override this start point.
START = {
    "cls_model": dict(_delete_=True, type="cam_classifier", backbone="tf_efficientnet_lite0", pretrained=False,
                      weights="efficientnet-lite0-package", output_stride=16, freeze_backbone=True, unfreeze_last=0,
                      head_init="imagenet", bias=True),
    "train_cls.lr": 0.01, "cam.bg_threshold": 0.15,
}
# name -> overrides of START ('chosen' is coco128_small.py exactly as committed)
VARIANTS: dict[str, dict] = {
    "chosen": {"_committed": True},
    "start (mean-row init, lr 0.01)": {},
    "loss bce": {"train_cls.loss": "bce"},
    "loss asl": {"train_cls.loss": "asl"},
    "balanced no weight cap": {"train_cls.pos_weight_max": None},
    "head init random": {"cls_model.head_init": None},
    "lr 0.001": {"train_cls.lr": 0.001},
    "iters 100": {"train_cls.iters": 100},
    "iters 1000": {"train_cls.iters": 1000},
    "bg 0.25": {"cam.bg_threshold": 0.25},
    "bg 0.35": {"cam.bg_threshold": 0.35},
    "lr 0.001 + asl": {"train_cls.lr": 0.001, "train_cls.loss": "asl"},
    "lr 0.001 + bce": {"train_cls.lr": 0.001, "train_cls.loss": "bce"},
    "lr 0.0003": {"train_cls.lr": 0.0003},
    "lr 0.001, cam scales 0.5/0.75/1.0": {"train_cls.lr": 0.001, "cam.scales": [0.5, 0.75, 1.0]},
    "lr 0.001, cam scale 1.0": {"train_cls.lr": 0.001, "cam.scales": [1.0]},
    "lr 0.001, bg 0.25": {"train_cls.lr": 0.001, "cam.bg_threshold": 0.25},
    "rows head (max), lr 0.01": {"cls_model": dict(_ROWS), "train_cls.lr": 0.01},
    "rows head (max), lr 0.001": {"cls_model": dict(_ROWS), "train_cls.lr": 0.001},
    "rows head (max), lr 0.0003": {"cls_model": dict(_ROWS), "train_cls.lr": 0.0003},
    "rows head (max), lr 0.001, asl": {"cls_model": dict(_ROWS), "train_cls.lr": 0.001, "train_cls.loss": "asl"},
    "rows head (max), lr 0.001, bce": {"cls_model": dict(_ROWS), "train_cls.lr": 0.001, "train_cls.loss": "bce"},
    "zero-training max": {"cls_model": dict(_ROWS), "train_cls.iters": 0},
    "zero-training mean": {"cls_model": dict(_delete_=True, type="imagenet_mapped", backbone="tf_efficientnet_lite0",
                                              weights="efficientnet-lite0-package", output_stride=16, reduce="mean"),
                            "train_cls.iters": 0},
}
log = logging.getLogger("tune_real")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-root", default="work_dirs/tune_real")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", default=";".join(VARIANTS), help="names separated by ';'")
    args = p.parse_args(argv)
    work_root = Path(args.work_root).absolute()
    os.chdir(ROOT)
    from benchmarks.quality_real import start_run
    from wsss.pipeline import run_pipeline

    start_run(args.threads)
    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    shared_features: Path | None = None
    rows = []
    for n in names:
        wd = work_root / _slug(n)
        variant = dict(VARIANTS[n])
        start = {} if variant.pop("_committed", False) else START
        options = {**TUNE, "pipeline": ["train_cls", "make_cam"], **start, **variant}
        cfg = load_config(str(ROOT / CONFIG), options, str(wd))
        features = wd / "train_cls" / "features"
        if cfg.train_cls.get("cache_views") and shared_features is not None and not features.exists() \
                and not any(k.startswith(("train_cls.crop", "train_cls.scale", "train_cls.color", "train_cls.cache",
                                          "cls_model.backbone")) for k in VARIANTS[n]):
            shutil.copytree(shared_features, features)
        run_pipeline(cfg)
        if cfg.train_cls.get("cache_views") and shared_features is None and features.is_dir():
            shared_features = features
        cls = json.loads((wd / "train_cls" / "metrics.json").read_text())
        cam = json.loads((wd / "make_cam" / "metrics.json").read_text())
        rows.append((n, cls.get("val_map"), cam["miou"], cam["bg_threshold"], cam["oracle"]["miou"],
                     cam["oracle"]["threshold"]))
    print("| variant (tune_train 72 -> tune_val 24) | classifier mAP | seed mIoU (bg thr) | ORACLE (thr) |")
    print("|---|---|---|---|")
    for n, m, s, t, o, ot in rows:
        print(f"| {n} | {100 * (m or 0):.1f} | {100 * s:.1f} ({t:.2f}) | {100 * o:.1f} ({ot:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
