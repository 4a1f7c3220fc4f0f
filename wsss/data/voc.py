"""Reader for VOC-layout dataset roots (PASCAL VOC 2012, and the COCO / synthetic roots written in that layout).

Layout of ``root`` (e.g. ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg                      images (any extension find_image knows)
    SegmentationClass/<id>.png               palette/grey masks, 0 = background, 255 = ignore
    SegmentationClassAug/<id>.png            optional SBD masks, used by splits whose name contains 'aug'
    ImageSets/Segmentation/<split>.txt       one id per line
    ImageSets/SegmentationAug/<split>.txt    optional, also searched (train_aug.txt usually lives here)
    classes.txt                              optional class names, one per line, background first
    labels.json                              optional {image_id: [fg class indices]} cache (tools/prepare_voc.py)

Image-level labels come from ``labels.json`` when present, else from the masks (slow on 10k images: the
cache exists so training does not decode every mask at start-up).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from wsss.data.base import SegDataset, find_image
from wsss.data.classes import VOC_CLASSES, normalize_class_names, read_class_names
from wsss.data.palette import IGNORE_INDEX, load_mask
from wsss.errors import InputError

log = logging.getLogger(__name__)

IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
AUG_MASK_DIR = "SegmentationClassAug"
SPLIT_DIRS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug")
CLASSES_FILE = "classes.txt"
LABELS_FILE = "labels.json"


def labels_from_mask(mask: np.ndarray) -> list[int]:
    """Foreground classes present in a [H, W] integer mask: sorted, without 0 (background) and 255 (ignore)."""
    present = np.flatnonzero(np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256))
    return [int(c) for c in present if c != 0 and c != IGNORE_INDEX]


def find_split_file(root: str | Path, split: str) -> Path:
    """``ImageSets/Segmentation/<split>.txt`` or ``ImageSets/SegmentationAug/<split>.txt`` (first found)."""
    root = Path(root)
    candidates = [root / d / f"{split}.txt" for d in SPLIT_DIRS]
    for p in candidates:
        if p.is_file():
            return p
    hint = ""
    if "aug" in split.lower():
        hint = f"; make it from SBD with tools/prepare_sbd.py --root {root} --sbd SBD/dataset"
    raise InputError(candidates[0], f"split file for split '{split}' not found (also looked in "
                                    f"{candidates[1].parent}){hint}")


def read_split_file(path: str | Path) -> list[str]:
    """Ids listed in a split file, in file order.

    Accepts plain ``<id>`` lines and the DeepLab list format ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``
    (first token, folder and extension stripped). Blank lines are skipped; a duplicated id is an error.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"unreadable split file ({type(e).__name__}: {e})") from e
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        tok = line.strip().split()
        if not tok:
            continue
        image_id = tok[0].replace("\\", "/").rsplit("/", 1)[-1]
        if "." in image_id and "/" in tok[0]:
            image_id = image_id.rsplit(".", 1)[0]
        if image_id in first_line:
            raise InputError(path, f"id '{image_id}' listed twice (lines {first_line[image_id]} and {n})")
        first_line[image_id] = n
        ids.append(image_id)
    if not ids:
        raise InputError(path, "split file lists no ids")
    return ids


def split_mask_dir(root: str | Path, split: str) -> Path:
    """Mask folder a split reads: SegmentationClassAug for '*aug*' splits, SegmentationClass otherwise."""
    return Path(root) / (AUG_MASK_DIR if "aug" in split.lower() else MASK_DIR)


def voc_class_names(root: str | Path) -> list[str]:
    """``<root>/classes.txt`` when present, else the 21 VOC names."""
    p = Path(root) / CLASSES_FILE
    return read_class_names(p) if p.is_file() else list(VOC_CLASSES)


def label_mask_path(root: str | Path, image_id: str, mask_dir: Path) -> Path:
    """Mask to derive an id's image-level labels from: the official SegmentationClass mask when the id has
    one (VOC's own annotation beats SBD's for the 1,464 ids in both), else the split's mask folder."""
    official = Path(root) / MASK_DIR / f"{image_id}.png"
    return official if official.is_file() else mask_dir / f"{image_id}.png"


def derive_labels(root: str | Path, ids: Sequence[str], mask_dir: Path, num_classes: int,
                  progress: Callable[[Iterable[str]], Iterable[str]] | None = None) -> dict[str, list[int]]:
    """{id: fg classes present in its mask} for ``ids``; masks are checked against ``num_classes``.

    ``progress`` wraps the id iterable (tools pass ``tqdm``); the library itself draws no progress bar.
    """
    it = progress(ids) if progress is not None else ids
    return {i: labels_from_mask(load_mask(label_mask_path(root, i, mask_dir), num_classes)) for i in it}


