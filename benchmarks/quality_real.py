"""Real photos (coco128-voc): the small-data stage 1 scored on photos the classifier never saw (issue 16).

    python benchmarks/quality_real.py [--work-root work_dirs/quality_real] [--variants heldout,classic,...]
        [--threads N] [--figure docs/img/real_examples.png] [--cfg-options k=v ...] [--report-only]

Protocol: the classifier learns from the 96 photos of ``configs/real/coco128_splits/train.txt``; the held-out
column makes CAMs, refinements and pseudo masks for the 30 photos of ``heldout.txt`` (classifier mAP on them too),
the classic column for the 96 training photos themselves (the field's protocol). Every stage scores itself
against the masks (``metrics.json``); this script runs the configs' pipelines in-process and prints markdown
tables: mIoU at the configured thresholds with the ORACLE threshold (swept on ground truth, an upper bound, not
a result) beside it, the no-model baselines of each split, the seed spread over training seeds, the per-class
IoU of the held-out run and the wall time of each stage. Stages already complete in ``--work-root`` are reused.

Variants: ``heldout`` = configs/real/coco128_small.py (frozen EfficientNet-Lite0, head of mapped ImageNet rows,
balanced BCE, cached features; whole chain), ``classic`` = coco128_small_classic.py (same classifier, chain on the
training photos, without the random walk; ``classic_rw`` with it), ``zero``/``zero_classic`` =
coco128_imagenet_zero.py (no training: the ImageNet head through the VOC mapping), ``finetune`` =
coco128_lite0.py on the same split (the previous recipe: the whole network fine-tuned,
150 iterations as in the earlier table; seeds only), ``seed1``/``seed2`` = coco128_small.py with seed 1 / 2
(classifier and seeds only, for the spread), ``wood``/``wood_seed1``/``wood_seed2`` = coco128_small_wood.py (W-OoD
with the no-class training photos; the chain for seed 0, seeds only for 1 / 2), paired with the plain runs by
seed in their own table. ``--figure`` draws image | seed CAM | pseudo mask (PAR + CRF) |
ground truth for 8 held-out photos.
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
_SEEDS_ONLY = {"pipeline": ["train_cls", "make_cam"]}
_SPLITS = "configs/real/coco128_splits"
# name -> (config, overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "heldout": ("configs/real/coco128_small.py", {}),
    # The random walk (train_aff + propagate) is left out of the classic column: on the shared 2-core CPU its
    # affinity training alone took ~16 min; ``classic_rw`` is the full chain.
    "classic": ("configs/real/coco128_small_classic.py", {"pipeline": [
        "train_cls", "make_cam",
        dict(module="propagate", name="propagate_par", cfg=dict(propagate=dict(method="par", name="propagate_par"))),
        "make_pseudo",
        dict(module="make_pseudo", name="make_pseudo_crf", cfg=dict(pseudo=dict(name="make_pseudo_crf", use_crf=True))),
    ]}),
    "classic_rw": ("configs/real/coco128_small_classic.py", {}),
    "zero": ("configs/real/coco128_imagenet_zero.py", {}),
    "zero_classic": ("configs/real/coco128_imagenet_zero.py", {"data.cam_split": "train", "data.val_split": "train"}),
    "finetune": ("configs/real/coco128_lite0.py", {
        "data.split_files": dict(all="../shared/data/coco128-voc/all.txt", train=f"{_SPLITS}/train.txt",
                                 heldout=f"{_SPLITS}/heldout.txt"),
        "data.train_split": "train", "data.val_split": "heldout", "data.cam_split": "heldout",
        "train_cls.iters": 150, **_SEEDS_ONLY}),
    "seed1": ("configs/real/coco128_small.py", {"seed": 1, **_SEEDS_ONLY}),
    "seed2": ("configs/real/coco128_small.py", {"seed": 2, **_SEEDS_ONLY}),
    # W-OoD (configs/real/coco128_small_wood.py): the same held-out chain, the no-class training photos as OoD.
    "wood": ("configs/real/coco128_small_wood.py", {}),
    "wood_seed1": ("configs/real/coco128_small_wood.py", {"seed": 1, **_SEEDS_ONLY}),
    "wood_seed2": ("configs/real/coco128_small_wood.py", {"seed": 2, **_SEEDS_ONLY}),
}
DEFAULT_VARIANTS = "heldout,classic,zero,zero_classic,finetune,seed1,seed2,wood,wood_seed1,wood_seed2"
#: Biased-object removal (stages/debias.py) on the held-out seeds (``--debias``): the classifier's own frozen
#: ImageNet backbone at stride 16 on the full photo, 16 clusters, CAM coverage at the seeds' configured threshold
#: 0.25 (the rule of the synthetic benchmark: the seeds' own threshold; nothing tuned on these photos).
REAL_DEBIAS = dict(input="make_cam", backbone=dict(arch="tf_efficientnet_lite0", weights="efficientnet-lite0-package",
                                                   output_stride=16),
                   scale=1.0, clusters=16, max_samples=100000, cam_threshold=0.25, bg_threshold=0.25)
DEBIAS_RUNS = ("heldout", "seed1", "seed2")
#: W-OoD's runs and the plain runs they pair with (same training seed, same split).
WOOD_PAIRS = (("heldout", "wood"), ("seed1", "wood_seed1"), ("seed2", "wood_seed2"))
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


def _cam_cells(m: dict | None) -> list[str]:
    if not m:
        return ["-", "-"]
    return [f"{pct(m['miou'])} ({m['bg_threshold']:.2f})",
            f"{pct(m['oracle']['miou'])} ({m['oracle']['threshold']:.2f})"]


def _mask_cells(m: dict | None) -> list[str]:
    if not m:
        return ["-", "-"]
    return [f"{pct(m['miou'])} ({pct(m['ignored_share'])} % ign.; {pct(m['miou_ignore_as_wrong'])} if ign. = wrong)",
            "-"]


def _map(wd: Path | None) -> float | None:
    m = read_metrics(wd, "train_cls") if wd else None
    return (m or {}).get("val_map")


def seed_spread(dirs: Sequence[Path]) -> tuple[float, float, float, int] | None:
    """(mean, min, max, n) of the seed-CAM mIoU over runs that differ only in the training seed."""
    vals = [m["miou"] for m in (read_metrics(d, "make_cam") for d in dirs) if m]
    if not vals:
        return None
    return sum(vals) / len(vals), min(vals), max(vals), len(vals)


def cam_precision_recall(m: dict | None) -> dict[str, float] | None:
    """mIoU, mean foreground precision / recall over the classes present, and the oracle of a CAM stage."""
    if not m:
        return None
    fg = [r for name, r in m["summary"]["per_class"].items() if name != "background" and r["gt_pixels"] > 0]
    mean = (lambda k: sum(r[k] or 0.0 for r in fg) / max(len(fg), 1))
    return {"miou": m["miou"], "precision": mean("precision"), "recall": mean("recall"),
            "oracle": m["oracle"]["miou"]}


#: (key of cam_precision_recall, row label) of the paired seed tables.
CAM_KEYS = (("miou", "mIoU"), ("precision", "fg precision"), ("recall", "fg recall"), ("oracle", "ORACLE mIoU"))


def paired_line(label: str, plain: Sequence[float | None], other: Sequence[float | None]) -> str:
    """'| label | plain mean ± std | other mean ± std | paired gain |' (values paired by position = seed)."""
    from wsss.eval.seeds import mean_std, paired_gain

    cells = [mean_std(plain).format(), mean_std(other).format(), paired_gain(other, plain).format()]
    return f"| {label} | " + " | ".join(cells) + " |"


def cam_rows(plain_dirs: Sequence[Path], other_dirs: Sequence[Path], other_stage: str,
             prefix: str = "") -> list[str]:
    """Paired lines of the seed CAMs (make_cam of ``plain_dirs``) against ``other_stage`` of ``other_dirs``."""
    plain = [cam_precision_recall(read_metrics(d, "make_cam")) or {} for d in plain_dirs]
    other = [cam_precision_recall(read_metrics(d, other_stage)) or {} for d in other_dirs]
    return [paired_line(prefix + label, [r.get(k) for r in plain], [r.get(k) for r in other]) for k, label in CAM_KEYS]


def debias_table(work_dirs: dict[str, Path]) -> str:
    """The held-out seeds with and without biased-object removal, paired by training seed."""
    dirs = [work_dirs[n] for n in DEBIAS_RUNS if n in work_dirs]
    return "\n".join(["| held-out photos, seed CAMs | plain | debias | debias gain (paired by seed) |",
                      "|---|---|---|---|"] + cam_rows(dirs, dirs, "debias"))


def wood_table(work_dirs: dict[str, Path]) -> str:
    """W-OoD against the plain held-out runs, paired by training seed: classifier mAP and the seeds' mIoU,
    foreground precision / recall and oracle (mean ± std over seeds; gains 'not shown' within twice their
    spread), then the chain of seed 0 (PAR, random walk, pseudo masks) where both ran it."""
    pairs = [(work_dirs.get(a), work_dirs.get(b)) for a, b in WOOD_PAIRS]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    lines = ["| held-out photos | plain | W-OoD | W-OoD gain (paired by seed) |", "|---|---|---|---|",
             paired_line("classifier mAP", [_map(a) for a, _ in pairs], [_map(b) for _, b in pairs])]
    lines += cam_rows([a for a, _ in pairs], [b for _, b in pairs], "make_cam", prefix="seed CAMs: ")
    if pairs:
        a, b = pairs[0]
        for stage, label in CAM_STAGES[1:] + MASK_STAGES:
            ma, mb = read_metrics(a, stage), read_metrics(b, stage)
            if ma and mb:
                key = "miou_ignore_as_wrong" if "miou_ignore_as_wrong" in ma else "miou"
                note = " (undecided = wrong)" if key != "miou" else ""
                lines.append(paired_line(f"{label}{note}, seed 0", [ma[key]], [mb[key]]))
    return "\n".join(lines)


def protocol_table(columns: dict[str, dict[str, Any]]) -> str:
    """The main markdown table: one row per stage, two cells (configured threshold, ORACLE) per column.

    ``columns``: label -> dict(main=work dir of the chain, zero=work dir of the zero-training run or None,
    finetune=work dir of the fine-tuning run or None, seeds=[work dirs of the same config with other seeds],
    baselines={rule: mIoU} or None). Rows whose every cell is empty are left out.
    """
    names = list(columns)
    head = ["stage"]
    for n in names:
        head += [f"{n}: mIoU (bg thr)", "ORACLE (thr)"]
    rows: list[list[str]] = []

    def add(label: str, cells: list[list[str]]) -> None:
        if any(c != "-" for cell in cells for c in cell):
            rows.append([label] + [c for cell in cells for c in cell])

    def map_cell(wd: Path | None) -> list[str]:
        v = _map(wd)
        return [pct(v), "-"]

    add("classifier mAP (small-data mode)", [map_cell(columns[n].get("main")) for n in names])
    add("classifier mAP, zero-training ImageNet head", [map_cell(columns[n].get("zero")) for n in names])
    add("classifier mAP, whole network fine-tuned (previous recipe)",
        [map_cell(columns[n].get("finetune")) for n in names])
    add("seed CAMs, zero-training ImageNet head (max over mapped rows)",
        [_cam_cells(read_metrics(columns[n]["zero"], "make_cam") if columns[n].get("zero") else None)
         for n in names])
    add("seed CAMs, whole network fine-tuned (previous recipe)",
        [_cam_cells(read_metrics(columns[n]["finetune"], "make_cam") if columns[n].get("finetune") else None)
         for n in names])
    for stage, label in CAM_STAGES:
        add(label, [_cam_cells(read_metrics(columns[n]["main"], stage)) for n in names])
    for stage, label in MASK_STAGES:
        add(label, [_mask_cells(read_metrics(columns[n]["main"], stage)) for n in names])
    spread_cells = []
    for n in names:
        sp = seed_spread([columns[n]["main"], *columns[n].get("seeds", [])]) if columns[n].get("seeds") else None
        spread_cells.append([f"{pct(sp[0])} ({pct(sp[1])}-{pct(sp[2])}, {sp[3]} seeds)" if sp else "-", "-"])
    add("seed CAMs over training seeds: mean (min-max)", spread_cells)
    rules = [r for n in names for r in (columns[n].get("baselines") or {})]
    for rule in dict.fromkeys(rules):
        add(f"baseline, no model: {rule}",
            [[f"{100 * columns[n]['baselines'][rule]:.1f}" if rule in (columns[n].get("baselines") or {}) else "-",
              "-"] for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def targets_lines(held: dict[str, Any]) -> list[str]:
    """Issue 16's targets on the held-out photos, each with 'met' / 'not met' from the numbers."""
    main = held["main"]
    out = []
    m = _map(main)
    if m is not None:
        out.append(f"- classifier mAP >= 60: {pct(m)} -> {'met' if m >= 0.60 else 'NOT met'}")
    seeds = read_metrics(main, "make_cam")
    ell = (held.get("baselines") or {}).get("first label, centred ellipse")
    if seeds and ell is not None:
        gap = seeds["miou"] - ell
        out.append(f"- seed CAMs beat the ellipse baseline by >= 10 points: {pct(seeds['miou'])} vs {100 * ell:.1f} "
                   f"(+{100 * gap:.1f}) -> {'met' if gap >= 0.10 else 'NOT met'}")
    if seeds:
        for stage, label in [("propagate_par", "PAR"), ("propagate", "random walk")]:
            r = read_metrics(main, stage)
            if r:
                d = r["miou"] - seeds["miou"]
                out.append(f"- {label} adds to the seeds: {pct(r['miou'])} vs {pct(seeds['miou'])} ({100 * d:+.1f}) -> "
                           f"{'met' if d > 0 else 'NOT met'}")
        crf, nocrf = read_metrics(main, "make_pseudo_crf"), read_metrics(main, "make_pseudo")
        if crf:
            # Seeds decide every pixel; pseudo masks leave a band undecided. Only 'undecided counted wrong' compares.
            d_ex, d_wr = crf["miou"] - seeds["miou"], crf["miou_ignore_as_wrong"] - seeds["miou"]
            out.append(f"- CRF (pseudo masks from PAR + CRF) adds to the seeds: "
                       f"{pct(crf['miou_ignore_as_wrong'])} with undecided pixels counted wrong "
                       f"vs {pct(seeds['miou'])} ({100 * d_wr:+.1f}) -> "
                       f"{'met' if d_wr > 0 else 'NOT met'} (with the {pct(crf['ignored_share'])} % undecided pixels "
                       f"excluded: {pct(crf['miou'])}, {100 * d_ex:+.1f}, not comparable)")
        if crf and nocrf:
            out.append(f"- CRF over the same pseudo masks without it: {pct(crf['miou'])} vs {pct(nocrf['miou'])} "
                       f"undecided excluded ({100 * (crf['miou'] - nocrf['miou']):+.1f}); "
                       f"{pct(crf['miou_ignore_as_wrong'])} vs {pct(nocrf['miou_ignore_as_wrong'])} counted wrong "
                       f"({100 * (crf['miou_ignore_as_wrong'] - nocrf['miou_ignore_as_wrong']):+.1f})")
    return out


