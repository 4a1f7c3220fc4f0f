"""Stage train_cls: train the multi-label classifier whose CAMs seed the pipeline.

Reads the ``data``, ``cls_model`` and ``train_cls`` config sections. Writes ``<work_dir>/train_cls/``:
``last.pth`` (model, optimizer, scheduler, AMP scaler, iteration, RNG states; every ``ckpt_interval``
iterations and at the end), ``final.pth`` (model weights only), ``metrics.json`` (val mAP) and ``train.log``
(the log, as every training stage names it).

``--resume`` continues from ``last.pth`` and, on CPU, reaches bit-for-bit the weights of an uninterrupted run:
batches come from a sampler whose order depends only on (seed, epoch), each sample's augmentation only on
(seed, epoch, index), and the DataLoader has its own generator so creating it does not move the global RNG.
Under ``torchrun`` the model is wrapped in DDP and each rank takes its share of every global batch.

Augmentation: ``train_cls.augmentation='wsss'`` (default: rescale, crop, flip, jitter ``color_jitter``) or
``'toco'`` (ToCo's three stacked views per image, for classifiers with ``accepts_views``; see
docs/stage_toco.md), with ``augmentation_options`` overriding the ToCo preset's values.

Small-data mode (issue 16): ``train_cls.loss`` picks the multi-label loss (``bce``, ``balanced_bce`` with
per-class positive weights from the training labels, ``asl``; :mod:`wsss.models.multilabel_loss`), and with a
frozen backbone (``cls_model.freeze_backbone=True``, ``unfreeze_last=0``) ``train_cls.cache_views=V`` computes
the pooled backbone features of V augmented views of every training image once
(``<work_dir>/train_cls/features/<id>.npy``, float32 [V, C], written atomically, reused on resume) and trains
the head on them: each sample draws one of its V views from (seed, epoch, index). Minutes on a CPU.

``train_cls.wood=dict(...)`` adds W-OoD (out-of-distribution images as all-negative plus a metric loss that
pulls features to class prototypes and away from OoD cluster centres; see docs/stage_cls_cam.md, "W-OoD").

The stage only uses the classifier interface of :mod:`wsss.models.registry`
(``losses``, ``forward``, ``param_groups``), so any registered classifier trains here unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from wsss import dist
from wsss.artifacts import atomic_path, write_json_atomic
from wsss.config import Config
from wsss.cluster import kmeans
from wsss.data.base import IMAGE_SUFFIXES, SegDataset
from wsss.data.build import build_dataset
from wsss.data.torch_sets import ClassificationSet
from wsss.data.transforms import CLS_AUGMENTATIONS, classification_train_transform, classification_transform
from wsss.engine.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from wsss.engine.sampling import ResumableBatchSampler
from wsss.engine.schedule import build_scheduler
from wsss.engine.seed import seed_everything
from wsss.engine.stage import close_stage, open_stage, stage_run
from wsss.errors import InputError, WSSSError
from wsss.eval.cam_eval import mean_average_precision
from wsss.log import log_to
from wsss.models.multilabel_loss import LOSSES, build_loss
from wsss.losses.wood import adversarial_climb, all_negative_loss, class_prototypes, mine_hard_ood, wood_metric_loss
from wsss.models.registry import build_classifier
from wsss.schema import Rule, Schema

STAGE = "train_cls"
CONFIG_KEYS = ("data", "cls_model", "train_cls")
# Test hook: SIGKILL this process right after finishing the given (1-based) iteration, to test resume.
KILL_ENV = "WSSS_TEST_KILL_AT_ITER"

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = dict(
    iters=2000, batch_size=16, lr=0.01, weight_decay=1e-4, momentum=0.9, optimizer="sgd", schedule="poly",
    power=0.9, warmup_iters=0, crop_size=448, scale_range=(0.5, 1.5), color_jitter=0.3, augmentation="wsss",
    augmentation_options=None, ckpt_interval=500,
    val_interval=0, val_batch_size=None, log_interval=50, num_workers=2, amp=True, grad_clip=None,
    find_unused_parameters=False, loss="bce", pos_weight_max=None, asl=None, cache_views=0,
    cache_batch_size=16, wood=None)

#: ``train_cls.wood`` (W-OoD, wsss.losses.wood): OoD data from ``ood_split`` (a split of ``data``; only its
#: images without labels are used) or ``ood_dir`` (a folder of images); from iteration ``start_iter`` (default
#: iters // 2) the ``top_k`` hardest OoD images (all when None) train as all-negative (``ood_weight``) and the
#: metric loss (``weight``) uses ``clusters`` k-means centres of their features, ``near_fraction`` nearest pairs.
#: ``adv_step`` > 0 moves each OoD batch one step up its top logit first (wsss.losses.wood.adversarial_climb;
#: the reference's value is 0.07; default 0 keeps the runs made before the option).
WOOD_DEFAULTS: dict[str, Any] = dict(ood_split=None, ood_dir=None, start_iter=None, top_k=None, clusters=8,
                                     near_fraction=0.2, weight=0.01, ood_weight=0.3, adv_step=0.0)


def inputs(cfg: Config) -> list[str]:
    """train_cls reads only the dataset."""
    return []


#: What the ``train_cls`` section accepts (wsss/schema.py); checkpoint / log intervals and workers change
#: neither the weights nor the curve's values, so they are not part of the stage's identity.
#: ``iters=0`` stores the initial model without a step (the zero-training ImageNet-head baseline).
SCHEMA = Schema("train_cls", DEFAULTS, rules=dict(
    iters=Rule(min=0), batch_size=Rule(min=1), lr=Rule(gt=0), weight_decay=Rule(min=0), momentum=Rule(min=0, max=1),
    optimizer=Rule(choices=("sgd", "adamw")), schedule=Rule(choices=("poly", "cosine", "constant")),
    warmup_iters=Rule(min=0), crop_size=Rule(min=8), scale_range=Rule(gt=0, nonempty=True),
    color_jitter=Rule(min=0), augmentation=Rule(choices=tuple(CLS_AUGMENTATIONS)),
    augmentation_options=Rule(kind="dict"), loss=Rule(choices=LOSSES), pos_weight_max=Rule(kind="number", gt=0),
    asl=Rule(kind="dict"), cache_views=Rule(min=0), cache_batch_size=Rule(min=1), ckpt_interval=Rule(min=1), val_interval=Rule(min=0),
    val_batch_size=Rule(kind="int", min=1), log_interval=Rule(min=1), num_workers=Rule(min=0),
    grad_clip=Rule(kind="number", gt=0)),
    runtime=("ckpt_interval", "log_interval", "num_workers", "cache_batch_size"))
SCHEMAS = (SCHEMA,)


def settings(cfg: Config) -> dict[str, Any]:
    """``train_cls`` section with defaults filled in (unknown keys and wrong values are refused, one line)."""
    out = SCHEMA.resolve(cfg.get("train_cls"))
    out["wood"] = wood_settings(out["wood"], int(out["iters"]))
    return out


def train_transform(s: dict[str, Any]):
    """The augmentation preset ``train_cls.augmentation`` ('wsss': one view; 'toco': ToCo's three stacked
    views, see wsss.data.transforms.MultiViewTransform), with ``augmentation_options`` for the ToCo preset."""
    try:
        return classification_train_transform(int(s["crop_size"]), tuple(s["scale_range"]), s["augmentation"],
                                              float(s["color_jitter"]), dict(s["augmentation_options"] or {}))
    except ValueError as e:
        raise WSSSError(f"train_cls.augmentation: {e}") from e


def wood_settings(value: Any, iters: int) -> dict[str, Any] | None:
    """``train_cls.wood`` with defaults filled in, or None when off; refuses unknown keys and bad values."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise WSSSError(f"train_cls.wood must be a dict, got {value!r}")
    unknown = sorted(set(value) - set(WOOD_DEFAULTS))
    if unknown:
        raise WSSSError(f"train_cls.wood: unknown keys {unknown}; known: {sorted(WOOD_DEFAULTS)}")
    w = {**WOOD_DEFAULTS, **dict(value)}
    if bool(w["ood_split"]) == bool(w["ood_dir"]):
        raise WSSSError("train_cls.wood needs exactly one of ood_split (a split of data) or ood_dir (a folder)")
    w["start_iter"] = iters // 2 if w["start_iter"] is None else int(w["start_iter"])
    if not 0 <= w["start_iter"] < iters:
        raise WSSSError(f"train_cls.wood.start_iter must be in [0, {iters}), got {w['start_iter']}")
    if not 0.0 < float(w["near_fraction"]) <= 1.0 or int(w["clusters"]) < 1:
        raise WSSSError(f"train_cls.wood: need 0 < near_fraction <= 1 and clusters >= 1, got {w}")
    if float(w["adv_step"]) < 0:
        raise WSSSError(f"train_cls.wood.adv_step must be >= 0, got {w['adv_step']}")
    return w


