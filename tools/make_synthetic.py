"""Generate the synthetic VOC-layout WSSS dataset (deterministic by seed).

    python tools/make_synthetic.py --out data/synthetic --num-train 200 --num-val 50 --seed 0 \
        [--size 128] [--classes 6] [--bias 0.8] [--preview docs/img/synthetic_examples.png]

Prints per split: images, images per class, share of each class's images on its own background, classes per
image, and the time taken. ``--preview`` also writes a grid of the first 16 train images next to their masks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from wsss.data.palette import colorize  # noqa: E402
from wsss.data.synthetic import MAX_CLASSES, generate_synthetic  # noqa: E402
from wsss.data.voc import load_voc  # noqa: E402


def preview_grid(root: Path, split: str = "train", n: int = 16, cols: int = 4) -> np.ndarray:
    """[H, W, 3] uint8 RGB grid: ``n`` images of ``split``, each with its colourised mask to the right, and a
    legend row of class colours at the bottom."""
    ds = load_voc(root, split, name="synthetic")
    ids = ds.ids[:n]
    tiles = [np.concatenate([ds.image(i), colorize(ds.mask(i))], axis=1) for i in ids]
    th, tw = tiles[0].shape[:2]
    gap = 4
    rows = (len(tiles) + cols - 1) // cols
    legend_h = 22
    grid = np.full((rows * (th + gap) + legend_h, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = t
    x, y0 = 4, rows * (th + gap)
    colors = colorize(np.arange(ds.num_classes, dtype=np.uint8)[None])[0]
    for c, name in enumerate(ds.class_names):
        grid[y0 + 5: y0 + 17, x: x + 12] = colors[c]
        cv2.putText(grid, name, (x + 16, y0 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 16 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 14
    return grid


def save_preview(grid: np.ndarray, path: Path) -> None:
    """Write the grid as a 256-colour PNG (keeps a committed picture small)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--num-train", required=True, type=int)
    ap.add_argument("--num-val", required=True, type=int)
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ap.add_argument("--classes", type=int, default=6, help=f"foreground classes, 1..{MAX_CLASSES} (default 6)")
    ap.add_argument("--bias", type=float, default=0.8,
                    help="probability that an object lies on its class's own background (default 0.8)")
    ap.add_argument("--max-objects", type=int, default=3, help="objects per image: 1..N (default 3)")
    ap.add_argument("--distractors", type=float, default=0.5,
                    help="probability of 1-2 unlabelled distractor blobs per image (default 0.5)")
    ap.add_argument("--num-ood", type=int, default=0,
                    help="context-only images (a class's own background, no object, no label) in split 'ood', "
                         "the out-of-distribution data of W-OoD (default 0)")
    ap.add_argument("--format", choices=("png", "jpg"), default="png", help="image file format (default png)")
    ap.add_argument("--preview", type=Path, default=None, help="also write a 16-sample grid picture here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        summary = generate_synthetic(args.out, args.num_train, args.num_val, args.seed, size=args.size,
                                     num_classes=args.classes, bias=args.bias, max_objects=args.max_objects,
                                     distractor_prob=args.distractors, image_format=args.format,
                                     num_ood=args.num_ood,
                                     progress=lambda it: tqdm(it, desc="synthetic", unit="img"))
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    n = args.num_train + args.num_val + args.num_ood
    print(f"wrote {n} images of {args.size}x{args.size} to {args.out} in {dt:.2f} s "
          f"({1000 * dt / max(n, 1):.1f} ms/image)")
    for split, s in summary.items():
        if not s["images"]:
            continue
        print(f"{split}: {s['images']} images; images per class: "
              + ", ".join(f"{k} {v}" for k, v in s["images_per_class"].items()))
        print(f"{split}: share on own background: "
              + ", ".join(f"{k} {v:.2f}" for k, v in s["on_own_background"].items())
              + "; classes per image: " + ", ".join(f"{k}:{v}" for k, v in s["classes_per_image"].items() if v)
              + f"; background pixels {s['pixel_fraction']['background']:.2f}")
    if args.preview is not None and args.num_train:
        save_preview(preview_grid(args.out, "train", n=min(16, args.num_train)), args.preview)
        print(f"preview: {args.preview} ({args.preview.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
