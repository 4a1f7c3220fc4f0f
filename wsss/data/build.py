"""One entry point from a config's ``data`` section to a SegDataset.

Config shapes (extra keys such as ``train_split`` or ``crop_size`` are ignored here)::

    dict(type='voc', root='data/VOCdevkit/VOC2012')             # classes.txt if present, else VOC names
    dict(type='coco', root='data/coco2014_wsss')                     # root written by tools/prepare_coco.py
    dict(type='synthetic', root='data/synthetic')                # root written by tools/make_synthetic.py
    dict(type='folder', image_dir=..., labels_csv=..., classes=[...] or 'classes.txt',
         mask_dir=None, split_files=dict(train=..., val=...))   # no split_files: every CSV row in every split

Relative paths resolve against the current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from wsss.data.base import SegDataset
from wsss.data.folder import load_folder
from wsss.data.voc import load_voc
from wsss.errors import WSSSError

VOC_LAYOUT_TYPES = ("voc", "coco", "synthetic")
DATASET_TYPES = VOC_LAYOUT_TYPES + ("folder",)


def _path(value: Any) -> Path:
    return Path(str(value)).expanduser().absolute()


def _require(data_cfg: Mapping[str, Any], key: str) -> Any:
    if data_cfg.get(key) in (None, ""):
        raise WSSSError(f"data config of type '{data_cfg.get('type')}' needs '{key}'")
    return data_cfg[key]


def build_dataset(data_cfg: Mapping[str, Any], split: str) -> SegDataset:
    """The ``split`` of the dataset described by ``data_cfg`` (see the module doc for the accepted shapes)."""
    kind = str(data_cfg.get("type", "")).lower()
    if kind in VOC_LAYOUT_TYPES:
        class_names = data_cfg.get("class_names")
        return load_voc(_path(_require(data_cfg, "root")), split,
                        class_names=list(class_names) if class_names else None, name=kind)
    if kind == "folder":
        classes = _require(data_cfg, "classes")
        if isinstance(classes, (str, Path)):
            classes = _path(classes)
        else:
            classes = [str(c) for c in classes]
        split_files = data_cfg.get("split_files") or {}
        split_file = None
        if split_files:
            if split not in split_files:
                raise WSSSError(f"folder data config has split_files for {sorted(split_files)}, not '{split}'")
            split_file = _path(split_files[split])
        mask_dir = data_cfg.get("mask_dir")
        return load_folder(_path(_require(data_cfg, "image_dir")), _path(_require(data_cfg, "labels_csv")), classes,
                           mask_dir=_path(mask_dir) if mask_dir else None, split_file=split_file,
                           name=str(data_cfg.get("name", "folder")), split=split)
    raise WSSSError(f"unknown data type '{data_cfg.get('type')}'; expected one of {', '.join(DATASET_TYPES)}")
