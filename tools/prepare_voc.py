"""Cache the image-level labels of a VOC-layout root in ``<root>/labels.json``.

    python tools/prepare_voc.py --root data/VOCdevkit/VOC2012 [--splits train val train_aug]

Labels are the foreground classes present in each mask (0 and 255 ignored). Entries of ids outside the
requested splits that are already in labels.json are kept. The file is written once, atomically, then read
back through ``load_voc`` for every split as a check of its own output.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tqdm import tqdm  # noqa: E402

from wsss.artifacts import write_json_atomic  # noqa: E402
from wsss.data.voc import (LABELS_FILE, derive_labels, find_split_file, load_voc, read_labels_json,  # noqa: E402
                           read_split_file, split_mask_dir, voc_class_names)
from wsss.errors import InputError, WSSSError  # noqa: E402

DEFAULT_SPLITS = ("train", "val", "train_aug")
log = logging.getLogger("prepare_voc")


def prepare_voc(root: Path, splits: list[str] | None) -> dict[str, dict]:
    """Derive, write and re-check labels.json; returns {split: {'images': n, 'class_counts': {name: n}}}."""
    names = voc_class_names(root)
    if splits is None:  # default: the standard splits that exist
        splits = []
        for s in DEFAULT_SPLITS:
            try:
                find_split_file(root, s)
                splits.append(s)
            except InputError as e:
                if s == "train_aug":  # the split configs/_base_/datasets/voc12.py trains on: never skip it quietly
                    log.warning("no train_aug: the VOC configs train on it (data.train_split='train_aug'); make it "
                                "with tools/prepare_sbd.py --root %s --sbd SBD/dataset, or set "
                                "data.train_split='train' (%s)", root, e)
        if not splits:
            raise InputError(root / "ImageSets/Segmentation", f"none of the splits {list(DEFAULT_SPLITS)} found")
    labels_path = root / LABELS_FILE
    labels = read_labels_json(labels_path, len(names)) if labels_path.is_file() else {}
    done: set[str] = set()
    for split in splits:
        ids = [i for i in read_split_file(find_split_file(root, split)) if i not in done]
        labels.update(derive_labels(root, ids, split_mask_dir(root, split), len(names),
                                    progress=lambda it, s=split: tqdm(it, desc=f"labels {s}", unit="img")))
        done.update(ids)
    write_json_atomic(labels_path, labels)

    summary: dict[str, dict] = {}
    for split in splits:  # check our own output through the reader every stage uses
        ds = load_voc(root, split)
        counts = [0] * len(names)
        for i in ds.ids:
            for c in ds.labels[i]:
                counts[c] += 1
        if len(ds) != len(read_split_file(find_split_file(root, split))):
            raise WSSSError(f"{labels_path}: split '{split}' read back with {len(ds)} ids")
        summary[split] = {"images": len(ds), "no_foreground": sum(1 for i in ds.ids if not ds.labels[i]),
                          "class_counts": {names[c]: counts[c] for c in range(1, len(names))}}
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path, help="VOC-layout root, e.g. data/VOCdevkit/VOC2012")
    ap.add_argument("--splits", nargs="+", default=None,
                    help=f"splits to label (default: those of {' '.join(DEFAULT_SPLITS)} that exist)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = prepare_voc(args.root, args.splits)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.root / LABELS_FILE}")
    for split, s in summary.items():
        present = {k: v for k, v in s["class_counts"].items() if v}
        absent = [k for k, v in s["class_counts"].items() if not v]
        print(f"{split}: {s['images']} images, {s['no_foreground']} without foreground; images per class: "
              + ", ".join(f"{k} {v}" for k, v in present.items()))
        if absent:
            print(f"{split}: classes never present: {', '.join(absent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
