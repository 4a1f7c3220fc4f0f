"""COCO 2014 instances -> VOC-layout semantic segmentation root (81 classes incl. background).

``tools/prepare_coco.py`` drives ``convert_coco_split``; afterwards ``load_coco`` (= ``load_voc`` with the
root's classes.txt) reads the result like any VOC root.

Rasterisation rules (``semantic_mask``):

* pixels of no annotation are background (0);
* non-crowd instances are painted in order of decreasing pixel area, so where instances overlap the smaller
  one is painted last and wins (a cup on a dining table stays a cup); equal areas: lower annotation id first;
* crowd annotations (``iscrowd=1``) become 255 (ignore), but only where no non-crowd instance is painted:
  a person annotated individually inside a crowd region keeps its label.

Image-level labels are the classes present in the written mask (what the reader would derive), so an instance
fully hidden under smaller ones, or a class present only as a crowd, is not in the labels.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from wsss.data.base import SegDataset
from wsss.data.classes import COCO_CLASSES, COCO_ID_TO_INDEX, read_class_names
from wsss.data.palette import IGNORE_INDEX, load_mask, save_mask
from wsss.data.voc import CLASSES_FILE, IMAGE_DIR, LABELS_FILE, MASK_DIR, labels_from_mask, load_voc, read_labels_json
from wsss.errors import InputError

log = logging.getLogger(__name__)


def semantic_mask(coco: Any, image_info: Mapping[str, Any], anns: Sequence[Mapping[str, Any]],
                  id_to_index: Mapping[int, int] = COCO_ID_TO_INDEX) -> np.ndarray:
    """Rasterise one image's instance annotations into a [H, W] uint8 semantic mask (rules in the module doc).

    ``coco`` is a ``pycocotools.coco.COCO`` (its ``annToMask`` decodes polygons, RLE and uncompressed RLE);
    annotations with a category id missing from ``id_to_index`` are an error.
    """
    h, w = int(image_info["height"]), int(image_info["width"])
    out = np.zeros((h, w), dtype=np.uint8)
    things: list[tuple[int, int, int, np.ndarray]] = []
    crowd = np.zeros((h, w), dtype=bool)
    for ann in anns:
        cid = int(ann["category_id"])
        if cid not in id_to_index:
            raise ValueError(f"annotation {ann.get('id')} of image {image_info.get('id')} has unknown category {cid}")
        with warnings.catch_warnings():  # pycocotools' Cython decode vs numpy 2 copy semantics; harmless
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            m = coco.annToMask(ann).astype(bool)
        if m.shape != (h, w):
            raise ValueError(f"annotation {ann.get('id')} decodes to {m.shape}, image is {(h, w)}")
        if ann.get("iscrowd", 0):
            crowd |= m
        else:
            things.append((-int(m.sum()), int(ann.get("id", 0)), id_to_index[cid], m))
    out[crowd] = IGNORE_INDEX
    for _, _, cls, m in sorted(things, key=lambda t: (t[0], t[1])):  # largest first, smallest painted last
        out[m] = cls
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Symlink ``dst`` -> absolute ``src``; copy when the file system refuses links. Existing ``dst`` is kept."""
    if dst.is_symlink() or dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def image_id_of(image_info: Mapping[str, Any]) -> str:
    """Dataset id of a COCO image: its file name without extension (``COCO_train2014_000000000009``)."""
    return Path(str(image_info["file_name"])).stem


def convert_coco_split(coco: Any, image_dir: str | Path, out_root: str | Path, split: str,
                       keep_empty: bool = False,
                       progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, list[int]]:
    """Write masks, image links and the split list for every image of ``coco`` into ``out_root``.

    Resumable: a mask that already exists (masks are written atomically, so it is complete) is read back
    instead of re-rasterised. Images whose mask has no foreground class are left out of the split unless
    ``keep_empty`` (the usual WSSS COCO lists drop them; their masks are still written).
    Returns {id: [fg classes]} for the ids written to ``ImageSets/Segmentation/<split>.txt``.
    """
    image_dir, out_root = Path(image_dir), Path(out_root)
    mask_dir, jpeg_dir = out_root / MASK_DIR, out_root / IMAGE_DIR
    mask_dir.mkdir(parents=True, exist_ok=True)
    jpeg_dir.mkdir(parents=True, exist_ok=True)
    infos = sorted(coco.dataset.get("images", []), key=lambda d: int(d["id"]))
    if not infos:
        raise ValueError("instances file lists no images")
    it = progress(infos) if progress is not None else infos
    labels: dict[str, list[int]] = {}
    reused = 0
    for info in it:
        image_id = image_id_of(info)
        src = image_dir / str(info["file_name"])
        if not src.is_file():
            raise InputError(src, f"image of COCO image id {info['id']} not found")
        mask_path = mask_dir / f"{image_id}.png"
        if mask_path.is_file():
            mask = load_mask(mask_path, len(COCO_CLASSES))
            reused += 1
        else:
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]], iscrowd=None))
            mask = semantic_mask(coco, info, anns)
            save_mask(mask_path, mask)
        link_or_copy(src, jpeg_dir / f"{image_id}{src.suffix}")
        present = labels_from_mask(mask)
        if present or keep_empty:
            labels[image_id] = present
    if reused:
        log.info("%s: reused %d existing masks of an earlier run", mask_dir, reused)
    return labels


def merge_labels_json(out_root: str | Path, new: Mapping[str, list[int]], num_classes: int) -> dict[str, list[int]]:
    """Existing ``<out_root>/labels.json`` updated with ``new`` (new entries win)."""
    p = Path(out_root) / LABELS_FILE
    merged = read_labels_json(p, num_classes) if p.is_file() else {}
    merged.update({k: list(v) for k, v in new.items()})
    return merged


def check_classes_file(out_root: str | Path, class_names: Sequence[str] = COCO_CLASSES) -> bool:
    """True if ``classes.txt`` must be written; an existing one with other names is an error (no mixing)."""
    p = Path(out_root) / CLASSES_FILE
    if not p.is_file():
        return True
    if read_class_names(p) != list(class_names):
        raise InputError(p, "existing classes file differs from the 81 COCO classes; use another --out root")
    return False


def load_coco(root: str | Path, split: str) -> SegDataset:
    """A converted COCO root (classes from its classes.txt) as a SegDataset named 'coco'."""
    return load_voc(root, split, name="coco")
