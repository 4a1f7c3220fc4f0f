"""Seed quality of ToCo vs the same ViT trained with the classification loss only, on the synthetic set.

    python benchmarks/quality_toco.py [--out-dir /tmp/wsss_quality_toco] [--num-train 300] [--num-val 100]
        [--size 128] [--data-seed 0] [--iters 300] [--seed 0] [--threads 1] [--ops-backend auto|torch|cpp]
        [--variants toco,cls_only,cls_aux,toco_aug,toco_seg] [--summary]

For each variant the real stages run in-process on the same generated data with the same seed and number of
iterations: ``stages.train_cls`` then ``stages.make_cam`` (CAMs on the train split at the config's scales +
flip). Variants (configs/synthetic/):

* ``toco``: toco_vit_tiny.py, classification + auxiliary classification + PTC + CTC;
* ``cls_only``: toco_vit_tiny_clsonly.py, the same ViT with the final classification loss only;
* ``cls_aux`` (optional ablation): classification + auxiliary classification, no token contrast;
* ``toco_aug``: toco with ToCo's augmentation (``train_cls.augmentation='toco'``: three views, jitter
  0.4/0.4/0.2/0.1, grayscale, blur, a RandomResizedCrop second global view with solarize);
* ``toco_seg``: toco_vit_tiny_seg.py, ToCo's augmentation + its segmentation branch; also runs
  ``stages.seg_cam`` and reports the decoder's mIoU next to its CAMs' (both on train).

Reported per variant: seed mIoU on train at the configured background threshold (``cam.bg_threshold``) and the
oracle threshold (swept on ground truth: an upper bound, not a result), val mAP of the classifier, the
over-smoothing diagnostic (mean |cos| between the final patch tokens of an image, on val images; 1 = all
tokens alike), the last logged losses and the wall / main-process CPU time of each stage. Prints a markdown table for
docs/benchmarks.md. A variant whose stages are complete in ``--out-dir`` is not recomputed.
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

import torch

import wsss.models.toco  # noqa: F401  (registers cls_model type 'toco')
from stages import make_cam, seg_cam, train_cls
from wsss.cam.multiscale import normalise_images
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.log import setup_logging

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "toco": ("configs/synthetic/toco_vit_tiny.py", {}),
    "cls_only": ("configs/synthetic/toco_vit_tiny_clsonly.py", {}),
    "cls_aux": ("configs/synthetic/toco_vit_tiny.py", {"cls_model.ptc_weight": 0.0, "cls_model.ctc_weight": 0.0}),
    "toco_aug": ("configs/synthetic/toco_vit_tiny.py", {"train_cls.augmentation": "toco"}),
    "toco_seg": ("configs/synthetic/toco_vit_tiny_seg.py", {}),
}
log = logging.getLogger("quality_toco")


@torch.no_grad()
def token_similarity(cfg, num_images: int = 32) -> float:
    """Mean |cos| between distinct final patch tokens of each val image (resized to the training crop)."""
    ds = build_dataset(cfg.data, cfg.data.val_split)
    model = make_cam.load_model(cfg, ds.num_classes - 1, torch.device("cpu"))
    size = int(cfg.train_cls.crop_size)
    sims = []
    for i in ds.ids[:num_images]:
        img = torch.from_numpy(ds.image(i))[None]
        x = torch.nn.functional.interpolate(normalise_images(img), size=(size, size), mode="bilinear",
                                            align_corners=False)
        t = torch.nn.functional.normalize(model.encode(x)["patches"].flatten(2)[0].T, dim=1)  # [N, D]
        cos = (t @ t.T).abs()
        n = cos.shape[0]
        sims.append(float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))))
    return sum(sims) / len(sims)


def run_variant(name: str, data_root: Path, out_dir: Path, iters: int | None, seed: int | None = None,
                extra: dict | None = None, compute: bool = True) -> dict | None:
    """Train, make CAMs and score one variant; a finished variant's saved row is returned as is.

    ``extra``: options on top of the variant's own (e.g. the crop of another data regime); they are saved in the
    row, and a saved row made with other options is refused rather than returned as if it matched.
    ``compute=False`` (report only): None instead of training when no row is saved.
    """
    config, overrides = VARIANTS[name]
    overrides = {**overrides, **(extra or {})}
    options = {"data.root": str(data_root), **overrides}
    if iters is not None:
        options["train_cls.iters"] = iters
    if seed is not None:
        options["seed"] = seed
    cfg = load_config(ROOT / config, cfg_options=options,
                      work_dir=out_dir / (name if seed is None else f"{name}_seed{seed}"))
    row_file = Path(cfg.work_dir) / "quality_row.json"
    if row_file.is_file():
        row = json.loads(row_file.read_text())
        if row.get("overrides", {}) != overrides:
            raise SystemExit(f"{row_file}: made with options {row.get('overrides')}, asked for {overrides}; "
                             "delete its folder to recompute")
        if cfg.cls_model.get("seg_head") and "seg_val_miou" not in row:
            row.update(seg_on_val(cfg))
            row_file.write_text(json.dumps(row, indent=2))
        return row
    if not compute:
        return None
    t0, c0 = time.time(), time.process_time()
    train_cls.run(cfg, resume=True)
    t1, c1 = time.time(), time.process_time()
    make_cam.run(cfg)
    t2, c2 = time.time(), time.process_time()
    seg = {}
    if cfg.cls_model.get("seg_head"):
        seg_cam.run(cfg)
        m = json.loads((Path(cfg.work_dir) / "seg_cam" / "metrics.json").read_text())
        seg = {"seg_miou": m["miou"], "seg_bg_threshold": m["bg_threshold"], "seg_oracle_miou": m["oracle"]["miou"],
               "seg_oracle_threshold": m["oracle"]["threshold"]}
    cam_metrics = json.loads((Path(cfg.work_dir) / "make_cam" / "metrics.json").read_text())
    cls_metrics = json.loads((Path(cfg.work_dir) / "train_cls" / "metrics.json").read_text())
    last = torch.load(Path(cfg.work_dir) / "train_cls" / "last.pth", map_location="cpu", weights_only=False)
    history = (last.get("extra") or {}).get("history") or [{}]
    row = {"variant": name, "seed": int(cfg.seed), "config": config, "overrides": overrides,
           "iters": int(cfg.train_cls.iters), "miou": cam_metrics["miou"], "bg_threshold": cam_metrics["bg_threshold"],
           "oracle_miou": cam_metrics["oracle"]["miou"], "oracle_threshold": cam_metrics["oracle"]["threshold"],
           "val_map": cls_metrics.get("val_map"), "token_cos": token_similarity(cfg),
           "last_losses": {k: v for k, v in history[-1].items() if k not in ("iter", "lr")},
           "train_s": round(t1 - t0, 1), "cam_s": round(t2 - t1, 1),
           "train_cpu_s": round(c1 - c0, 1), "cam_cpu_s": round(c2 - c1, 1), **seg}
    if seg:
        row.update(seg_on_val(cfg))
    row_file.write_text(json.dumps(row, indent=2))
    return row


def seg_on_val(cfg) -> dict:
    """The seg branch as the final segmenter: seg_cam on val without image labels (``labels='predicted'``),
    in its own folder (``seg_cam.checkpoint`` names the weights, so it needs no train_cls there)."""
    from wsss.config import Config

    val = Config(cfg.to_dict())
    val.work_dir = str(Path(cfg.work_dir) / "val_predicted")
    val.seg_cam = {**dict(cfg.get("seg_cam") or {}), "split": cfg.data.val_split, "labels": "predicted",
                   "checkpoint": str(Path(cfg.work_dir) / "train_cls" / "final.pth")}
    seg_cam.run(val)
    m = json.loads((Path(val.work_dir) / "seg_cam" / "metrics.json").read_text())
    return {"seg_val_miou": m["miou"], "seg_val_oracle_miou": m["oracle"]["miou"]}


def markdown(rows: list[dict]) -> str:
    head = ("| variant | seed mIoU @ bg thr | oracle mIoU (thr) | val mAP | final-token mean abs cos "
            "| last losses (mean of the last 25 its) | train s wall (CPU) | CAM s wall (CPU) "
            "| seg branch mIoU @ thr | seg oracle (thr) |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        losses = ", ".join(f"{k} {v:.3f}" for k, v in r["last_losses"].items())
        lines.append(f"| {r['variant']} (seed {r.get('seed', 0)}) | {100 * r['miou']:.2f} @ {r['bg_threshold']:.2f} | "
                     f"{100 * r['oracle_miou']:.2f} ({r['oracle_threshold']:.2f}) | "
                     f"{100 * (r['val_map'] or 0):.2f} | {r['token_cos']:.3f} | {losses} | "
                     f"{r['train_s']:.0f} ({r['train_cpu_s']:.0f}) | {r['cam_s']:.0f} ({r['cam_cpu_s']:.0f}) | "
                     + (f"{100 * r['seg_miou']:.2f} @ {r['seg_bg_threshold']:.2f} | "
                        f"{100 * r['seg_oracle_miou']:.2f} ({r['seg_oracle_threshold']:.2f}) |"
                        if "seg_miou" in r else "- | - |"))
    return "\n".join(lines)


def summary(out_dir: Path) -> str:
    """Mean +- sample std over the seeds of every variant found in ``out_dir`` (``*/quality_row.json``)."""
    import statistics

    by_variant: dict[str, list[dict]] = {}
    for f in sorted(out_dir.glob("*/quality_row.json")):
        r = json.loads(f.read_text())
        by_variant.setdefault(r["variant"], []).append(r)

    def ms(rows: list[dict], key: str) -> str:
        vals = [100 * r[key] for r in rows if r.get(key) is not None]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.2f} +- {sd:.2f}"

    lines = ["| variant | seeds | CAM mIoU @ bg thr (train) | CAM oracle mIoU | seg branch mIoU @ 0.5 (train, image "
             "labels) | seg oracle mIoU | seg branch mIoU @ 0.5 (val, no labels) |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in by_variant.items():
        seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        lines.append(f"| {name} | {seeds} | {ms(rows, 'miou')} | {ms(rows, 'oracle_miou')} | "
                     f"{ms(rows, 'seg_miou')} | {ms(rows, 'seg_oracle_miou')} | {ms(rows, 'seg_val_miou')} |")
    if (out_dir / "data" / "synthetic.json").is_file():  # no-model floors (image labels, no network)
        import importlib.util

        spec = importlib.util.spec_from_file_location("quality_real", Path(__file__).with_name("quality_real.py"))
        quality_real = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(quality_real)
        cfg = load_config(ROOT / VARIANTS["toco"][0], cfg_options={"data.root": str(out_dir / "data")})
        train = quality_real.label_baselines(build_dataset(cfg.data, cfg.data.train_split))
        val = quality_real.label_baselines(build_dataset(cfg.data, cfg.data.val_split))
        for rule in train:
            lines.append(f"| no model: {rule} | - | {100 * train[rule]:.2f} | - | {100 * train[rule]:.2f} | - | "
                         f"{100 * val[rule]:.2f} (image labels) |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="/tmp/wsss_quality_toco")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=None, help="override train_cls.iters of every variant")
    p.add_argument("--seed", type=int, default=None, help="override the training seed (config: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a busy CPU)")
    p.add_argument("--ops-backend", default=None, help="WSSS_OPS for PAR (cpp: the C++ CPU kernel)")
    p.add_argument("--variants", default="toco,cls_only")
    p.add_argument("--summary", action="store_true", help="only print mean +- std over the seeds in --out-dir")
    args = p.parse_args()
    if args.summary:
        print(summary(Path(args.out_dir)))
        return
    setup_logging("INFO")
    torch.set_num_threads(args.threads)
    if args.ops_backend:
        os.environ["WSSS_OPS"] = args.ops_backend
    out = Path(args.out_dir)
    data_root = out / "data"
    if not (data_root / "synthetic.json").is_file():
        generate_synthetic(data_root, args.num_train, args.num_val, args.data_seed, args.size)
    rows = [run_variant(v.strip(), data_root, out, args.iters, args.seed)
            for v in args.variants.split(",") if v.strip()]
    (out / f"results{'' if args.seed is None else f'_seed{args.seed}'}.json").write_text(json.dumps(rows, indent=2))
    device = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s))"
    print(f"\n{datetime.date.today()} | {device} | synthetic {args.num_train} train / {args.num_val} val, "
          f"size {args.size}, data seed {args.data_seed}, WSSS_OPS={os.environ.get('WSSS_OPS', 'auto')}\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
