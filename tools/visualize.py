"""Pictures of pipeline artifacts, one subcommand per artifact kind.

    python tools/visualize.py cams CONFIG [--stage make_cam] [--ids a b c | --ids-file F | --num 8]
                                   [--split S] [--bg-threshold 0.15] [--out DIR]

``cams``: per image, the image, an overlay per labelled class, ground truth and the CAM label map at the
background threshold when masks exist; writes ``<out>/<id>.png`` and ``<out>/grid.png``
(default out: ``<work_dir>/<stage>/vis``).

Adding a subcommand: write ``add_<name>(parser)`` and ``run_<name>(args) -> int`` and add both to
``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from wsss.artifacts import atomic_path
from wsss.config import DictAction, load_config
from wsss.errors import InputError, WSSSError
from wsss.log import setup_logging


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise InputError(path, "could not write PNG")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    p.add_argument("--split", default=None, help="default cam.split / data.cam_split")
    p.add_argument("--ids", nargs="+", default=None, help="image ids to draw")
    p.add_argument("--ids-file", default=None, help="file with one image id per line")
    p.add_argument("--num", type=int, default=8, help="without --ids: the first N ids of the split")
    p.add_argument("--out", default=None, help="output folder")


def _ids(args: argparse.Namespace, all_ids: list[str]) -> list[str]:
    if args.ids_file:
        path = Path(args.ids_file)
        if not path.is_file():
            raise InputError(path, "ids file not found")
        ids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    else:
        ids = args.ids or all_ids[: args.num]
    unknown = [i for i in ids if i not in set(all_ids)]
    if unknown:
        raise WSSSError(f"ids not in the split: {unknown[:5]}")
    return ids


# --- cams ------------------------------------------------------------------------------------------------
def add_cams(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--stage", default="make_cam", help="stage folder holding cams/ (make_cam, propagate, ...)")
    p.add_argument("--cam-dir", default=None, help="a folder of <id>.npz instead of a stage's cams/")
    p.add_argument("--bg-threshold", type=float, default=None, help="for the label map (default cam.bg_threshold)")
    p.add_argument("--height", type=int, default=160, help="tile height in pixels")


def run_cams(args: argparse.Namespace) -> int:
    from wsss.cam.io import load_cam
    from wsss.data.build import build_dataset
    from wsss.eval.cam_eval import cam_to_labels
    from wsss.eval.plots import cam_panel, stack_rows

    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cam_cfg = cfg.get("cam") or {}
    split = args.split or cam_cfg.get("split") or cfg.data.get("cam_split") or cfg.data.train_split
    cam_dir = Path(args.cam_dir) if args.cam_dir else Path(cfg.work_dir) / args.stage / "cams"
    out = Path(args.out) if args.out else cam_dir.parent / "vis"
    thr = args.bg_threshold if args.bg_threshold is not None else float(cam_cfg.get("bg_threshold", 0.15))
    ds = build_dataset(cfg.data, split)
    rows = []
    for i in _ids(args, ds.ids):
        keys, cams = load_cam(cam_dir / f"{i}.npz")
        image = ds.image(i)
        if cams.shape[1:] != image.shape[:2]:
            raise InputError(cam_dir / f"{i}.npz", f"CAM size {cams.shape[1:]} != image size {image.shape[:2]}")
        gt = ds.mask(i) if ds.has_masks else None
        panel = cam_panel(image, keys, cams, ds.class_names, gt=gt, pred=cam_to_labels(keys, cams, thr),
                          height=args.height, title=i)
        write_png(out / f"{i}.png", panel)
        rows.append(panel)
    write_png(out / "grid.png", stack_rows(rows))
    print(f"wrote {len(rows)} panels and {out / 'grid.png'}")
    return 0


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _visualize_masks import add_masks_parser  # noqa: E402

SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "cams": ("CAM overlays of a stage's cams/ and a grid PNG", add_cams, run_cams),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _run) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    add_masks_parser(sub)  # image | CAM | pseudo mask | ground truth grids
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        if args.command == "masks":
            return args.func(args)
        return SUBCOMMANDS[args.command][2](args)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
