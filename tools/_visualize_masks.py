"""``tools/visualize.py masks``: a grid of image | CAM | pseudo mask | ground truth for a few images.

    python tools/visualize.py masks CONFIG [--work-dir DIR] [--cams make_cam] [--masks make_pseudo]
        [--ids ID ...] [--num 8] [--out PATH] [--cfg-options k=v ...]

Wired into tools/visualize.py with (tools/ is ``sys.path[0]`` when a tool runs as a script)::

    from _visualize_masks import add_masks_parser
    add_masks_parser(subparsers)          # sets func=run_masks on the sub-parser
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from PIL import Image

from wsss.artifacts import atomic_path, read_manifest
from wsss.cam.io import load_cam
from wsss.config import DictAction, load_config
from wsss.data.build import build_dataset
from wsss.data.palette import load_mask
from wsss.errors import InputError
from wsss.eval.mask_grid import add_legend, cam_heatmap, legend_entries, mask_grid, mask_panel

log = logging.getLogger(__name__)


def add_masks_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``masks`` sub-command; the parsed namespace's ``func`` is :func:`run_masks`."""
    p = subparsers.add_parser("masks", help="image | CAM | pseudo mask | ground truth grid",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the pipeline config (dataset and work_dir)")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--cams", default=None,
                   help="CAM stage folder (default: the one the mask stage's manifest names as its input)")
    p.add_argument("--masks", default="make_pseudo", help="mask stage folder (default make_pseudo)")
    p.add_argument("--split", default=None, help="dataset split (default: data.cam_split)")
    p.add_argument("--ids", nargs="+", default=None, help="image ids (default: the first --num of the split)")
    p.add_argument("--num", type=int, default=8, help="rows when --ids is not given (default 8)")
    p.add_argument("--cell", type=int, default=160, help="panel size in pixels (default 160)")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default <work_dir>/<masks>/masks_grid.png)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    p.set_defaults(func=run_masks)
    return p


def _cam_stage_of(mask_stage_dir: Path) -> str | None:
    """The CAM stage a mask folder was made from, as its manifest records it (not what the config says now)."""
    inputs = list(((read_manifest(mask_stage_dir) or {}).get("inputs") or {}))
    return inputs[0] if inputs else None


def run_masks(args: argparse.Namespace) -> int:
    """Draw the grid and write it as a PNG; returns 0. Missing CAM / mask files are one-line InputErrors."""
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    work = Path(cfg.work_dir)
    cam_stage = args.cams or _cam_stage_of(work / args.masks) or (cfg.get("pseudo") or {}).get("input") or "make_cam"
    ds = build_dataset(cfg.data, args.split or cfg.data.get("cam_split", "train"))
    ids = list(args.ids) if args.ids else ds.ids[: max(1, args.num)]
    unknown = [i for i in ids if i not in set(ds.ids)]
    if unknown:
        raise InputError(args.config, f"ids {unknown[:5]} are not in split '{ds.split}'")
    rows, shown = [], []
    for i in ids:
        image = ds.image(i)
        _, cams = load_cam(work / cam_stage / "cams" / f"{i}.npz")
        pseudo = load_mask(work / args.masks / "masks" / f"{i}.png", ds.num_classes)
        gt_path = ds.mask_path(i)
        gt = ds.mask(i) if gt_path is not None and gt_path.is_file() else None
        rows.append([image, cam_heatmap(image, cams), mask_panel(pseudo), None if gt is None else mask_panel(gt)])
        shown += [pseudo] + ([] if gt is None else [gt])
    grid = mask_grid(rows, ["image", f"CAM ({cam_stage})", f"mask ({args.masks})", "ground truth"],
                     row_labels=ids, cell=args.cell)
    grid = add_legend(grid, legend_entries(shown, ds.class_names))
    out = args.out or work / args.masks / "masks_grid.png"
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    print(f"wrote {out} ({len(ids)} images)")
    return 0
