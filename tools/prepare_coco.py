"""Convert COCO 2014 instance annotations into a VOC-layout semantic segmentation root.

    python tools/prepare_coco.py --instances annotations/instances_train2014.json \
        --images train2014 --out data/coco2014_wsss --split train
    python tools/prepare_coco.py --instances annotations/instances_val2014.json \
        --images val2014 --out data/coco2014_wsss --split val

Writes ``SegmentationClass/<id>.png`` (VOC palette, 81 classes, crowd = 255, smaller instances painted over
larger ones), ``JPEGImages/<id>.jpg`` (symlinks to the originals, copies where links fail),
``ImageSets/Segmentation/<split>.txt``, ``classes.txt`` and ``labels.json`` (merged with an existing one).
Killed runs resume: existing masks are reused. Then ``load_voc(out, split)`` (data type 'coco') reads it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tqdm import tqdm  # noqa: E402

from wsss.artifacts import write_bytes_atomic, write_json_atomic  # noqa: E402
from wsss.data.classes import COCO_CLASSES  # noqa: E402
from wsss.data.coco import check_classes_file, convert_coco_split, load_coco, merge_labels_json  # noqa: E402
from wsss.data.voc import CLASSES_FILE, LABELS_FILE, SPLIT_DIRS  # noqa: E402
from wsss.errors import InputError, WSSSError  # noqa: E402


def prepare_coco(instances: Path, images: Path, out: Path, split: str, keep_empty: bool = False) -> dict:
    """Convert one split; returns a summary {'images', 'annotated_images', 'class_counts'} checked by re-reading."""
    from pycocotools.coco import COCO

    if not instances.is_file():
        raise InputError(instances, "instances file not found")
    if not images.is_dir():
        raise InputError(images, "image folder not found")
    write_classes = check_classes_file(out)
    try:
        coco = COCO(str(instances))
    except Exception as e:  # pycocotools raises bare asserts / JSON errors
        raise InputError(instances, f"unreadable instances file ({type(e).__name__}: {e})") from e
    try:
        labels = convert_coco_split(coco, images, out, split, keep_empty=keep_empty,
                                    progress=lambda it: tqdm(it, desc=f"coco {split}", unit="img"))
    except ValueError as e:
        raise InputError(instances, str(e)) from e
    if write_classes:
        write_bytes_atomic(out / CLASSES_FILE, ("\n".join(COCO_CLASSES) + "\n").encode())
    write_json_atomic(out / LABELS_FILE, merge_labels_json(out, labels, len(COCO_CLASSES)))
    write_bytes_atomic(out / SPLIT_DIRS[0] / f"{split}.txt", ("\n".join(labels) + "\n").encode())

    ds = load_coco(out, split)  # check our own output through the reader the stages use
    if len(ds) != len(labels) or ds.num_classes != len(COCO_CLASSES):
        raise WSSSError(f"{out}: split '{split}' read back with {len(ds)} ids and {ds.num_classes} classes")
    counts = [0] * len(COCO_CLASSES)
    for i in ds.ids:
        for c in ds.labels[i]:
            counts[c] += 1
    return {"images": len(coco.dataset["images"]), "split_images": len(ds),
            "class_counts": {COCO_CLASSES[c]: counts[c] for c in range(1, len(COCO_CLASSES))}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", required=True, type=Path, help="instances_<split>2014.json")
    ap.add_argument("--images", required=True, type=Path, help="folder with the split's images (train2014/)")
    ap.add_argument("--out", required=True, type=Path, help="VOC-layout root to write (shared by all splits)")
    ap.add_argument("--split", required=True, help="split name to write, e.g. train or val")
    ap.add_argument("--keep-empty", action="store_true",
                    help="list images without any foreground class in the split (default: leave them out)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        s = prepare_coco(args.instances, args.images, args.out, args.split, args.keep_empty)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    absent = [k for k, v in s["class_counts"].items() if not v]
    print(f"{args.split}: {s['split_images']} of {s['images']} images listed in "
          f"{args.out / SPLIT_DIRS[0] / (args.split + '.txt')}")
    top = sorted(s["class_counts"].items(), key=lambda kv: -kv[1])[:10]
    print("most frequent classes (images): " + ", ".join(f"{k} {v}" for k, v in top))
    if absent:
        print(f"classes never present: {', '.join(absent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