def read_labels_json(path: str | Path, num_classes: int) -> dict[str, list[int]]:
    """Read a labels.json ({id: [fg class indices]}) and check every index is in 1..num_classes-1."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"unreadable labels file ({type(e).__name__}: {e})") from e
    if not isinstance(raw, dict):
        raise InputError(path, "labels file must hold a JSON object {image_id: [class indices]}")
    out: dict[str, list[int]] = {}
    for image_id, labels in raw.items():
        if not isinstance(labels, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in labels):
            raise InputError(path, f"labels of '{image_id}' must be a list of class indices, got {labels!r}")
        bad = [c for c in labels if not 1 <= c < num_classes]
        if bad:
            raise InputError(path, f"labels of '{image_id}' have indices {bad} outside 1..{num_classes - 1}")
        out[str(image_id)] = sorted(set(labels))
    return out


def _resolve_masks(root: Path, split: str, split_file: Path, ids: Sequence[str]) -> Path | None:
    """The split's mask folder, None when the split has no masks at all (e.g. VOC 'test')."""
    mask_dir = split_mask_dir(root, split)
    if not mask_dir.is_dir():
        if mask_dir.name == AUG_MASK_DIR:
            raise InputError(mask_dir, f"split '{split}' needs the SBD masks folder {AUG_MASK_DIR}, which is missing; "
                                       f"make it with tools/prepare_sbd.py --root {root} --sbd SBD/dataset")
        return None
    missing = [i for i in ids if not (mask_dir / f"{i}.png").is_file()]
    if len(missing) == len(ids):
        log.info("split '%s' of %s has no masks in %s; evaluation on it is unavailable", split, root, mask_dir)
        return None
    if missing:
        where = ""
        if mask_dir.name == AUG_MASK_DIR:  # e.g. mmsegmentation's trainaug.txt: SBD masks only
            in_voc = [i for i in missing if (root / MASK_DIR / f"{i}.png").is_file()]
            where = (f"; {len(in_voc)} of them are VOC images whose masks are in {MASK_DIR} (mmsegmentation's "
                     f"converter writes SBD masks only), {len(missing) - len(in_voc)} need SBD's cls/*.mat: "
                     f"tools/prepare_sbd.py --root {root} [--sbd SBD/dataset] completes {AUG_MASK_DIR}")
        raise InputError(mask_dir / f"{missing[0]}.png",
                         f"mask for id '{missing[0]}' (listed in {split_file}) not found; {len(missing)} of "
                         f"{len(ids)} ids of split '{split}' lack masks (first: {', '.join(missing[:3])}){where}")
    return mask_dir


def load_voc(root: str | Path, split: str, class_names: Sequence[str] | None = None,
             name: str = "voc") -> SegDataset:
    """Read one split of a VOC-layout root into a SegDataset.

    Checks, each failing with a one-line InputError naming the file: the split file exists; every id it lists
    has an image; masks exist for all ids or for none; labels.json is well formed, covers the split and stays
    in the class range; masks read to derive labels hold only 0..C-1 and 255.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root not found")
    names = normalize_class_names(class_names) if class_names is not None else voc_class_names(root)
    split_file = find_split_file(root, split)
    ids = read_split_file(split_file)
    image_dir = root / IMAGE_DIR
    image_paths = {i: find_image(image_dir, i, source=split_file) for i in ids}
    mask_dir = _resolve_masks(root, split, split_file, ids)

    labels_path = root / LABELS_FILE
    if labels_path.is_file():
        cached = read_labels_json(labels_path, len(names))
        missing = [i for i in ids if i not in cached]
        if missing:
            raise InputError(labels_path, f"no labels for id '{missing[0]}' of split '{split}' ({len(missing)} ids "
                                          f"missing); re-run tools/prepare_voc.py --root {root} --splits {split}")
        labels = {i: cached[i] for i in ids}
    elif mask_dir is not None:
        log.info("%s: no %s, deriving image-level labels from %d masks (tools/prepare_voc.py caches this)",
                 root, LABELS_FILE, len(ids))
        labels = derive_labels(root, ids, mask_dir, len(names))
    else:
        log.warning("%s: split '%s' has neither %s nor masks; image-level labels are empty", root, split, LABELS_FILE)
        labels = {i: [] for i in ids}
    return SegDataset(name=name, split=split, ids=ids, class_names=names, image_dir=image_dir, labels=labels,
                      mask_dir=mask_dir, image_paths=image_paths)
