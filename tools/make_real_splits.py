"""Write the fixed train / held-out lists of coco128-voc (configs/real/coco128_splits/{train,heldout}.txt).

    python tools/make_real_splits.py [--labels ../shared/data/coco128-voc/labels.csv] [--size 30] [--seed 0]
        [--out configs/real/coco128_splits]
    # the tune split inside train.txt (settings are chosen on it, never on heldout.txt):
    python tools/make_real_splits.py --ids configs/real/coco128_splits/train.txt --size 24 \
        --names tune_train,tune_val

The rule is :func:`wsss.data.splits.stratified_holdout` (documented in docs/real_photos.md); the committed lists
are this script's output with the defaults, and tests/test_real_splits.py checks that they still are.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from wsss.data.classes import VOC_CLASSES
from wsss.data.folder import read_labels_csv
from wsss.data.splits import stratified_holdout

log = logging.getLogger("make_real_splits")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default="../shared/data/coco128-voc/labels.csv")
    p.add_argument("--size", type=int, default=30, help="held-out images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="configs/real/coco128_splits")
    p.add_argument("--ids", default=None, help="split only the ids of this list (one per line)")
    p.add_argument("--names", default="train,heldout", help="file names of the two lists")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    labels = read_labels_csv(args.labels, list(VOC_CLASSES))
    if args.ids:
        keep = [line.strip() for line in Path(args.ids).read_text().splitlines() if line.strip()]
        labels = {i: labels[i] for i in keep}
    names = [n.strip() for n in args.names.split(",")]
    if len(names) != 2:
        p.error("--names needs two names, e.g. train,heldout")
    train, held = stratified_holdout(labels, args.size, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in zip(names, (train, held)):
        (out / f"{name}.txt").write_text("\n".join(ids) + "\n")
    for name, ids in zip(names, (train, held)):
        c = Counter(VOC_CLASSES[k] for i in ids for k in labels[i])
        log.info("%s: %d images (%d without a VOC class); %s", name, len(ids), sum(1 for i in ids if not labels[i]),
                 ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
