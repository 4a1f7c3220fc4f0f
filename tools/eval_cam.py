"""Seed quality of a CAM folder against ground truth: mIoU at the configured background threshold, the
oracle threshold sweep (reported as oracle), per-class IoU / precision / recall.

    python tools/eval_cam.py CONFIG [--stage make_cam] [--split train] [--bg-threshold 0.15]
    python tools/eval_cam.py CONFIG --cam-dir work_dirs/x/propagate/cams [--out metrics.json]

``--stage`` takes any stage that writes ``cams/<id>.npz`` (make_cam, clip_cam, propagate, ...); the result goes
to ``<work_dir>/<stage>/metrics.json`` (or ``--out``). The split defaults to ``cam.split`` / ``data.cam_split``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wsss.artifacts import write_json_atomic
from wsss.cli import config_from_args, stage_parser
from wsss.data.build import build_dataset
from wsss.errors import InputError, WSSSError
from wsss.eval.cam_eval import default_thresholds, evaluate_cam_dir, format_cam_report
from wsss.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = stage_parser(__doc__)
    p.add_argument("--stage", default="make_cam", help="stage folder holding cams/ (default make_cam)")
    p.add_argument("--cam-dir", default=None, help="evaluate this folder of <id>.npz instead of a stage's")
    p.add_argument("--split", default=None, help="split to evaluate (default cam.split or data.cam_split)")
    p.add_argument("--bg-threshold", type=float, default=None, help="default cam.bg_threshold (0.15)")
    p.add_argument("--out", default=None, help="metrics file (default <stage folder>/metrics.json)")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = config_from_args(args)
        cam_cfg = cfg.get("cam") or {}
        split = args.split or cam_cfg.get("split") or cfg.data.get("cam_split") or cfg.data.train_split
        thr = args.bg_threshold if args.bg_threshold is not None else float(cam_cfg.get("bg_threshold", 0.15))
        if args.cam_dir:
            cam_dir = Path(args.cam_dir)
            stage_dir = cam_dir.parent if cam_dir.name == "cams" else cam_dir
            out = Path(args.out) if args.out else stage_dir / "metrics.json"
        else:
            cam_dir = Path(cfg.work_dir) / args.stage / "cams"
            out = Path(args.out) if args.out else cam_dir.parent / "metrics.json"
        if not cam_dir.is_dir():
            raise InputError(cam_dir, "no CAM folder here; run the stage first or pass --cam-dir")
        ds = build_dataset(cfg.data, split)
        result = evaluate_cam_dir(cam_dir, ds, default_thresholds(), thr, progress=True)
        result.update({"split": split, "cam_dir": str(cam_dir)})
        write_json_atomic(out, result)
        print(format_cam_report(result, title=f"{cam_dir} on '{split}' ({result['num_images']} images)"))
        print(f"wrote {out}")
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