def ood_dataset(cfg: Config, wood: dict[str, Any], train_ds: SegDataset) -> SegDataset:
    """The OoD candidates: the label-free images of split ``ood_split`` or every image of ``ood_dir``."""
    if wood["ood_split"]:
        ds = build_dataset(cfg.data, str(wood["ood_split"]))
        ids = [i for i in ds.ids if not ds.labels.get(i)]
        where = f"split '{wood['ood_split']}'"
        ds = replace(ds, ids=ids, labels={i: [] for i in ids})
    else:
        folder = Path(str(wood["ood_dir"]))
        if not folder.is_dir():
            raise InputError(folder, "train_cls.wood.ood_dir: folder not found")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        ids = [p.stem for p in paths]
        where = f"folder {folder}"
        ds = SegDataset("ood_dir", "ood", ids, list(train_ds.class_names), folder, {},
                        image_paths={p.stem: p for p in paths})
    if not ids:
        raise WSSSError(f"train_cls.wood: {where} holds no image without labels (no OoD data)")
    return ds


class _EpochIndexed(Dataset):
    """Adapts ClassificationSet to ResumableBatchSampler's ``(epoch, index)`` keys inside every worker."""

    def __init__(self, inner: ClassificationSet) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        self.inner.set_epoch(epoch)
        return self.inner[index]


