"""Benchmark the dense-CRF stage: images/s with 1 vs all workers, and what CRF buys over plain thresholding.

    python benchmarks/bench_crf.py [--num-images 48] [--size 128] [--seed 0] [--workdir DIR]
        [--cam-dir WORK/make_cam/cams --data-root DATA]     # real CAMs instead of degraded ground truth
        [--data-config configs/real/coco128_lite0.py --min-classes 2]   # real photos, degraded ground truth
        [--blur-sigma 8]                                    # CAMs = blurred ground-truth masks instead

Speed: the crf stage's per-image work (load CAM + image, dense CRF, save) through its process pool, once
with ``num_workers=1`` and once with every core; the ratio is the scaling.

Quality: pseudo-mask mIoU on train (stages/make_pseudo.py, ignored pixels excluded / counted wrong, share
ignored) for plain thresholding vs the same rule with CRF, for a single background threshold and for IRN's
ignore band, each with both unaries ('softmax' and IRN's hard-decision 'labels'), plus the published CRF
presets. The 'oracle' rows pick the threshold by sweeping against ground
truth: an upper bound, not a result.

Without ``--cam-dir`` the CAMs are made from the synthetic ground truth, degraded the way real CAMs are
wrong: low resolution (stride 8) and blur, activation concentrated on random 'discriminative' parts,
leakage into the surroundings (a blurred, dilated copy at 0.35), pixel noise; max-normalised per class.
Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from wsss.artifacts import StageDir
from wsss.cam.io import load_cam, save_cam
from wsss.config import Config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.eval.mask_eval import MaskScorer
from wsss.refine.crf import PRESETS, CRFParams
from wsss.refine.pseudo import PseudoParams, make_pseudo_mask, restrict_to_labels
from stages import make_pseudo
from stages.crf import CRFTask, refine_one
from wsss.engine.pool import map_images, resolve_workers

DEFAULT_THRESHOLD = 0.30


def degraded_cams(mask: np.ndarray, keys: list[int], rng: np.random.Generator) -> np.ndarray:
    """Fake CAMs [K, H, W] float32 in [0, 1] from a ground-truth mask (see the module doc)."""
    h, w = mask.shape
    out = []
    for k in keys:
        obj = (mask == k).astype(np.float32)
        part = cv2.resize(rng.uniform(0, 1, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        core = obj * np.clip(0.25 + 0.75 * part, 0, 1)
        low = cv2.resize(core, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        up = cv2.GaussianBlur(cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR), (0, 0), h / 40)
        r = max(1, h // 12)
        leak = cv2.GaussianBlur(cv2.dilate(obj, np.ones((2 * r + 1, 2 * r + 1), np.uint8)), (0, 0), h / 16) * 0.35
        cam = np.clip(np.maximum(up, leak) + rng.normal(0, 0.05, (h, w)), 0, None)
        out.append(cam / max(float(cam.max()), 1e-6))
    return np.stack(out).astype(np.float32) if out else np.zeros((0, h, w), np.float32)


def blurred_cams(mask: np.ndarray, keys: list[int], sigma: float) -> np.ndarray:
    """CAMs [K, H, W] float32 = each class's ground-truth mask blurred (Gaussian, ``sigma`` px), max-normalised:
    no leakage above a threshold, objects fade out at their edges (the case where the softmax unary erodes)."""
    h, w = mask.shape
    out = [cv2.GaussianBlur((mask == k).astype(np.float32), (0, 0), sigma) for k in keys]
    out = [c / max(float(c.max()), 1e-6) for c in out]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, h, w), np.float32)


def prepare(work: Path, num_images: int, size: int, seed: int, cam_dir: Path | None, data_root: Path | None,
            data_config: Path | None = None, min_classes: int = 1, blur_sigma: float | None = None):
    """A dataset and a complete 'make_cam' stage folder; returns (data cfg dict, dataset, cam source text)."""
    if data_config is not None:  # real photos of a dataset config; CAMs degraded from their ground truth
        from wsss.config import load_config, to_plain
        data = to_plain(load_config(data_config).data)
        split = str(data.get("cam_split") or data.get("train_split", "train"))
        data["cam_split"] = split
        full = build_dataset(data, split)
        chosen = [i for i in full.ids if len(full.labels.get(i, [])) >= min_classes][:num_images]
        work.mkdir(parents=True, exist_ok=True)
        (work / "bench_ids.txt").write_text("".join(f"{i}\n" for i in chosen))  # a split of exactly these photos
        data["split_files"] = {**dict(data.get("split_files") or {}), "bench": str(work / "bench_ids.txt")}
        data["cam_split"] = "bench"
        ds = build_dataset(data, "bench")
        source = (f"{len(chosen)} photos of {data_config} with >= {min_classes} labelled classes, CAMs made from "
                  "their ground truth by degradation")
    elif cam_dir is not None:
        data = dict(type="synthetic", root=str(data_root), cam_split="train")
        ds = build_dataset(data, "train")
        ds.ids = [i for i in ds.ids if (cam_dir / f"{i}.npz").is_file()][:num_images]
        source = f"real CAMs from {cam_dir}"
    else:
        data_root = work / "data"
        generate_synthetic(data_root, num_train=num_images, num_val=0, seed=seed, size=size)
        data = dict(type="synthetic", root=str(data_root), cam_split="train")
        ds = build_dataset(data, "train")
        source = "CAMs made from ground truth by degradation (no trained CAMs used)"
    sd = StageDir(work / "w", "make_cam", "bench")
    sd.begin(force=True)
    rng = np.random.default_rng(seed)
    for i in ds.ids:
        if cam_dir is not None:
            keys, cams = load_cam(cam_dir / f"{i}.npz")
        else:
            keys = ds.labels[i]
            cams = (degraded_cams(ds.mask(i), keys, rng) if blur_sigma is None
                    else blurred_cams(ds.mask(i), keys, blur_sigma))
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams)
    sd.finish(items=len(ds.ids))
    return data, ds, source


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) children, user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_speed(work: Path, ds, workers: int, repeats: int = 2) -> tuple[float, float]:
    """(images/s, CPU ms per image) of the crf stage's per-image work with ``workers`` processes; best of
    ``repeats`` runs (other jobs on a shared machine only ever slow a run down)."""
    best = (0.0, float("nan"))
    for r in range(repeats):
        out = work / f"speed_{workers}_{r}"
        tasks = [CRFTask(i, str(ds.image_path(i)), str(work / "w" / "make_cam" / "cams" / f"{i}.npz"),
                         str(out / f"{i}.npz"), DEFAULT_THRESHOLD, None, CRFParams()) for i in ds.ids]
        c0, t0 = _cpu_seconds(), time.perf_counter()
        map_images(refine_one, tasks, workers, desc=f"crf x{workers}")
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        if len(tasks) / wall > best[0]:
            best = (len(tasks) / wall, 1000 * cpu / len(tasks))
    return best


def run_pseudo(work: Path, data: dict, name: str, workers: int, **pseudo) -> dict:
    """Run the real make_pseudo stage with these settings; returns its metrics."""
    section = dict(input="make_cam", bg_threshold=None, bg_power=None, conf_fg=None, conf_bg=None,
                   min_confidence=None, use_crf=False, crf={}, num_workers=workers, name=name)
    section.update(pseudo)
    cfg = Config(dict(work_dir=str(work / "w"), seed=0, data=data, pseudo=section))
    return make_pseudo.run(cfg, force=True)["metrics"]


def sweep(ds, cams_dir: Path, thresholds, crf: CRFParams | None) -> tuple[float, float]:
    """Oracle: the threshold with the best mIoU (ignore excluded) and that mIoU, in memory."""
    best = (float("nan"), -1.0)
    loaded = {i: restrict_to_labels(*load_cam(cams_dir / f"{i}.npz"), ds.labels[i]) for i in ds.ids}
    images = {i: ds.image(i) for i in ds.ids} if crf else {}
    for t in thresholds:
        scorer = MaskScorer(ds.num_classes)
        p = PseudoParams(bg_threshold=t, conf_fg=None, conf_bg=None, crf=crf)
        for i in ds.ids:
            keys, cams = loaded[i]
            scorer.update(make_pseudo_mask(keys, cams, p, images.get(i)), ds.mask(i))
        m = scorer.summary()["miou"]
        if m > best[1]:
            best = (t, m)
    return best


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-images", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--cam-dir", type=Path, default=None, help="use these CAM files (needs --data-root)")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--data-config", type=Path, default=None,
                    help="real photos: a config whose data section names them (e.g. configs/real/coco128_lite0.py); "
                         "CAMs are degraded from their ground truth")
    ap.add_argument("--min-classes", type=int, default=1, help="with --data-config: photos with >= this many classes")
    ap.add_argument("--blur-sigma", type=float, default=None,
                    help="CAMs = ground-truth masks blurred with this sigma (px) instead of the degradation")
    ap.add_argument("--no-sweep", action="store_true", help="skip the oracle threshold sweeps")
    ap.add_argument("--speed-only", action="store_true", help="only the 1 vs all workers timing")
    ap.add_argument("--no-speed", action="store_true", help="skip the timing (quality tables only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cam_dir is not None and args.data_root is None:
        ap.error("--cam-dir needs --data-root")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_crf_"))
    data, ds, source = prepare(work, args.num_images, args.size, args.seed, args.cam_dir, args.data_root,
                               args.data_config, args.min_classes, args.blur_sigma)
    if args.blur_sigma is not None:
        source += f" (blurred masks, sigma {args.blur_sigma:g} px, instead of the degradation)"
    all_cores = resolve_workers(0)
    h, w = ds.image(ds.ids[0]).shape[:2]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"# bench_crf: {len(ds.ids)} images {h}x{w}, {source}")
    print(f"# machine: {platform.processor() or platform.machine()}, {all_cores} cores, load average {load:.1f} "
          f"at start, python {sys.version.split()[0]}\n")

    if not args.no_speed:
        speeds = {n: bench_speed(work, ds, n) for n in sorted({1, all_cores})}
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = float("nan")
        print("| workers | images/s | speed-up | CPU ms / image |")
        print("|---|---|---|---|")
        for n, (v, cpu) in speeds.items():
            print(f"| {n} | {v:.1f} | {v / speeds[1][0]:.2f}x | {cpu:.0f} |")
        print(f"\n(load average {load:.1f} after the timing runs)\n")
    if args.speed_only:
        return 0

    rows = []
    t = DEFAULT_THRESHOLD
    soft, hard = dict(unary="softmax"), dict(unary="labels")
    for label, kw in [
        (f"threshold {t}", dict(bg_threshold=t)),
        (f"threshold {t} + CRF (IRN params, softmax unary)", dict(bg_threshold=t, use_crf=True, crf=soft)),
        (f"threshold {t} + CRF (IRN params, labels unary = IRN)", dict(bg_threshold=t, use_crf=True, crf=hard)),
        ("ignore band 0.30/0.05 (IRN)", dict(conf_fg=0.30, conf_bg=0.05)),
        ("ignore band 0.30/0.05 + CRF (softmax unary)", dict(conf_fg=0.30, conf_bg=0.05, use_crf=True, crf=soft)),
        ("ignore band 0.30/0.05 + CRF (labels unary = IRN, default)",
         dict(conf_fg=0.30, conf_bg=0.05, use_crf=True, crf=hard)),
    ] + [(f"threshold {t} + CRF ({name} params, {p.unary} unary)",
          dict(bg_threshold=t, use_crf=True, crf=dataclasses.asdict(p)))
         for name, p in PRESETS.items() if name != "irn"]:
        rows.append((label, run_pseudo(work, data, "bench_pseudo", all_cores, **kw)))
    if not args.no_sweep:
        thresholds = [round(x, 2) for x in np.arange(0.10, 0.61, 0.05)]
        cams_dir = work / "w" / "make_cam" / "cams"
        for label, crf in (("threshold", None), ("threshold + CRF, softmax unary", CRFParams(unary="softmax")),
                           ("threshold + CRF, labels unary", CRFParams(unary="labels"))):
            bt, bm = sweep(ds, cams_dir, thresholds, crf)
            rows.append((f"ORACLE: best {label} ({bt}, swept on GT)", {"miou": bm}))
    print("| pseudo masks (train) | mIoU, ignore excluded | mIoU, ignore counted wrong | ignored |")
    print("|---|---|---|---|")
    for label, m in rows:
        print(f"| {label} | {pct(m.get('miou'))} | {pct(m.get('miou_ignore_as_wrong'))} | "
              f"{pct(m.get('ignored_share'))}{'' if m.get('ignored_share') is None else ' %'} |")
    base, with_soft, with_hard = rows[0][1]["miou"], rows[1][1]["miou"], rows[2][1]["miou"]
    print(f"\nCRF gain at threshold {t}: {100 * (with_soft - base):+.1f} mIoU points (softmax unary), "
          f"{100 * (with_hard - base):+.1f} (labels unary)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
