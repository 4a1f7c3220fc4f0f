"""Stage train_seg: train the segmentation network on pseudo masks (or on ground truth, the upper bound).

Reads ``<work_dir>/<train_seg.masks>/masks/<id>.png`` (pseudo masks of any mask-producing stage, default
``make_pseudo``) or, with ``masks='gt'``, the dataset's own masks: the fully supervised upper bound that reports
divide the WSSS mIoU by. ``train_seg.name`` renames the stage folder (``train_seg_gt``) so both coexist.

Writes ``<work_dir>/<name>/``: ``last.pth`` every ``ckpt_interval`` iterations (model, optimizer, scheduler,
AMP scaler, iteration, RNG states, loss curve), ``final.pth`` (weights + the ``seg_model`` config and class
names, all evaluation needs), ``metrics.json`` (loss curve), ``train.log``; with ``eval_points=N`` also
``curve.json``: single-scale val mIoU (and per-class IoU) after N evenly spaced points of the schedule (4: 25/50/
75/100 %) and whether the curve is flat at the end (last two points within 1 mIoU): the convergence check of the
fully supervised bound that eval_seg applies before printing a ratio. Measuring the curve changes no weight, so
``eval_points`` is left out of the stage's config hash.

Training: cross-entropy with ignore 255 (plus, with ``ocr=dict(weight, margin)``, the out-of-candidate
rectification loss of wsss.losses.ocr against the image-level labels), SGD (backbone ``lr``, head
``lr * head_lr_mult``), poly schedule,
albumentations scale / crop / flip / colour jitter, AMP on CUDA, DDP under torchrun (``batch_size`` is per
GPU). ``--resume`` continues from ``last.pth`` bit-for-bit on CPU: the batch order comes from
:class:`ResumableBatchSampler` and each sample's augmentation from (seed, epoch, index), and the DataLoader gets
its own generator so creating it consumes no global randomness.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss import dist
from wsss.artifacts import atomic_path, write_json_atomic
from wsss.config import Config, to_plain
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.data.palette import IGNORE_INDEX, load_mask
from wsss.data.torch_sets import SegmentationSet
from wsss.data.transforms import segmentation_transform
from wsss.engine.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from wsss.log import log_to
from wsss.engine.sampling import EpochIndexed, ResumableBatchSampler
from wsss.engine.schedule import build_scheduler
from wsss.engine.seed import seed_everything
from wsss.engine.stage import close_stage, open_stage, stage_run
from wsss.errors import InputError, StageSkipped, WSSSError
from wsss.eval.bound import curve_converged
from wsss.eval.confusion import ConfusionMatrix
from wsss.eval.seg_infer import image_to_tensor, predict_probs
from wsss.losses.ocr import REDUCTIONS, candidate_mask, ocr_loss
from wsss.models.seg import SEG_MODEL_DEFAULTS, build_segmentor
from wsss.schema import Rule, Schema

log = logging.getLogger(__name__)

STAGE = "train_seg"
CONFIG_KEYS = ("data", "seg_model", "train_seg")

#: Defaults of the ``train_seg`` section (configs/_base_/schedules/seg_*.py repeat them for VOC/COCO).
DEFAULTS: dict[str, Any] = dict(
    name=None, masks="make_pseudo", split=None, iters=20000, batch_size=16, lr=0.007, head_lr_mult=10.0,
    momentum=0.9, weight_decay=1e-4, lr_schedule="poly", power=0.9, warmup_iters=0, crop_size=512,
    scale_range=(0.5, 2.0), color_jitter=0.3, ckpt_interval=1000, log_interval=50, num_workers=4, amp=True,
    eval_points=0,
    ocr=None,
)
#: The val-mIoU curve written with ``eval_points`` (eval_seg reads it to judge the fully supervised bound).
CURVE_FILE = "curve.json"


#: What the ``train_seg`` section accepts (wsss/schema.py); intervals, workers and the folder name are not
#: part of the stage's identity.
SCHEMA = Schema("train_seg", DEFAULTS, rules=dict(
    name=Rule(kind="str"), masks=Rule(kind="str"), split=Rule(kind="str"), iters=Rule(min=1),
    batch_size=Rule(min=1), lr=Rule(gt=0), head_lr_mult=Rule(gt=0), momentum=Rule(min=0, max=1),
    weight_decay=Rule(min=0), lr_schedule=Rule(choices=("poly", "cosine", "constant")), warmup_iters=Rule(min=0),
    crop_size=Rule(min=8), scale_range=Rule(gt=0, nonempty=True), color_jitter=Rule(min=0),
    ckpt_interval=Rule(min=1), log_interval=Rule(min=1), num_workers=Rule(min=0), eval_points=Rule(min=0)),
    runtime=("ckpt_interval", "log_interval", "num_workers", "name"), evaluation=("eval_points",))
SCHEMAS = (SCHEMA,)

#: Keys of ``train_seg.ocr`` (out-of-candidate rectification, wsss.losses.ocr) and their defaults.
OCR_DEFAULTS: dict[str, Any] = dict(weight=1.0, margin=1.0, reduction="pixels")


def section(cfg: Config) -> dict[str, Any]:
    """The ``train_seg`` section with defaults filled in (unknown keys and wrong values are a one-line error)."""
    sec = SCHEMA.resolve(to_plain(cfg.get("train_seg") or {}))
    sec["ocr"] = ocr_settings(sec["ocr"])
    return sec


def ocr_settings(value: Any) -> dict[str, Any] | None:
    """``train_seg.ocr``: None / empty (off) or dict(weight=..., margin=..., reduction=...), defaults filled in
    (reduction: wsss.losses.ocr.REDUCTIONS)."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise WSSSError(f"train_seg.ocr must be a dict(weight=..., margin=...), got {value!r}")
    unknown = sorted(set(value) - set(OCR_DEFAULTS))
    if unknown:
        raise WSSSError(f"unknown train_seg.ocr key(s) {unknown}; expected some of {sorted(OCR_DEFAULTS)}")
    out = {**OCR_DEFAULTS, **value}
    try:
        out["weight"], out["margin"] = float(out["weight"]), float(out["margin"])
    except (TypeError, ValueError):
        raise WSSSError(f"train_seg.ocr weight and margin must be numbers, got {value!r}") from None
    if out["weight"] < 0 or out["margin"] < 0:
        raise WSSSError(f"train_seg.ocr weight and margin must be >= 0, got {out}")
    if out["reduction"] not in REDUCTIONS:
        raise WSSSError(f"train_seg.ocr.reduction must be one of {list(REDUCTIONS)}, got {out['reduction']!r}")
    return out


