"""Make VOC 2012's train_aug (10,582 images) from SBD: SegmentationClassAug masks, the id list, the labels.

    python tools/prepare_sbd.py --root data/VOCdevkit/VOC2012 --sbd data/benchmark_RELEASE/dataset
    python tools/prepare_sbd.py --root data/VOCdevkit/VOC2012      # mmsegmentation's voc_aug output already there

With ``--sbd`` (SBD's ``dataset/`` folder: ``cls/<id>.mat``, ``train.txt``, ``val.txt``) every listed SBD id's
``GTcls.Segmentation`` becomes ``<root>/SegmentationClassAug/<id>.png``. Without it, the SBD masks must already be
in SegmentationClassAug (mmsegmentation's ``voc_aug.py`` writes them, with ``ImageSets/Segmentation/trainaug.txt``
and ``aug.txt``), and the list is read from there.

train_aug = (VOC train ∪ SBD train ∪ SBD val) − VOC val; its size is checked against 10,582 (``--expect``). VOC
train images that SBD does not have get their VOC mask (SegmentationClass) copied into SegmentationClassAug, so
every train_aug id has a mask there (mmsegmentation's converter leaves those out). The list is written to
``ImageSets/SegmentationAug/train_aug.txt``, then tools/prepare_voc.py's labels step runs for train, val and
train_aug and reads everything back through the reader the stages use. Masks are written atomically and existing
ones are kept, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))      # its sibling prepare_voc.py

from tqdm import tqdm  # noqa: E402

from wsss.artifacts import write_bytes_atomic  # noqa: E402
from wsss.data.palette import load_mask, save_mask  # noqa: E402
from wsss.data.sbd import SBD_URL, TRAIN_AUG_SIZE, check_size, read_sbd_mat, train_aug_ids  # noqa: E402
from wsss.data.voc import AUG_MASK_DIR, MASK_DIR, find_split_file, read_split_file  # noqa: E402
from wsss.errors import InputError, WSSSError  # noqa: E402
from prepare_voc import prepare_voc  # noqa: E402

log = logging.getLogger("prepare_sbd")
OUT_LIST = "ImageSets/SegmentationAug/train_aug.txt"
MMSEG_LISTS = ("ImageSets/Segmentation/trainaug.txt", "ImageSets/Segmentation/aug.txt")


def convert_sbd(sbd: Path, out_dir: Path) -> tuple[list[str], int]:
    """Write ``out_dir/<id>.png`` for every id of SBD's train.txt and val.txt. Returns (SBD ids, files written)."""
    ids: list[str] = []
    for name in ("train.txt", "val.txt"):
        ids += read_split_file(sbd / name)
    missing = [i for i in ids if not (sbd / "cls" / f"{i}.mat").is_file()]
    if missing:
        raise InputError(sbd / "cls" / f"{missing[0]}.mat", f"{len(missing)} of {len(ids)} SBD ids have no class "
                                                            f"mask; is {sbd} SBD's complete dataset/ folder?")
    todo = [i for i in ids if not (out_dir / f"{i}.png").is_file()]
    for i in tqdm(todo, desc="SBD .mat -> png", unit="img"):
        save_mask(out_dir / f"{i}.png", read_sbd_mat(sbd / "cls" / f"{i}.mat"))
    return ids, len(todo)


def sbd_ids_from_mmseg(root: Path, voc_train: list[str]) -> tuple[list[str], Path]:
    """The SBD-side ids of an mmsegmentation layout: trainaug.txt (the full list) or aug.txt (+ VOC train)."""
    for rel in MMSEG_LISTS:
        p = root / rel
        if p.is_file():
            ids = read_split_file(p)
            return (ids if p.name == "trainaug.txt" else ids + voc_train), p
    raise InputError(root / MMSEG_LISTS[0], f"no SBD source: pass --sbd SBD/dataset (SBD from {SBD_URL}) or "
                                            f"run mmsegmentation's voc_aug.py first")