class _LossModule(nn.Module):
    """Makes ``losses`` the forward of the module DDP wraps, so DDP's gradient hooks see the loss graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor, iteration: int,
                ood_images: torch.Tensor | None = None, wood: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
        if wood is None or ood_images is None:
            return self.model.losses(images, labels, iteration)
        return wood_losses(self.model, images, labels, ood_images, wood)


def _check_wood_model(model: nn.Module, cached: bool) -> None:
    if cached:  # head-only on cached pooled features: any head_only classifier with a logits-of-pooled head
        if not (hasattr(model, "backbone") and hasattr(model, "_logits") and hasattr(model, "pooled_features")):
            raise WSSSError("train_cls.wood with cache_views needs a head-only classifier with pooled features")
        return
    if not (hasattr(model, "backbone") and hasattr(model, "_logits") and getattr(model, "pool", None) == "avg"):
        raise WSSSError("train_cls.wood needs cls_model type 'cam_classifier' with pool='avg' (pooled features)")


def cached_wood_losses(model: nn.Module, losses: dict[str, torch.Tensor], ood_pooled: torch.Tensor,
                       wood: dict[str, Any]) -> dict[str, torch.Tensor]:
    """W-OoD on a frozen backbone (``cache_views``): the in-distribution ``losses`` plus the all-negative loss of
    the mined OoD images' cached pooled features through the head.

    The metric loss is left out, not approximated: it is a function of the pooled features only, which a frozen
    backbone does not change, so its gradient with respect to every trainable parameter is zero. What W-OoD
    can still do there is what its all-negative term does: teach the head that the context alone is no class."""
    ood = all_negative_loss(model._logits(ood_pooled))
    return {**losses, "loss": losses["loss"] + float(wood["ood_weight"]) * ood, "loss_ood": ood.detach()}


def wood_losses(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, ood_images: torch.Tensor,
                wood: dict[str, Any]) -> dict[str, torch.Tensor]:
    """W-OoD training losses of one batch: multi-label loss on the in-distribution images, all-negative loss on
    the OoD images and the metric loss of the pooled in-distribution features (wsss.losses.wood).
    ``wood``: settings plus ``prototypes`` [K, D], ``present`` [K], ``centers`` [M, D] (on the device)."""
    pooled = model.backbone(images).mean(dim=(2, 3))
    logits = model._logits(pooled).float()
    cls = F.multilabel_soft_margin_loss(logits, labels.float())
    ood_images = adversarial_climb(model, ood_images, float(wood.get("adv_step", 0.0)))
    ood = all_negative_loss(model(ood_images))
    metric = wood_metric_loss(pooled, labels, wood["prototypes"], wood["centers"], float(wood["near_fraction"]),
                              wood["present"])
    loss = cls + float(wood["weight"]) * metric + float(wood["ood_weight"]) * ood
    return {"loss": loss, "loss_cls": cls.detach(), "loss_ood": ood.detach(), "loss_metric": metric.detach()}


@torch.no_grad()
def pooled_features(model: nn.Module, ds: SegDataset, crop_size: int, batch_size: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features [N, D], class probabilities [N, K]) of every image of ``ds`` in order (eval mode,
    resized to ``crop_size``, no augmentation)."""
    was_training = model.training
    model.eval()
    data = ClassificationSet(ds, classification_transform(crop_size, train=False), seed=0)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0,
                        generator=torch.Generator().manual_seed(0))
    feats, probs = [], []
    for images, _, _ in loader:
        pooled = model.backbone(images.to(device)).mean(dim=(2, 3)).float()
        feats.append(pooled.cpu())
        probs.append(torch.sigmoid(model._logits(pooled)).float().cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(probs)


def prepare_wood(model: nn.Module, train_ds: SegDataset, ood_ds: SegDataset, s: dict[str, Any], seed: int,
                 device: torch.device, metric: bool = True) -> dict[str, Any]:
    """W-OoD state from the classifier as trained so far: class prototypes of the training images, the mined
    hard OoD images and the k-means centres of their features. Saved in ``last.pth`` so a resume reuses it.
    ``metric=False`` (frozen backbone, no metric loss): only the mining; prototypes and centres stay empty."""
    wood = s["wood"]
    bs = int(s["val_batch_size"] or s["batch_size"])
    if metric:
        feats, _ = pooled_features(model, train_ds, int(s["crop_size"]), bs, device)
        labels = torch.from_numpy(np.stack([train_ds.label_vector(i) for i in train_ds.ids]))
        prototypes, present = class_prototypes(feats, labels)
    ood_feats, ood_probs = pooled_features(model, ood_ds, int(s["crop_size"]), bs, device)
    mined = mine_hard_ood(ood_probs, wood["top_k"])
    if metric:
        _, centers = kmeans(ood_feats[mined], int(wood["clusters"]), seed=seed)
    else:
        prototypes, present = torch.zeros(0, ood_feats.shape[1]), torch.zeros(0, dtype=torch.bool)
        centers = torch.zeros(0, ood_feats.shape[1])
    hardness = ood_probs.max(dim=1).values[mined]
    log.info("W-OoD: %d of %d OoD images mined (max class score %.3f..%.3f), %d centres, %d prototypes",
             len(mined), len(ood_ds), float(hardness.min()), float(hardness.max()), len(centers), int(present.sum()))
    return {"prototypes": prototypes, "present": present, "centers": centers,
            "mined_ids": [ood_ds.ids[int(i)] for i in mined], "hardness": [round(float(h), 6) for h in hardness]}


def build_optimizer(model: nn.Module, s: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, as IRN) or AdamW (as ViT recipes) over the model's own parameter groups."""
    groups = model.param_groups(float(s["lr"]))
    groups = [dict(g) for g in groups if list(g["params"])]
    if s["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=float(s["lr"]), momentum=float(s["momentum"]),
                               weight_decay=float(s["weight_decay"]))
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=float(s["lr"]), weight_decay=float(s["weight_decay"]))
    raise WSSSError(f"train_cls.optimizer must be 'sgd' or 'adamw', got '{s['optimizer']}'")


