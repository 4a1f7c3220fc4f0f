"""Datasets (VOC layout, COCO conversion, custom folder + CSV, synthetic), transforms and torch wrappers.

Every reader returns a ``SegDataset``; ``build_dataset(cfg.data, split)`` picks the reader from a config.
The torch-dependent modules (``transforms``, ``torch_sets``) are imported explicitly where needed.
"""

from wsss.data.base import SegDataset, find_image
from wsss.data.build import build_dataset
from wsss.data.classes import COCO_CLASSES, COCO_ID_TO_INDEX, VOC_CLASSES, read_class_names
from wsss.data.folder import load_folder, read_labels_csv
from wsss.data.voc import labels_from_mask, load_voc

__all__ = [
    "SegDataset", "find_image", "build_dataset", "COCO_CLASSES", "COCO_ID_TO_INDEX", "VOC_CLASSES",
    "read_class_names", "load_folder", "read_labels_csv", "labels_from_mask", "load_voc",
]
