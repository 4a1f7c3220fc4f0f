"""Custom data: a folder of images plus a labels CSV (``image_id,labels``), masks optional.

CSV format (UTF-8)::

    image_id,labels                 <- optional header
    img_001,dog;person              <- class names separated by ';'
    img_002,                        <- empty: no foreground class (background only)

Class names must be in ``classes`` (a classes file, one name per line, or a list); 'background' is
prepended when missing. Masks (``<mask_dir>/<id>.png``, 0 = background, 255 = ignore) are only used for
evaluation; the WSSS chain trains from the CSV labels alone.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from wsss.data.base import SegDataset, find_image
from wsss.data.classes import normalize_class_names, read_class_names
from wsss.data.voc import read_split_file
from wsss.errors import InputError


def read_labels_csv(path: str | Path, class_names: Sequence[str]) -> dict[str, list[int]]:
    """Parse a labels CSV into {image_id: sorted fg class indices}, in file order.

    ``class_names`` is the full list (background at 0). Errors name the CSV and the line: unknown class,
    wrong column count, empty or duplicated id, 'background' used as a label.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "labels CSV not found")
    index = {n: i for i, n in enumerate(class_names)}
    out: dict[str, list[int]] = {}
    first_line: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or all(not c.strip() for c in row):
                    continue
                if n == 1 and row[0].strip().lower() == "image_id":
                    continue
                if len(row) == 1:
                    row = [row[0], ""]
                if len(row) != 2:
                    raise InputError(path, f"line {n}: expected 'image_id,labels' (labels separated by ';'), "
                                           f"got {len(row)} columns")
                image_id, field = row[0].strip(), row[1]
                if not image_id:
                    raise InputError(path, f"line {n}: empty image_id")
                if image_id in first_line:
                    raise InputError(path, f"line {n}: id '{image_id}' already listed on line {first_line[image_id]}")
                first_line[image_id] = n
                labels: set[int] = set()
                for name in (s.strip() for s in field.split(";")):
                    if not name:
                        continue
                    c = index.get(name)
                    if c is None:
                        known = ", ".join(class_names[1:21]) + (", ..." if len(class_names) > 21 else "")
                        raise InputError(path, f"line {n}: unknown class '{name}' (known: {known})")
                    if c == 0:
                        raise InputError(path, f"line {n}: 'background' is implied, list foreground classes only")
                    labels.add(c)
                out[image_id] = sorted(labels)
    except UnicodeDecodeError as e:
        raise InputError(path, f"labels CSV is not UTF-8 ({e})") from e
    except csv.Error as e:
        raise InputError(path, f"malformed CSV ({e})") from e
    if not out:
        raise InputError(path, "labels CSV lists no images")
    return out


def load_folder(image_dir: str | Path, labels_csv: str | Path, classes: str | Path | Sequence[str],
                mask_dir: str | Path | None = None, split_file: str | Path | None = None,
                name: str = "folder", split: str | None = None) -> SegDataset:
    """A folder of images with CSV labels as a SegDataset.

    ``classes``: a classes-file path or a list of names. ``split_file`` (one id per line) selects and orders a
    subset of the CSV ids; without it every CSV row is used, in CSV order. Each id needs an image
    ``<image_dir>/<id>.<ext>``; with ``mask_dir`` each id needs ``<mask_dir>/<id>.png`` too.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(image_dir, "image folder not found")
    if isinstance(classes, (str, Path)):
        names = read_class_names(classes)
    else:
        names = normalize_class_names(classes)
    labels_csv = Path(labels_csv)
    all_labels = read_labels_csv(labels_csv, names)
    if split_file is not None:
        split_file = Path(split_file)
        if not split_file.is_file():
            raise InputError(split_file, "split file not found")
        ids = read_split_file(split_file)
        missing = [i for i in ids if i not in all_labels]
        if missing:
            raise InputError(split_file, f"id '{missing[0]}' has no row in {labels_csv} ({len(missing)} ids missing)")
    else:
        ids = list(all_labels)
    source = split_file if split_file is not None else labels_csv
    image_paths = {i: find_image(image_dir, i, source=source) for i in ids}
    mdir = None
    if mask_dir is not None:
        mdir = Path(mask_dir)
        if not mdir.is_dir():
            raise InputError(mdir, "mask folder not found")
        missing = [i for i in ids if not (mdir / f"{i}.png").is_file()]
        if missing:
            raise InputError(mdir / f"{missing[0]}.png", f"mask for id '{missing[0]}' (listed in {source}) not found")
    split_name = split or (split_file.stem if split_file is not None else "all")
    return SegDataset(name=name, split=split_name, ids=ids, class_names=names, image_dir=image_dir,
                      labels={i: all_labels[i] for i in ids}, mask_dir=mdir, image_paths=image_paths)
