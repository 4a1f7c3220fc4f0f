"""Context bias on the synthetic set: seed CAM quality without and with each remedy, over the bias parameter.

    python benchmarks/context_bias.py [--biases 0.8,0.0] [--num-train 200] [--num-ood 60] [--size 128]
        [--iters 300] [--seed 0] [--work-root work_dirs/context_bias] [--threads N]

For each bias the synthetic set is generated with its context-only split (``--num-ood``), then:
``baseline`` = configs/synthetic/cam_effnet_lite0.py (train_cls -> make_cam), ``debias`` = the baseline's CAMs
through stages/debias.py (configs/synthetic/cam_lite0_debias.py), ``W-OoD`` = configs/synthetic/cam_lite0_wood.py
(train_cls with OoD images -> make_cam). Seeds are scored on the training images (the WSSS protocol) at the
configured threshold; the threshold swept on ground truth is printed as ORACLE. Prints a markdown table: mIoU,
mean foreground precision and recall over classes, oracle mIoU. OCR acts in train_seg and is measured there
(eval_seg ``ooc_share``), not here. Complete stages in ``--work-root`` are reused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from wsss.config import load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("context_bias")


def seed_quality(metrics_path: Path) -> dict[str, float]:
    """mIoU, mean fg precision / recall over classes, oracle mIoU of a CAM stage's metrics.json."""
    m = json.loads(metrics_path.read_text())
    fg = [r for name, r in m["summary"]["per_class"].items() if name != "background" and r["gt_pixels"] > 0]
    mean = (lambda k: sum(r[k] or 0.0 for r in fg) / max(len(fg), 1))
    return {"miou": m["miou"], "precision": mean("precision"), "recall": mean("recall"),
            "oracle": m["oracle"]["miou"], "oracle_t": m["oracle"]["threshold"]}


def run_stages(config: str, work_dir: Path, opts: list[str], stages: list[str]) -> float:
    """Run ``stages`` of ``config`` in-process with ``opts``; returns the wall time."""
    import importlib

    t0 = time.time()
    cfg = load_config(ROOT / config, parse_overrides(opts), work_dir)
    for name in stages:
        importlib.import_module(f"stages.{name}").run(cfg)
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--biases", default="0.8,0.0")
    ap.add_argument("--num-train", type=int, default=200)
    ap.add_argument("--num-ood", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=300, help="train_cls iterations (W-OoD starts at half)")
    ap.add_argument("--top-k", type=int, default=32, help="W-OoD: mined OoD images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-root", type=Path, default=ROOT / "work_dirs" / "context_bias")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from wsss.data.synthetic import generate_synthetic

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[float, str, dict[str, Any], float]] = []
    for bias in [float(b) for b in args.biases.split(",")]:
        base = args.work_root / f"bias_{bias:.2f}"
        data = base / "data"
        if not (data / "synthetic.json").is_file():
            generate_synthetic(data, args.num_train, 0, seed=args.seed, size=args.size, bias=bias,
                               num_ood=args.num_ood)
        common = [f"data.root={data}", "data.val_split=", f"seed={args.seed}", f"train_cls.iters={args.iters}",
                  "train_cls.ckpt_interval=1000000"]
        t = run_stages("configs/synthetic/cam_effnet_lite0.py", base / "baseline", common, ["train_cls", "make_cam"])
        rows.append((bias, "baseline", seed_quality(base / "baseline" / "make_cam" / "metrics.json"), t))
        t = run_stages("configs/synthetic/cam_lite0_debias.py", base / "baseline", common, ["debias"])
        rows.append((bias, "debias (MARS-style)", seed_quality(base / "baseline" / "debias" / "metrics.json"), t))
        wood = common + [f"train_cls.wood.start_iter={args.iters // 2}", f"train_cls.wood.top_k={args.top_k}"]
        t = run_stages("configs/synthetic/cam_lite0_wood.py", base / "wood", wood, ["train_cls", "make_cam"])
        rows.append((bias, "W-OoD", seed_quality(base / "wood" / "make_cam" / "metrics.json"), t))

    print(f"\nContext bias, synthetic {args.num_train} train images of {args.size} px (+{args.num_ood} context-only), "
          f"seed {args.seed}, {datetime.date.today()}, {platform.machine()} {os.cpu_count()} cores")
    print("| bias | method | seed mIoU | fg precision | fg recall | ORACLE mIoU (threshold) | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for bias, name, q, t in rows:
        print(f"| {bias:.2f} | {name} | {100 * q['miou']:.1f} | {100 * q['precision']:.1f} | {100 * q['recall']:.1f} "
              f"| {100 * q['oracle']:.1f} ({q['oracle_t']:.2f}) | {t:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