def fill_from_voc(root: Path, ids: list[str]) -> list[str]:
    """Copy SegmentationClass masks into SegmentationClassAug for ids that lack an SBD mask; returns them.

    An id with neither is an SBD image whose mask was never converted: a one-line error saying where to get it.
    """
    aug, voc = root / AUG_MASK_DIR, root / MASK_DIR
    lacking = [i for i in ids if not (aug / f"{i}.png").is_file()]
    absent = [i for i in lacking if not (voc / f"{i}.png").is_file()]
    if absent:
        raise InputError(aug / f"{absent[0]}.png",
                         f"{len(absent)} train_aug ids have a mask neither in {AUG_MASK_DIR} nor in {MASK_DIR} "
                         f"(first: {', '.join(absent[:3])}); they are SBD images: pass --sbd with SBD's dataset/ "
                         f"folder ({SBD_URL})")
    for i in tqdm(lacking, desc="VOC masks -> aug", unit="img", disable=not lacking):
        save_mask(aug / f"{i}.png", load_mask(voc / f"{i}.png"))
    return lacking


def write_list(root: Path, ids: list[str]) -> Path:
    """Write train_aug.txt; an existing list elsewhere with other ids is refused (the reader would pick it)."""
    target = root / OUT_LIST
    try:
        existing = find_split_file(root, "train_aug")
    except InputError:
        existing = None
    if existing is not None and existing != target and sorted(read_split_file(existing)) != ids:
        raise InputError(existing, f"holds another train_aug list than the {len(ids)} ids computed here; "
                                   f"remove it (the reader reads it before {OUT_LIST})")
    write_bytes_atomic(target, ("\n".join(ids) + "\n").encode())
    return target


def prepare_sbd(root: Path, sbd: Path | None, expect: int | None = TRAIN_AUG_SIZE, labels: bool = True) -> dict:
    """Everything above; returns a summary dict (counts and the ids copied from VOC)."""
    if not root.is_dir():
        raise InputError(root, "VOC root not found")
    voc_train = read_split_file(find_split_file(root, "train"))
    voc_val = read_split_file(find_split_file(root, "val"))
    written = 0
    if sbd is not None:
        sbd_ids, written = convert_sbd(sbd, root / AUG_MASK_DIR)
        source = str(sbd)
    else:
        sbd_ids, path = sbd_ids_from_mmseg(root, voc_train)
        source = str(path)
    ids = train_aug_ids(voc_train, voc_val, sbd_ids)
    check_size(ids, expect, source)
    copied = fill_from_voc(root, ids)
    out = write_list(root, ids)
    summary = {"train_aug": len(ids), "sbd_masks_written": written, "copied_from_voc": copied, "list": str(out)}
    if labels:
        summary["labels"] = prepare_voc(root, ["train", "val", "train_aug"])
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path, help="VOC 2012 root, e.g. data/VOCdevkit/VOC2012")
    ap.add_argument("--sbd", type=Path, default=None,
                    help="SBD's dataset/ folder (cls/*.mat, train.txt, val.txt); omit for mmsegmentation's layout")
    ap.add_argument("--expect", type=int, default=TRAIN_AUG_SIZE,
                    help=f"required size of train_aug (default {TRAIN_AUG_SIZE}; 0 = accept any)")
    ap.add_argument("--no-labels", action="store_true", help="skip labels.json (tools/prepare_voc.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        s = prepare_sbd(args.root, args.sbd, args.expect or None, labels=not args.no_labels)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"train_aug: {s['train_aug']} ids -> {s['list']}; {s['sbd_masks_written']} SBD masks written to "
          f"{args.root / AUG_MASK_DIR}")
    if s["copied_from_voc"]:
        c = s["copied_from_voc"]
        print(f"{len(c)} VOC train ids are not in SBD: their masks were copied from {MASK_DIR} "
              f"(first: {', '.join(c[:5])})")
    for split, info in (s.get("labels") or {}).items():
        print(f"{split}: {info['images']} images, {info['no_foreground']} without foreground")
    return 0


if __name__ == "__main__":
    sys.exit(main())