def label_matrix(ds) -> np.ndarray:
    """Multi-hot labels of a split, [N, C-1] float32 in id order."""
    return np.stack([ds.label_vector(i) for i in ds.ids]) if len(ds) else np.zeros((0, ds.num_classes - 1))


def feature_path(stage_dir: Path, image_id: str, folder: str = "features") -> Path:
    return stage_dir / folder / f"{image_id}.npy"


@torch.no_grad()
def cache_features(model: nn.Module, ds, s: dict[str, Any], seed: int, stage_dir: Path,
                   device: torch.device, folder: str = "features") -> np.ndarray:
    """Pooled features of ``cache_views`` augmented views of every image: float32 [N, V, C].

    View v of image i is the training augmentation of (seed, epoch=v, index=i), so the cache holds what
    V epochs of image training would have shown a frozen backbone. Files that exist are reused (resume).
    ``folder``: ``features`` for the training images, ``ood_features`` for W-OoD's candidates (an image may be
    in both sets, with other augmentation seeds).
    """
    from tqdm import tqdm

    views = int(s["cache_views"])
    aug = ClassificationSet(ds, classification_transform(int(s["crop_size"]), train=True,
                                                         scale_range=tuple(s["scale_range"]),
                                                         color_jitter=float(s["color_jitter"])), seed=seed)
    todo = [k for k, i in enumerate(ds.ids) if not feature_path(stage_dir, i, folder).is_file()]
    was_training = model.training
    model.eval()
    bs = max(1, int(s["cache_batch_size"]))
    for k in tqdm(todo, desc=f"train_cls {folder}", unit="img", dynamic_ncols=True, disable=not todo):
        images = []
        for v in range(views):
            aug.set_epoch(v)
            images.append(aug[k][0])
        x = torch.stack(images).to(device)
        pooled = torch.cat([model.pooled_features(x[j:j + bs]).float() for j in range(0, views, bs)])
        with atomic_path(feature_path(stage_dir, ds.ids[k], folder)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, pooled.cpu().numpy().astype(np.float32))
    model.train(was_training)
    feats = [np.load(feature_path(stage_dir, i, folder)) for i in ds.ids]
    if any(f.shape[0] != views for f in feats):
        raise WSSSError(f"{stage_dir / folder}: cached features of another cache_views; re-run with --force")
    return np.stack(feats)


