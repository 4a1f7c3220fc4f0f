"""Stage train_aff: learn pixel-pair affinities from the confident parts of the CAMs (AffinityNet).

Reads ``<work_dir>/<train_aff.input>/cams/<id>.npz`` for the ids of ``train_aff.split`` (default
``data.cam_split``). Writes ``<work_dir>/<train_aff.name>/``:

* ``seeds/<id>.png``: confident labels per image (class where max CAM > ``conf_fg``, 0 where max CAM <=
  ``conf_bg``, 255 in between; optionally CRF-refined, ``train_aff.crf`` = CRF settings whose ``unary``
  defaults to IRN's 'labels'), made once per image (per-image resume, sharded);
* ``last.pth`` every ``ckpt_interval`` iterations and at the end; ``final.pth`` (weights + ``aff_model``);
* ``metrics.json`` (seed coverage / accuracy against ground truth when there is one, loss curve), ``train.log``.

Training: random scale / crop / flip of image and seeds together, seeds sampled on the stride-``feature_stride``
grid, pair labels for all offsets within ``train_aff.radius`` (:mod:`wsss.refine.affinity_labels`; IRN trains
with 10 and walks with ``propagate.radius`` 5, the two keys are independent), the balanced
AffinityNet loss (:mod:`wsss.refine.affinity_loss`). SGD or AdamW, poly schedule, AMP on CUDA, DDP under
torchrun. Length: ``iters``, or ``epochs`` (IRN's count, :func:`resolve_iters`). ``freeze_backbone``: IRN's
setting, the backbone gets no gradient (its features are constants, as IRN's ``.detach()``) and stays in eval
mode (BatchNorm statistics frozen), only the new layers train, at ``lr * head_lr_mult``. ``--resume`` continues from ``last.pth``
bit-for-bit on CPU (batch order from :class:`ResumableBatchSampler`, augmentation from (seed, epoch, index), a
private DataLoader generator).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss import dist
from wsss.artifacts import atomic_path, write_json_atomic
from wsss.cam.io import load_cam
from wsss.config import Config, to_plain
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.data.palette import IGNORE_INDEX, load_mask, save_mask
from wsss.data.torch_sets import SegmentationSet
from wsss.data.transforms import segmentation_transform
from wsss.engine.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from wsss.log import log_to
from wsss.engine.sampling import EpochIndexed, ResumableBatchSampler
from wsss.engine.schedule import build_scheduler
from wsss.engine.seed import seed_everything
from wsss.engine.stage import check_same_size, close_stage, open_stage, pending, stage_run
from wsss.errors import WSSSError
from wsss.models.affinity_net import AffinityNet, build_affinity_net
from wsss.ops import radius_offsets
from wsss.refine.affinity_labels import downsample_labels, pair_labels, seed_labels
from wsss.refine.affinity_loss import affinity_loss
from wsss.schema import Rule, Schema

log = logging.getLogger(__name__)

STAGE = "train_aff"
CONFIG_KEYS = ("data", "aff_model", "train_aff")
#: Test hook: SIGKILL this process right after the given (1-based) iteration (after its checkpoint, if any).
KILL_ENV = "WSSS_TEST_KILL_AT_ITER"

#: Defaults of the ``aff_model`` section (configs/_base_/affinity.py repeats them).
MODEL_DEFAULTS: dict[str, Any] = dict(backbone="resnet50", pretrained=False, weights=None, feature_stride=4,
                                      max_stride=32, proj_dim=64, embed_dim=128)
#: Defaults of the ``train_aff`` section.
DEFAULTS: dict[str, Any] = dict(
    input="make_cam", name=None, split=None, conf_fg=0.30, conf_bg=0.05, use_crf=False, crf=None, radius=5,
    crop_size=256, scale_range=(0.7, 1.3), iters=2000, epochs=None, batch_size=8, optimizer="sgd", lr=0.01,
    head_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, lr_schedule="poly", power=0.9, warmup_iters=0,
    freeze_backbone=False, amp=True, num_workers=2, ckpt_interval=200, log_interval=20,
)


#: What the ``train_aff`` and ``aff_model`` sections accept (wsss/schema.py); intervals, workers and the folder
#: name are not part of the stage's identity.
SCHEMA = Schema("train_aff", DEFAULTS, rules=dict(
    input=Rule(kind="str"), name=Rule(kind="str"), split=Rule(kind="str"), conf_fg=Rule(min=0, max=1),
    conf_bg=Rule(min=0, max=1), crf=Rule(kind="dict"), radius=Rule(min=1), crop_size=Rule(min=8),
    scale_range=Rule(gt=0, nonempty=True), iters=Rule(min=1), batch_size=Rule(min=1),
    optimizer=Rule(choices=("sgd", "adamw", "SGD", "AdamW")), lr=Rule(gt=0), head_lr_mult=Rule(gt=0),
    momentum=Rule(min=0, max=1), weight_decay=Rule(min=0), lr_schedule=Rule(choices=("poly", "cosine", "constant")),
    warmup_iters=Rule(min=0), num_workers=Rule(min=0), ckpt_interval=Rule(min=1), log_interval=Rule(min=1)),
    runtime=("ckpt_interval", "log_interval", "num_workers", "name"))
MODEL_SCHEMA = Schema("aff_model", MODEL_DEFAULTS, rules=dict(
    pretrained=Rule(kind="any"),  # True/False, or a timm tag such as 'tv_in1k' (wsss.models.weights.timm_name)
    weights=Rule(kind="str"), feature_stride=Rule(min=1), max_stride=Rule(min=1), proj_dim=Rule(min=1),
    embed_dim=Rule(min=1)))
SCHEMAS = (SCHEMA, MODEL_SCHEMA)


def section(cfg: Config) -> dict[str, Any]:
    """The ``train_aff`` section with defaults filled in (unknown keys and wrong values are an error)."""
    return SCHEMA.resolve(to_plain(cfg.get("train_aff") or {}))


def model_config(cfg: Config) -> dict[str, Any]:
    """The ``aff_model`` section with defaults filled in."""
    return MODEL_SCHEMA.resolve(to_plain(cfg.get("aff_model") or {}))


def stage_name(cfg: Config) -> str:
    return str(section(cfg)["name"] or STAGE)


def inputs(cfg: Config) -> list[str]:
    """The CAM stage whose confident regions supervise the affinities."""
    return [str(section(cfg)["input"])]


def resolve_iters(sec: dict[str, Any], num_images: int, world_size: int = 1) -> int:
    """Training length in iterations: ``train_aff.iters``, or, when ``train_aff.epochs`` is set, IRN's count
    ``(num_images // (batch_size * world_size)) * epochs`` (full batches only, as its drop_last loader).
    IRN on VOC train_aug: (10582 // 32) * 3 = 990 iterations."""
    if sec.get("epochs") is None:
        return int(sec["iters"])
    epochs, batch = int(sec["epochs"]), int(sec["batch_size"]) * max(1, int(world_size))
    per_epoch = int(num_images) // batch
    if epochs < 1 or per_epoch < 1:
        raise WSSSError(f"train_aff.epochs={sec['epochs']} with {num_images} images and a global batch of {batch} "
                        "gives no full batch: lower batch_size or set train_aff.iters (and epochs=None)")
    return per_epoch * epochs


def split_of(cfg: Config, sec: dict[str, Any]) -> str:
    data = cfg.get("data") or {}
    return str(sec.get("split") or data.get("cam_split") or data.get("train_split", "train"))


# ---------------------------------------------------------------------------------------------------------
# Seeds

def _crf_params(sec: dict[str, Any]) -> Any:
    if not sec["use_crf"]:
        return None
    from wsss.refine.crf import CRFParams, require_pydensecrf
    require_pydensecrf()
    # IRN refines its two seed decisions from the hard labels (unary_from_labels, gt_prob 0.7)
    return CRFParams.from_config(sec.get("crf") or {}, default_unary="labels")


def make_seeds(ds: SegDataset, cam_dir: Path, seed_dir: Path, sec: dict[str, Any]) -> int:
    """Write ``seed_dir/<id>.png`` for this rank's images that have none yet. Returns how many were made."""
    crf = _crf_params(sec)
    todo = pending(ds.ids, lambda i: seed_dir / f"{i}.png")
    for image_id in tqdm(todo, desc="affinity seeds", unit="img", disable=not dist.is_main() or not todo):
        cam_path = cam_dir / f"{image_id}.npz"
        keys, cams = load_cam(cam_path)
        image = ds.image(image_id)
        check_same_size(cam_path, cams, image.shape[:2])
        save_mask(seed_dir / f"{image_id}.png", seed_labels(keys, cams, float(sec["conf_fg"]), float(sec["conf_bg"]),
                                                            image if crf is not None else None, crf))
    return len(todo)


def seed_quality(ds: SegDataset, seed_dir: Path, distributed: bool = False) -> dict[str, Any]:
    """Shares of foreground / background / labelled seed pixels and, with ground truth, each kind's accuracy.

    ``distributed``: call on every rank; each counts its shard of the images and the counts are summed."""
    total = 0
    share = {"fg": 0, "bg": 0}
    correct = {"fg": 0, "bg": 0}
    scored = {"fg": 0, "bg": 0}
    error = None
    try:
        for image_id in dist.shard(ds.ids) if distributed else ds.ids:
            seeds = load_mask(seed_dir / f"{image_id}.png", ds.num_classes)
            total += seeds.size
            kinds = {"bg": seeds == 0, "fg": (seeds != 0) & (seeds != IGNORE_INDEX)}
            gt = ds.mask(image_id) if ds.has_masks else None
            for kind, sel in kinds.items():
                share[kind] += int(sel.sum())
                if gt is not None:
                    sel = sel & (gt != IGNORE_INDEX)
                    scored[kind] += int(sel.sum())
                    correct[kind] += int((seeds[sel] == gt[sel]).sum())
    except Exception as e:  # noqa: BLE001 - every rank must hear of it before the reduction
        error = e
    dist.raise_first_error(error, collective=distributed)
    if distributed:
        counts = dist.all_reduce_sum(torch.tensor([total] + [d[k] for d in (share, correct, scored)
                                                             for k in ("fg", "bg")], dtype=torch.int64)).tolist()
        total = counts[0]
        for n, d in enumerate((share, correct, scored)):
            d["fg"], d["bg"] = counts[1 + 2 * n], counts[2 + 2 * n]
    out: dict[str, Any] = {"seed_coverage": round((share["fg"] + share["bg"]) / max(1, total), 6)}
    for kind in ("fg", "bg"):
        out[f"seed_{kind}_share"] = round(share[kind] / max(1, total), 6)
        out[f"seed_{kind}_accuracy"] = round(correct[kind] / scored[kind], 6) if scored[kind] else None
    return out


def warn_if_degenerate(name: str, quality: dict[str, Any], sec: dict[str, Any]) -> None:
    """Seeds that are nearly all foreground or nearly no background teach no boundaries (no ground truth needed)."""
    fg, bg = quality["seed_fg_share"], quality["seed_bg_share"]
    if fg > 0.6 or bg < 0.05:
        log.warning("%s: seeds are %.0f %% foreground and %.0f %% background: conf_fg=%s / conf_bg=%s probably do not "
                    "fit these CAMs (raise them if CAMs leak into the background), or the affinities will not learn "
                    "object boundaries", name, 100 * fg, 100 * bg, sec["conf_fg"], sec["conf_bg"])


class SeedMasks:
    """``mask_fn`` reading ``seed_dir/<id>.png`` (picklable, for DataLoader workers)."""

    def __init__(self, seed_dir: Path, num_classes: int) -> None:
        self.seed_dir, self.num_classes = seed_dir, num_classes

    def __call__(self, image_id: str) -> np.ndarray:
        return load_mask(self.seed_dir / f"{image_id}.png", self.num_classes)


# ---------------------------------------------------------------------------------------------------------
# Training

def build_optimizer(model: AffinityNet, sec: dict[str, Any]) -> torch.optim.Optimizer:
    """Backbone at ``lr`` (left out when frozen), new layers at ``lr * head_lr_mult``."""
    lr = float(sec["lr"])
    new = [p for m in model.new_modules for p in m.parameters()]
    groups = [dict(params=new, lr=lr * float(sec["head_lr_mult"]))]
    if not sec["freeze_backbone"]:
        groups.insert(0, dict(params=list(model.backbone.parameters()), lr=lr))
    kind = str(sec["optimizer"]).lower()
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(sec["momentum"]),
                               weight_decay=float(sec["weight_decay"]))
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=float(sec["weight_decay"]))
    raise WSSSError(f"train_aff.optimizer must be 'sgd' or 'adamw', got '{sec['optimizer']}'")


