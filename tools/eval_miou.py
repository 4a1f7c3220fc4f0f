"""Score a folder of PNG masks (pseudo masks or predictions) against ground truth.

    python tools/eval_miou.py PRED_DIR GT_DIR [--num-classes N | --classes FILE] [--ids FILE]
        [--ignore-as-wrong] [--out metrics.json]

Prints a per-class table (ignored pixels excluded, or counted wrong with --ignore-as-wrong), the mIoU both
ways, and the share of predicted pixels that are 255 (ignore). Ground-truth 255 pixels never count.
Without --num-classes / --classes the class count is 1 + the largest label found in the two folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsss.data.classes import read_class_names
from wsss.errors import WSSSError
from wsss.eval.confusion import format_table, write_metrics
from wsss.eval.mask_eval import describe, evaluate_mask_dirs, infer_num_classes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pred_dir", type=Path)
    ap.add_argument("gt_dir", type=Path)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--num-classes", type=int, default=None, help="classes including background")
    group.add_argument("--classes", type=Path, default=None, help="classes.txt (one name a line, background first)")
    ap.add_argument("--ids", type=Path, default=None,
                    help="file with one image id a line (default: every PNG in PRED_DIR)")
    ap.add_argument("--ignore-as-wrong", action="store_true", help="per-class table with ignored pixels counted wrong")
    ap.add_argument("--out", type=Path, default=None, help="also write the metrics as JSON here")
    args = ap.parse_args(argv)
    try:
        names = read_class_names(args.classes) if args.classes else None
        n = len(names) if names else args.num_classes or infer_num_classes([args.pred_dir, args.gt_dir])
        ids = None
        if args.ids:
            ids = [ln.split()[0] for ln in args.ids.read_text().splitlines() if ln.strip()]
        summary = evaluate_mask_dirs(args.pred_dir, args.gt_dir, n, ids=ids, class_names=names)
    except (WSSSError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.ignore_as_wrong:
        table = format_table({"per_class": summary["per_class_ignore_as_wrong"],
                              "miou": summary["miou_ignore_as_wrong"]}, "ignored pixels counted wrong")
    else:
        table = format_table(summary, "ignored pixels excluded")
    print(table)
    print(describe(summary))
    if args.out:
        write_metrics(args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