def view_of(seed: int, epoch: int, index: int, views: int) -> int:
    """Which cached view sample (epoch, index) uses: a pure function, so resume draws the same."""
    return int(np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 7]).integers(views))


@torch.no_grad()
def evaluate_map(model: nn.Module, ds, crop_size: int, batch_size: int, device: torch.device,
                 num_workers: int = 0) -> dict[str, Any]:
    """Mean average precision of the classifier on a split (images resized to ``crop_size`` and padded).

    Under torchrun each rank scores its shard and the scores are gathered, so every rank returns the same.
    """
    was_training = model.training
    model.eval()
    data = ClassificationSet(ds, classification_transform(crop_size, train=False), seed=0)
    mine = dist.shard(list(range(len(ds))))
    loader = DataLoader(Subset(data, mine), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    scores, targets, order = [], [], []
    for images, labels, idx in loader:
        scores.append(torch.sigmoid(model(images.to(device)).float()).cpu().numpy())
        targets.append(labels.numpy())
        order.append(idx.numpy())
    part = (np.concatenate(scores) if scores else np.zeros((0, ds.num_classes - 1)),
            np.concatenate(targets) if targets else np.zeros((0, ds.num_classes - 1)),
            np.concatenate(order) if order else np.zeros(0, np.int64))
    if dist.is_distributed():
        parts: list = [None] * dist.world_size()
        torch.distributed.all_gather_object(parts, part)
    else:
        parts = [part]
    s = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    model.train(was_training)
    mAP, ap = mean_average_precision(s, t)
    names = ds.class_names[1:]
    return {"map": None if math.isnan(mAP) else round(mAP, 6), "num_images": int(len(s)),
            "ap": {names[k]: (None if math.isnan(v) else round(float(v), 6)) for k, v in enumerate(ap)}}


def _ood_sampler(n_mined: int, s: dict[str, Any], seed: int, n_iters: int,
                 start_iter: int) -> ResumableBatchSampler:
    """Batches of (epoch, index) over the mined OoD images, their own seed (seed + 1), resumable at
    ``start_iter`` of the ``n_iters`` W-OoD iterations."""
    bs = int(s["batch_size"])
    if n_mined < bs * dist.world_size():
        raise WSSSError(f"train_cls.wood: {n_mined} mined OoD images, fewer than one batch of "
                        f"{bs * dist.world_size()}; raise wood.top_k or add OoD images")
    return ResumableBatchSampler(n_mined, bs, n_iters, seed=seed + 1, start_iter=start_iter)


def _ood_loader(ood_ds: SegDataset, mined_ids: list[str], s: dict[str, Any], seed: int, n_iters: int,
                start_iter: int, device: torch.device):
    """Iterator over augmented OoD batches (images, all-zero labels, index) of the mined images, resumable like
    the main loader: iteration ``start_iter`` of ``n_iters`` (counted from wood.start_iter)."""
    mined = replace(ood_ds, ids=list(mined_ids), labels={i: [] for i in mined_ids})
    data = _EpochIndexed(ClassificationSet(
        mined, classification_transform(int(s["crop_size"]), train=True, scale_range=tuple(s["scale_range"]),
                                        color_jitter=float(s["color_jitter"])), seed=seed + 1))
    sampler = _ood_sampler(len(mined), s, seed, n_iters, start_iter)
    return iter(DataLoader(data, batch_sampler=sampler, num_workers=int(s["num_workers"]),
                           pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed + 1)))