def validate(cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checked ``train_aff`` and ``aff_model`` sections (before any stage of a pipeline runs)."""
    sec, mcfg = section(cfg), model_config(cfg)
    crop, top = int(sec["crop_size"]), int(mcfg["max_stride"])
    if crop % top:
        raise WSSSError(f"train_aff.crop_size ({crop}) must be a multiple of aff_model.max_stride ({top})")
    if int(sec["batch_size"]) < 2 and dist.world_size() == 1 and not sec["freeze_backbone"]:
        raise WSSSError("train_aff.batch_size must be >= 2 (BatchNorm in the backbone)")
    return sec, mcfg


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Make the seeds, then train (or resume) the affinity network; returns the stage manifest."""
    sec, mcfg = validate(cfg)
    name, src = stage_name(cfg), inputs(cfg)[0]
    ds = build_dataset(cfg.data, split_of(cfg, sec))
    sd, done = open_stage(cfg, name, CONFIG_KEYS, [src], force=force, datasets=[ds], schemas=SCHEMAS)
    if done:
        return sd.manifest
    check_resumable(sd.path / "last.pth", resume)
    with log_to(sd.path / "train.log"):
        seed_dir = sd.path / "seeds"
        made = make_seeds(ds, Path(cfg.work_dir) / src / "cams", seed_dir, sec)
        dist.barrier()
        quality = seed_quality(ds, seed_dir, distributed=True)
        if dist.is_main():
            log.info("%s: %d seed maps made (%d already there); %s", name, made, len(ds) - made,
                     ", ".join(f"{k} {v}" for k, v in quality.items() if v is not None))
            warn_if_degenerate(name, quality, sec)
        return _train(cfg, sec, mcfg, name, ds, seed_dir, sd, resume, quality)


def _train(cfg: Config, sec: dict[str, Any], mcfg: dict[str, Any], name: str, ds: SegDataset, seed_dir: Path,
           sd: Any, resume: bool, quality: dict[str, Any]) -> dict:
    t0 = time.time()
    device = dist.resolve_device(cfg.get("device", "auto"))
    seed = int(cfg.seed)
    seed_everything(seed)
    iters, bs = resolve_iters(sec, len(ds), dist.world_size()), int(sec["batch_size"])
    use_amp = bool(sec["amp"]) and device.type == "cuda"
    model = build_affinity_net(**mcfg).to(device)
    if sec["freeze_backbone"]:
        model.backbone.requires_grad_(False)
    optimizer = build_optimizer(model, sec)
    scheduler = build_scheduler(optimizer, iters, kind=str(sec["lr_schedule"]), power=float(sec["power"]),
                                warmup_iters=int(sec["warmup_iters"]))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    offsets = radius_offsets(int(sec["radius"]))
    stride = int(mcfg["feature_stride"])

    last, final = sd.path / "last.pth", sd.path / "final.pth"
    start, curve = 0, []
    if resume and last.is_file():  # without --resume, check_resumable refused an existing last.pth
        state = load_checkpoint(last, model, optimizer, scheduler, scaler)
        start = int(state["iteration"])
        curve = list(state.get("extra", {}).get("loss_curve", []))

    net: torch.nn.Module = model
    net = dist.wrap_ddp(net, device, sync_bn=True)
    transform = segmentation_transform(int(sec["crop_size"]), train=True, scale_range=tuple(sec["scale_range"]))
    trainset = SegmentationSet(ds, transform, mask_fn=SeedMasks(seed_dir, ds.num_classes), seed=seed)
    sampler = ResumableBatchSampler(len(ds), bs, iters, seed=seed, start_iter=start)
    loader = DataLoader(EpochIndexed(trainset), batch_sampler=sampler, num_workers=int(sec["num_workers"]),
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
    log.info("%s: %d images of '%s', %s, %d offsets (radius %d), %d iters x %d/GPU x %d GPU(s), from iter %d, "
             "%s%s", name, len(ds), ds.split, mcfg["backbone"], len(offsets), int(sec["radius"]), iters, bs,
             dist.world_size(), start, device, " AMP" if use_amp else "")

    net.train()
    if sec["freeze_backbone"]:
        model.backbone.eval()
    window: dict[str, list[float]] = {}
    log_every, ckpt_every = max(1, int(sec["log_interval"])), max(1, int(sec["ckpt_interval"]))
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = tqdm(loader, total=iters, initial=start, desc=name, disable=not dist.is_main(), leave=False)
    it = start
    for images, seeds, _ in bar:
        images = images.to(device, non_blocking=True)
        seeds = seeds.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            aff = net(images, offsets)
        grid = downsample_labels(seeds, stride, size=tuple(aff.shape[-2:]))
        bg_pos, fg_pos, neg = pair_labels(grid, offsets)
        parts = affinity_loss(aff.float(), bg_pos, fg_pos, neg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        it += 1
        for k, v in parts.items():
            window.setdefault(k, []).append(float(v.detach()))
        window.setdefault("pairs_neg", []).append(float(neg.sum()))
        if it % log_every == 0 or it == iters:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            curve.append([it, round(means["loss"], 6)])
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            log.info("%s iter %d/%d loss %.4f (bg %.4f fg %.4f neg %.4f, %.0f neg pairs/batch) lr %.2e", name, it,
                     iters, means["loss"], means["bg"], means["fg"], means["neg"], means["pairs_neg"],
                     optimizer.param_groups[0]["lr"])
        if (it % ckpt_every == 0 or it == iters) and dist.is_main():
            save_checkpoint(last, model, optimizer, scheduler, scaler, it, extra={"loss_curve": curve})
        if kill_at and it == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()

    if dist.is_main():
        with atomic_path(final) as tmp:
            torch.save({"model": model.state_dict(), "aff_model": mcfg, "radius": int(sec["radius"]),
                        "iteration": it}, tmp)
    loss_first = curve[0][1] if curve else None
    loss_last = curve[-1][1] if curve else None
    metrics = {"iters": it, "loss_first": loss_first, "loss_last": loss_last, "loss_curve": curve,
               "split": ds.split, "images": len(ds), "seconds": round(time.time() - t0, 1), **quality}
    if dist.is_main():
        write_json_atomic(sd.path / "metrics.json", metrics)
    log.info("%s: %d iters, loss %s -> %s", name, it, loss_first, loss_last)
    keep = ("iters", "loss_first", "loss_last", "seed_coverage", "seed_fg_accuracy", "seed_bg_accuracy")
    return close_stage(sd, items=len(ds), metrics={k: metrics.get(k) for k in keep})