def stage_name(cfg: Config) -> str:
    """The stage folder: ``train_seg.name`` or 'train_seg' (``train_seg_gt`` for the upper bound)."""
    return section(cfg)["name"] or STAGE


def inputs(cfg: Config) -> list[str]:
    """The stage whose masks are trained on; none for ground truth."""
    masks = section(cfg)["masks"]
    return [] if masks == "gt" else [str(masks)]


def train_split(cfg: Config) -> str:
    """``train_seg.split``, else data.train_split for ground truth and data.cam_split for pseudo masks."""
    sec, data = section(cfg), cfg.get("data") or {}
    if sec["split"]:
        return str(sec["split"])
    if sec["masks"] == "gt":
        return str(data.get("train_split", "train"))
    return str(data.get("cam_split", data.get("train_split", "train")))


class _PseudoMasks:
    """``mask_fn`` reading ``<stage_dir>/masks/<id>.png`` (picklable, for DataLoader workers)."""

    def __init__(self, mask_dir: Path, num_classes: int) -> None:
        self.mask_dir, self.num_classes = mask_dir, num_classes

    def path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.png"

    def __call__(self, image_id: str) -> np.ndarray:
        return load_mask(self.path(image_id), self.num_classes)


def mask_source(cfg: Config, ds: SegDataset) -> Any:
    """The mask reader for training: ground truth or an earlier stage's masks (all checked to exist now,
    so a missing file fails before hours of training, not in the middle)."""
    masks = section(cfg)["masks"]
    if masks == "gt":
        if not ds.has_masks:
            raise StageSkipped(f"{stage_name(cfg)}: skipped, split '{ds.split}' of {ds.name} has no ground-truth "
                               f"masks to train the fully supervised bound on")
        return ds.mask
    reader = _PseudoMasks(Path(cfg.work_dir) / str(masks) / "masks", ds.num_classes)
    missing = [i for i in ds.ids if not reader.path(i).is_file()]
    if missing:
        raise InputError(reader.path(missing[0]), f"pseudo mask missing ({len(missing)} of {len(ds.ids)} ids of "
                                                  f"split '{ds.split}' have none); run stage '{masks}' on this split")
    return reader


def train_transform(sec: dict[str, Any]) -> Any:
    """Colour jitter on the uint8 image, then the shared scale / pad / crop / flip / normalise pipeline."""
    import albumentations as A

    geo = segmentation_transform(int(sec["crop_size"]), train=True, scale_range=tuple(sec["scale_range"]))
    cj = float(sec["color_jitter"])
    if cj <= 0:
        return geo
    return A.Compose([A.ColorJitter(brightness=cj, contrast=cj, saturation=cj, hue=min(0.05, cj), p=0.8), geo])


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels. logits [B, C, H, W], target [B, H, W] int64 (255 = ignore).

    Sum over labelled pixels / their count (at least 1): a crop with no labelled pixel gives 0 instead of
    NaN, and nothing waits for the GPU to say whether one exists.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp(min=1)