def _val_split(cfg: Config):
    split = cfg.data.get("val_split")
    if not split:
        return None
    try:
        ds = build_dataset(cfg.data, split)
    except WSSSError as e:
        log.warning("no validation mAP: %s", e)
        return None
    return ds if len(ds) else None


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Train the classifier; returns the stage manifest."""
    s = settings(cfg)
    train_ds = build_dataset(cfg.data, cfg.data.train_split)
    if not len(train_ds):
        raise WSSSError(f"train split '{cfg.data.train_split}' is empty")
    sd, done = open_stage(cfg, STAGE, CONFIG_KEYS, inputs(cfg), force=force, datasets=[train_ds], schemas=SCHEMAS)
    if done:
        return sd.manifest
    check_resumable(sd.path / "last.pth", resume)
    with log_to(sd.path / "train.log"):
        return _train(cfg, s, sd, resume, train_ds)


def _train(cfg: Config, s: dict[str, Any], sd, resume: bool, train_ds) -> dict:
    device = dist.resolve_device(cfg.get("device", "auto"))
    seed_everything(int(cfg.seed))
    model = build_classifier(cfg.cls_model, train_ds.num_classes - 1).to(device)
    iters = int(s["iters"])
    if (s["loss"] != "bce" or s["asl"] is not None) and iters > 0:  # iters=0 only stores the model
        if not hasattr(model, "loss_fn"):
            raise WSSSError(f"train_cls.loss='{s['loss']}' needs cls_model.type='cam_classifier'")
        model.loss_fn = build_loss(str(s["loss"]), label_matrix(train_ds), s["pos_weight_max"], s["asl"])
    views = int(s["cache_views"] or 0) if iters > 0 else 0
    if views:
        if not getattr(model, "head_only", False):
            raise WSSSError("train_cls.cache_views needs a classifier that trains only its head "
                            "(cls_model.freeze_backbone=True, unfreeze_last=0, pool='avg')")
        if dist.is_distributed():
            raise WSSSError("train_cls.cache_views runs in one process (head training is CPU-cheap); "
                            "run without torchrun")
    iters = int(s["iters"])
    optimizer = build_optimizer(model, s)
    scheduler = build_scheduler(optimizer, iters, kind=s["schedule"], power=float(s["power"]),
                                warmup_iters=int(s["warmup_iters"]))
    use_amp = bool(s["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    wood = s["wood"]
    ood_ds = None
    if wood:
        _check_wood_model(model, cached=bool(views))
        if views and float(wood["adv_step"]) > 0:
            raise WSSSError("train_cls.wood.adv_step moves OoD images, but with train_cls.cache_views the head trains "
                            "on cached features; set adv_step=0")
        ood_ds = ood_dataset(cfg, wood, train_ds)
        n_mined = len(ood_ds) if wood["top_k"] is None else min(int(wood["top_k"]), len(ood_ds))
        if n_mined < int(s["batch_size"]) * dist.world_size():  # fail now, not at start_iter
            raise WSSSError(f"train_cls.wood: {n_mined} OoD images would be mined, fewer than one batch of "
                            f"{int(s['batch_size']) * dist.world_size()}; raise wood.top_k or add OoD images")
    wood_state: dict[str, Any] | None = None

    last = sd.path / "last.pth"
    start = 0
    history: list[dict[str, Any]] = []
    if last.is_file():
        state = load_checkpoint(last, model, optimizer, scheduler, scaler)
        start = int(state["iteration"])
        history = list((state.get("extra") or {}).get("history", []))
        wood_state = (state.get("extra") or {}).get("wood")
    elif resume:
        log.info("--resume: no %s yet, starting from iteration 0", last)

    net: nn.Module = _LossModule(model)
    net = dist.wrap_ddp(net, device, find_unused_parameters=bool(s["find_unused_parameters"]))

    if s["augmentation"] == "toco" and not getattr(model, "accepts_views", False):
        raise WSSSError(f"train_cls.augmentation='toco' makes several views per image; cls_model type "
                        f"'{cfg.cls_model.get('type')}' takes one (use it with type='toco')")
    sampler = ResumableBatchSampler(len(train_ds), int(s["batch_size"]), iters, seed=int(cfg.seed), start_iter=start)
    if views:
        feats = torch.from_numpy(cache_features(model, train_ds, s, int(cfg.seed), sd.path, device))
        targets = torch.from_numpy(label_matrix(train_ds))
        loader = sampler

        ood_feats = (torch.from_numpy(cache_features(model, ood_ds, s, int(cfg.seed) + 1, sd.path, device,
                                                     "ood_features")) if wood else None)
        if wood:
            log.info("W-OoD on cached features: the metric loss has no trainable input (frozen backbone) and is "
                     "left out; the mined OoD images train the head as all-negative")

        def step(batch, ood_batch=None, wood_dev=None) -> dict[str, torch.Tensor]:
            idx = [k for _, k in batch]
            pooled = torch.stack([feats[k, view_of(int(cfg.seed), e, k, views)] for e, k in batch])
            losses = model.head_losses(pooled.to(device), targets[idx].to(device))
            if ood_batch is None:
                return losses
            rows = wood_dev["mined_rows"]
            ood_pooled = torch.stack([ood_feats[rows[k], view_of(int(cfg.seed) + 1, e, k, views)]
                                      for e, k in ood_batch])
            return cached_wood_losses(model, losses, ood_pooled.to(device), wood_dev)
    else:
        data = _EpochIndexed(ClassificationSet(train_ds, train_transform(s), seed=int(cfg.seed)))
        loader = DataLoader(data, batch_sampler=sampler, num_workers=int(s["num_workers"]),
                            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(int(cfg.seed)))

        def step(batch, ood_batch=None, wood_dev=None) -> dict[str, torch.Tensor]:
            images, labels, _idx = batch
            ood_images = None if ood_batch is None else ood_batch[0].to(device, non_blocking=True)
            return net(images.to(device, non_blocking=True), labels.to(device, non_blocking=True), it,
                       ood_images, wood_dev)
    val_ds = _val_split(cfg)
    val_bs = int(s["val_batch_size"] or s["batch_size"])
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)

    log.info("train_cls: %s on %s, %d images, iterations %d..%d, batch %d x %d rank(s), amp=%s, loss %s%s",
             cfg.cls_model.get("type"), device, len(train_ds), start, iters, int(s["batch_size"]),
             dist.world_size(), use_amp, s["loss"], f", head on {views} cached views" if views else "")
    model.train()
    bar = None
    if dist.is_main():
        from tqdm import tqdm
        bar = tqdm(total=iters, initial=start, desc="train_cls", unit="it", dynamic_ncols=True)
    t0 = time.time()
    running: dict[str, float] = {}
    it = start
    ood_batches = None
    wood_dev: dict[str, Any] | None = None
    for it, batch in enumerate(loader, start=start):
        if wood and it >= wood["start_iter"] and ood_batches is None:
            if wood_state is None:
                wood_state = prepare_wood(model, train_ds, ood_ds, s, int(cfg.seed), device, metric=not views)
            wood_dev = {**wood, **{k: wood_state[k].to(device) for k in ("prototypes", "present", "centers")}}
            if views:  # batches of (epoch, index into the mined list); rows of the cached OoD features
                position = {i: r for r, i in enumerate(ood_ds.ids)}
                wood_dev["mined_rows"] = [position[i] for i in wood_state["mined_ids"]]
                ood_batches = iter(_ood_sampler(len(wood_state["mined_ids"]), s, int(cfg.seed),
                                                iters - wood["start_iter"], it - wood["start_iter"]))
            else:
                ood_batches = _ood_loader(ood_ds, wood_state["mined_ids"], s, int(cfg.seed),
                                          iters - wood["start_iter"], it - wood["start_iter"], device)
        ood_batch = next(ood_batches) if ood_batches is not None else None
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            losses = step(batch, ood_batch, wood_dev)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise WSSSError(f"train_cls: loss is {loss.item()} at iteration {it}; lower train_cls.lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if s["grad_clip"]:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(s["grad_clip"]))
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        done_iters = it + 1
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if done_iters % int(s["log_interval"]) == 0 or done_iters == iters:
            n = done_iters % int(s["log_interval"]) or int(s["log_interval"])
            means = {k: v / n for k, v in running.items()}
            running = {}
            lr = optimizer.param_groups[0]["lr"]
            log.info("iter %d/%d %s lr %.3g (%.2f s/it)", done_iters, iters,
                     " ".join(f"{k} {v:.4f}" for k, v in means.items()), lr,
                     (time.time() - t0) / max(1, done_iters - start))
            history.append({"iter": done_iters, "lr": lr, **{k: round(v, 6) for k, v in means.items()}})
        if done_iters % int(s["ckpt_interval"]) == 0 or done_iters == iters:
            if dist.is_main():
                extra: dict[str, Any] = {"history": history}
                if wood_state is not None:
                    extra["wood"] = wood_state
                save_checkpoint(last, model, optimizer, scheduler, scaler, done_iters, extra=extra)
            dist.barrier()
        if val_ds is not None and int(s["val_interval"]) > 0 and done_iters % int(s["val_interval"]) == 0 \
                and done_iters != iters:
            m = evaluate_map(model, val_ds, int(s["crop_size"]), val_bs, device)
            log.info("iter %d: val mAP %.2f", done_iters, 100 * (m["map"] or 0))
        if kill_at and done_iters == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    if bar is not None:
        bar.close()

    if start < iters and it + 1 < iters:
        raise WSSSError(f"train_cls: data ran out at iteration {it + 1} of {iters}")
    metrics: dict[str, Any] = {"iters": iters, "loss_history": history}
    if wood_state is not None:
        metrics["wood"] = {"start_iter": wood["start_iter"], "ood_candidates": len(ood_ds), "mined_ids":
                           wood_state["mined_ids"], "hardness": wood_state["hardness"],
                           "centers": int(wood_state["centers"].shape[0])}
    if val_ds is not None:
        m = evaluate_map(model, val_ds, int(s["crop_size"]), val_bs, device)
        metrics.update({"val_map": m["map"], "val_ap": m["ap"], "val_split": val_ds.split,
                        "val_images": m["num_images"]})
        log.info("train_cls: val mAP %.2f on %d images of '%s'", 100 * (m["map"] or 0), m["num_images"],
                 val_ds.split)
    if dist.is_main():
        with atomic_path(sd.path / "final.pth") as tmp:
            torch.save(model.state_dict(), tmp)
        write_json_atomic(sd.path / "metrics.json", metrics)
    brief = {k: v for k, v in metrics.items() if k not in ("val_ap", "loss_history", "wood")}
    return close_stage(sd, items=iters, metrics=brief, world_size=dist.world_size())