def same_weights(a: Path, b: Path) -> bool | None:
    """Whether two train_cls runs wrote byte-identical final weights (None when either is missing)."""
    fa, fb = Path(a) / "train_cls" / "final.pth", Path(b) / "train_cls" / "final.pth"
    if not (fa.is_file() and fb.is_file()):
        return None
    import torch
    sa, sb = torch.load(fa, map_location="cpu"), torch.load(fb, map_location="cpu")
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


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


def start_run(threads: int | None) -> None:
    """What every benchmark does first: INFO logging, and ``threads`` torch threads when given (0/None: torch's
    own choice)."""
    from wsss.log import setup_logging

    setup_logging("INFO")
    if threads:
        import torch
        torch.set_num_threads(threads)


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
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--figure", default="docs/img/real_examples.png", help="'' to skip the picture")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="overrides for every variant, e.g. train_cls.iters=20")
    p.add_argument("--debias", action="store_true", help="also run biased-object removal (REAL_DEBIAS) on the "
                   "seeds of the heldout / seed1 / seed2 variants and print its table")
    p.add_argument("--report-only", action="store_true", help="print the tables from existing artifacts")
    args = p.parse_args(argv)
    # The configs name the data relative to the repo root ('../shared/data/...'), like every tool run from there.
    work_root = Path(args.work_root).absolute()
    figure = Path(args.figure).absolute() if args.figure else None
    os.chdir(ROOT)

    from wsss.data.build import build_dataset
    from wsss.pipeline import format_summary, parse_pipeline, run_pipeline

    start_run(args.threads)
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
        config, overrides = VARIANTS[n]
        cfg = load_config(str(ROOT / config), {**overrides, **(args.cfg_options or {})}, str(wd))
        cfgs[n], work_dirs[n] = cfg, wd
        if not args.report_only:
            t0 = time.time()
            results = run_pipeline(cfg)
            log.info("%s: pipeline done in %.0f s\n%s", n, time.time() - t0, format_summary(results))
            if args.debias and n in DEBIAS_RUNS:
                from stages import debias

                debias.run(load_config(str(ROOT / config), {**overrides, **(args.cfg_options or {}),
                                                            "debias": dict(REAL_DEBIAS)}, str(wd)))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    def baselines(n: str) -> dict[str, float] | None:
        return label_baselines(build_dataset(cfgs[n].data, cfgs[n].data.cam_split)) if n in cfgs else None

    columns: dict[str, dict[str, Any]] = {}
    if "heldout" in work_dirs:
        columns["held-out (30 photos never seen)"] = dict(
            main=work_dirs["heldout"], zero=work_dirs.get("zero"), finetune=work_dirs.get("finetune"),
            seeds=[work_dirs[k] for k in ("seed1", "seed2") if k in work_dirs], baselines=baselines("heldout"))
    classic = "classic_rw" if "classic_rw" in work_dirs else "classic"
    if classic in work_dirs:
        columns["classic (the 96 training photos)"] = dict(
            main=work_dirs[classic], zero=work_dirs.get("zero_classic"), baselines=baselines(classic))
    cmd = "python benchmarks/quality_real.py" + (f" --threads {args.threads}" if args.threads else "") + \
          (f" --variants {args.variants}" if args.variants != DEFAULT_VARIANTS else "") + \
          (" --cfg-options " + " ".join(f"{k}={v}" for k, v in args.cfg_options.items()) if args.cfg_options else "")
    out = [f"`{cmd}` ({device_line(args.threads)}; {started:%Y-%m-%d}; load average {load_before:.1f} at start, "
           f"{load_after:.1f} at end)", "", protocol_table(columns), ""]
    held = next(iter(columns.values()), None) if "heldout" in work_dirs else None
    if held is not None:
        out += ["Targets (held-out photos):", ""] + targets_lines(held) + [""]
    if "heldout" in work_dirs and classic in work_dirs:
        same = same_weights(work_dirs["heldout"], work_dirs[classic])
        out += [f"Both columns use the same classifier weights (byte-identical final.pth): {same}", ""]
    if "heldout" in work_dirs:
        out += ["Per-class IoU, held-out photos (classes with ground-truth pixels; configured thresholds; "
                "pseudo masks with undecided pixels excluded):", "",
                per_class_table(work_dirs["heldout"]), ""]
    if args.debias and any(n in work_dirs for n in DEBIAS_RUNS):
        out += [f"Biased-object removal on the held-out seeds ({REAL_DEBIAS['clusters']} clusters of the frozen "
                f"lite0 features, CAM coverage at {REAL_DEBIAS['cam_threshold']}):", "", debias_table(work_dirs), ""]
    if any(b in work_dirs for _, b in WOOD_PAIRS):
        out += ["W-OoD (coco128_small_wood.py: the 26 no-class training photos as OoD candidates, the 16 hardest "
                "mined at iteration 150 of 300), against the plain runs of the same seeds:", "",
                wood_table(work_dirs), ""]
    main_names = [n for n in ("heldout", classic) if n in work_dirs] or names[:1]
    stage_names = [e.name for e in parse_pipeline(cfgs[main_names[0]])]
    out += ["Wall time per stage (seconds):", "", timing_table({n: work_dirs[n] for n in main_names}, stage_names)]
    if figure is not None and "heldout" in cfgs:
        fig = example_figure(cfgs["heldout"], figure)
        out += ["", f"Figure: {fig} ({fig.stat().st_size // 1024} KB)"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