def eval_iterations(iters: int, points: int) -> list[int]:
    """The iterations after which the val curve is measured: ``points`` evenly spaced, the last one ``iters``
    (4 points of 300 iterations: 75, 150, 225, 300)."""
    if points <= 0 or iters <= 0:
        return []
    return sorted({max(1, round(iters * k / points)) for k in range(1, points + 1)})


@torch.no_grad()
def val_summary(model: torch.nn.Module, ds: SegDataset, device: torch.device) -> dict:
    """Single-scale whole-image mIoU summary of ``model`` on every image of ``ds`` (restores train mode).

    No randomness is drawn and BatchNorm statistics are frozen in eval mode, so measuring the curve leaves
    the weights and the RNG streams of training exactly as they were."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(ds.num_classes)
    for image_id in ds.ids:
        probs = predict_probs(model, image_to_tensor(ds.image(image_id)).to(device)).probs
        cm.update(probs[0].argmax(0).cpu().numpy().astype(np.uint8), ds.mask(image_id))
    model.train(was_training)
    return cm.summary(ds.class_names)


def curve_record(points: list[dict], iters: int) -> dict:
    """curve.json content: the points and the flat-at-the-end verdict of :func:`wsss.eval.bound.curve_converged`."""
    return {"iters": iters, "points": points, "converged": curve_converged([p["miou"] for p in points]),
            "rule": "last two points within 1 mIoU"}


def build_optimizer(model: torch.nn.Module, sec: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with two groups: pretrained backbone at ``lr``, new layers at ``lr * head_lr_mult``."""
    lr = float(sec["lr"])
    groups = [dict(params=model.backbone_parameters(), lr=lr),
              dict(params=model.head_parameters(), lr=lr * float(sec["head_lr_mult"]))]
    return torch.optim.SGD(groups, lr=lr, momentum=float(sec["momentum"]), weight_decay=float(sec["weight_decay"]))


def validate(cfg: Config) -> dict[str, Any]:
    """The checked ``train_seg`` section (before any stage of a pipeline runs; errors are one line)."""
    sec = section(cfg)
    sync_bn = dist.world_size() > 1 and dist.resolve_device(cfg.get("device", "auto")).type == "cuda"
    if int(sec["batch_size"]) < 2 and not sync_bn:
        raise WSSSError("train_seg.batch_size must be >= 2 per process (BatchNorm needs more than one image; "
                        "only multi-GPU runs, which use SyncBatchNorm, may use 1)")
    return sec


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False) -> dict:
    """Train (or resume) the segmentation net; returns the stage manifest."""
    sec = validate(cfg)
    name = stage_name(cfg)
    split = train_split(cfg)
    ds = build_dataset(cfg.data, split)
    masks = mask_source(cfg, ds)
    sd, done = open_stage(cfg, name, CONFIG_KEYS, inputs(cfg), force=force, datasets=[ds],
                          with_masks=sec["masks"] == "gt", schemas=SCHEMAS)
    if done:
        return sd.manifest
    check_resumable(sd.path / "last.pth", resume)
    with log_to(sd.path / "train.log"):
        return _train(cfg, sec, name, ds, masks, sd, resume)


def _train(cfg: Config, sec: dict[str, Any], name: str, ds: SegDataset, masks: Any, sd: Any, resume: bool) -> dict:
    t0 = time.time()
    device = dist.resolve_device(cfg.get("device", "auto"))
    seed = int(cfg.seed)
    seed_everything(seed)
    iters, bs = int(sec["iters"]), int(sec["batch_size"])
    use_amp = bool(sec["amp"]) and device.type == "cuda"
    model_cfg = {**SEG_MODEL_DEFAULTS, **dict(to_plain(cfg.get("seg_model") or {}))}
    model = build_segmentor(model_cfg, ds.num_classes).to(device)
    optimizer = build_optimizer(model, sec)
    scheduler = build_scheduler(optimizer, iters, kind=str(sec["lr_schedule"]), power=float(sec["power"]),
                                warmup_iters=int(sec["warmup_iters"]))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    last, final = sd.path / "last.pth", sd.path / "final.pth"
    start, curve, window = 0, [], [0.0, 0]  # window: loss sum and count since the last log line
    val_points: list[dict] = []
    if resume and last.is_file():  # without --resume, check_resumable refused an existing last.pth
        state = load_checkpoint(last, model, optimizer, scheduler, scaler)
        start = int(state["iteration"])
        curve = list(state.get("extra", {}).get("loss_curve", []))
        window = list(state.get("extra", {}).get("loss_window", window))
        val_points = list(state.get("extra", {}).get("val_curve", []))

    net: torch.nn.Module = model
    net = dist.wrap_ddp(net, device, sync_bn=True)
    trainset = SegmentationSet(ds, train_transform(sec), mask_fn=masks, seed=seed)
    sampler = ResumableBatchSampler(len(ds), bs, iters, seed=seed, start_iter=start)
    loader = DataLoader(EpochIndexed(trainset), batch_sampler=sampler, num_workers=int(sec["num_workers"]),
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
    log.info("%s: %d images of split '%s' (%s masks), %d iters x %d/GPU x %d GPU(s), from iter %d, %s%s", name,
             len(ds), ds.split, sec["masks"], iters, bs, dist.world_size(), start, device, " AMP" if use_amp else "")

    at = set(eval_iterations(iters, int(sec["eval_points"])))
    val_ds = build_dataset(cfg.data, str((cfg.get("data") or {}).get("val_split", "val"))) if at else None
    if val_ds is not None and not val_ds.has_masks:
        raise WSSSError(f"train_seg.eval_points={sec['eval_points']} needs ground-truth masks on split "
                        f"'{val_ds.split}'")
    ocr = sec["ocr"]
    label_table = torch.from_numpy(np.stack([ds.label_vector(i) for i in ds.ids])) if ocr else None
    net.train()
    win_sum = torch.tensor(float(window[0]), device=device)  # on device: no GPU sync per iteration
    win_n = int(window[1])
    log_every, ckpt_every = max(1, int(sec["log_interval"])), max(1, int(sec["ckpt_interval"]))
    bar = tqdm(loader, total=iters, initial=start, desc=name, disable=not dist.is_main(), leave=False)
    it = start
    for images, targets, index in bar:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = net(images)
        loss = seg_loss(logits, targets)
        if ocr:
            candidates = candidate_mask(label_table[index].to(device))
            loss = loss + ocr["weight"] * ocr_loss(logits, candidates, ocr["margin"], ocr["reduction"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        it += 1
        win_sum += loss.detach().float()
        win_n += 1
        if it % log_every == 0 or it == iters:
            mean = float(win_sum) / win_n
            curve.append([it, round(mean, 6)])
            win_sum.zero_()
            win_n = 0
            bar.set_postfix(loss=f"{mean:.4f}")
            log.info("%s iter %d/%d loss %.4f lr %.2e", name, it, iters, mean, optimizer.param_groups[0]["lr"])
        if it in at and dist.is_main():
            summ = val_summary(model, val_ds, device)
            val_points.append({"iter": it, "fraction": round(it / iters, 4), "miou": summ["miou"],
                               "per_class": {c: r["iou"] for c, r in summ["per_class"].items()}})
            log.info("%s iter %d/%d: %s mIoU %.1f", name, it, iters, val_ds.split, 100 * (summ["miou"] or 0))
            write_json_atomic(sd.path / CURVE_FILE, curve_record(val_points, iters))
        if (it % ckpt_every == 0 or it == iters) and dist.is_main():
            save_checkpoint(last, model, optimizer, scheduler, scaler, it,
                            extra={"loss_curve": curve, "loss_window": [float(win_sum), win_n],
                                   "val_curve": val_points})
    bar.close()

    if dist.is_main():
        with atomic_path(final) as tmp:
            torch.save({"model": model.state_dict(), "seg_model": model_cfg, "num_classes": ds.num_classes,
                        "class_names": list(ds.class_names), "iteration": it}, tmp)
    loss_first = curve[0][1] if curve else None
    loss_last = curve[-1][1] if curve else None
    metrics = {"iters": it, "loss_first": loss_first, "loss_last": loss_last, "loss_curve": curve,
               "val_curve": val_points, "val_converged": curve_record(val_points, iters)["converged"],
               "masks": str(sec["masks"]), "split": ds.split, "images": len(ds), "seconds": round(time.time() - t0, 1)}
    if dist.is_main():
        write_json_atomic(sd.path / "metrics.json", metrics)
    log.info("%s: %d iters, loss %s -> %s", name, it, loss_first, loss_last)
    keys = ("iters", "loss_first", "loss_last") + (("val_converged",) if val_points else ())
    return close_stage(sd, items=len(ds), metrics={k: metrics[k] for k in keys})
