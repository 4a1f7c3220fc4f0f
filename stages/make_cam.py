"""Stage make_cam: multi-scale + flip CAMs for every image of a split, in the CAM format of DESIGN.md.

Reads ``data``, ``cls_model`` and ``cam`` (and the ``train_cls`` weights). Writes
``<work_dir>/make_cam/cams/<id>.npz`` (keys = the image's labelled classes, maps at the original size,
normalised per class to [0, 1]) and, when the split has masks, ``metrics.json`` with the seed mIoU at
``cam.bg_threshold`` and the oracle threshold.

Speed: images are grouped by size and each group goes through the network in one forward pass per scale,
flipped copies included (:func:`wsss.cam.multiscale.multiscale_cam`); images are read and files written in
background workers/threads. Robustness: files are written atomically and skipped when present, so a killed run
resumes per image; a CUDA out-of-memory error on a group retries its images one at a time (logged). Under
``torchrun`` each rank takes its share of the ids.

Only the classifier interface (``cam``) is used, so any registered classifier works here unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from wsss import dist
from wsss.cam.io import save_cam
from wsss.cam.multiscale import multiscale_cam, normalise_cams, normalise_images
from wsss.config import Config
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.engine.checkpoint import load_weights
from wsss.engine.stage import close_stage, open_stage, pending
from wsss.errors import InputError, WSSSError
from wsss.eval.cam_eval import evaluate_cam_dir, format_cam_report
from wsss.artifacts import missing_items, write_json_atomic
from wsss.models.registry import build_classifier

STAGE = "make_cam"
CONFIG_KEYS = ("data", "cls_model", "cam")
_MAX_PENDING_WRITES = 64
# Test hook: SIGKILL this process once this many images have been computed (the last write may be in flight).
KILL_ENV = "WSSS_TEST_KILL_AFTER_IMAGES"

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = dict(split=None, scales=[1.0, 0.5, 1.5, 2.0], flip=True, batch_size=8, num_workers=2,
                                amp=True, checkpoint=None, bg_threshold=0.15, evaluate=True)


def settings(cfg: Config) -> dict[str, Any]:
    """``cam`` section with defaults filled in; unknown keys are refused (a typo must not pass silently)."""
    section = dict(cfg.get("cam") or {})
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise WSSSError(f"cam: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **section}
    if not s["scales"] or any(float(x) <= 0 for x in s["scales"]):
        raise WSSSError(f"cam.scales must be positive numbers, got {s['scales']}")
    return s


def inputs(cfg: Config) -> list[str]:
    """train_cls, unless ``cam.checkpoint`` names the weights directly."""
    return [] if (cfg.get("cam") or {}).get("checkpoint") else ["train_cls"]


def cam_split(cfg: Config) -> str:
    return (cfg.get("cam") or {}).get("split") or cfg.data.get("cam_split") or cfg.data.train_split


def cam_path(stage_dir: Path, image_id: str) -> Path:
    return stage_dir / "cams" / f"{image_id}.npz"


def load_model(cfg: Config, num_classes_fg: int, device: torch.device) -> torch.nn.Module:
    """The trained classifier in eval mode (initial weights are not fetched: the checkpoint replaces them)."""
    model_cfg = dict(cfg.cls_model)
    for key in ("pretrained", "weights"):
        if key in model_cfg:
            model_cfg[key] = False if key == "pretrained" else None
    if model_cfg.get("head_init"):  # the trained head comes from the checkpoint too
        model_cfg["head_init"] = None
    model = build_classifier(model_cfg, num_classes_fg)
    ckpt = (cfg.get("cam") or {}).get("checkpoint") or Path(cfg.work_dir) / "train_cls" / "final.pth"
    load_weights(ckpt, model)
    return model.to(device).eval()


# --- batching -------------------------------------------------------------------------------------------
def size_groups(ds: SegDataset, ids: Sequence[str], batch_size: int) -> list[list[str]]:
    """Ids grouped by image size (header read only), each group at most ``batch_size`` long, in id order
    within a size. Images of equal size can share a forward pass without padding, so every CAM is exactly
    what the image alone would give."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for i in ids:
        try:
            with Image.open(ds.image_path(i)) as im:
                size = im.size
        except Exception as e:
            raise InputError(ds.image_path(i), f"unreadable image ({type(e).__name__}: {e})") from e
        by_size.setdefault(size, []).append(i)
    groups = []
    for size in sorted(by_size, key=lambda s: -len(by_size[s])):
        members = by_size[size]
        groups += [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
    return groups


class _GroupSet(Dataset):
    """Item g: the images of group g as a list of (id, [H, W, 3] uint8) — read in DataLoader workers."""

    def __init__(self, ds: SegDataset, groups: list[list[str]]) -> None:
        self.ds, self.groups = ds, groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, g: int) -> list[tuple[str, np.ndarray]]:
        return [(i, self.ds.image(i)) for i in self.groups[g]]


def _as_is(item: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Keep a group as read (the default would turn the arrays into tensors)."""
    return item


def _by_shape(items: list[tuple[str, np.ndarray]]) -> Iterator[tuple[list[str], np.ndarray]]:
    """Split a group by actual decoded shape (a header and the decoder can disagree, e.g. EXIF rotation)."""
    shapes: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
    for i, img in items:
        shapes.setdefault(img.shape, []).append((i, img))
    for members in shapes.values():
        yield [i for i, _ in members], np.stack([img for _, img in members])


def fused_cams(model: torch.nn.Module, images: torch.Tensor, labels: list[list[int]], scales: Sequence[float],
               flip: bool, amp: bool) -> list[np.ndarray]:
    """Normalised CAMs of a same-size batch, labelled classes only.

    images: [B, H, W, 3] uint8 on the compute device; labels: per image its class indices (1..C-1).
    Returns per image float32 [len(labels[b]), H, W] in [0, 1].
    """
    keep = sorted({c - 1 for lab in labels for c in lab})
    if not keep:
        h, w = images.shape[1:3]
        return [np.zeros((0, h, w), np.float32) for _ in labels]
    idx = torch.tensor(keep, dtype=torch.long, device=images.device)
    x = normalise_images(images)
    fused = normalise_cams(multiscale_cam(model.cam, x, scales, flip, classes=idx, amp=amp))
    pos = {c: k for k, c in enumerate(keep)}
    out = []
    for b, lab in enumerate(labels):
        rows = [pos[c - 1] for c in lab]
        out.append(fused[b, rows].cpu().numpy() if rows else np.zeros((0, *fused.shape[-2:]), np.float32))
    return out


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Write CAMs for the configured split; returns the stage manifest. ``resume`` is implied (per image)."""
    s = settings(cfg)
    split = cam_split(cfg)
    sd, done = open_stage(cfg, STAGE, CONFIG_KEYS, inputs(cfg), force=force)
    if done:
        return sd.manifest
    ds = build_dataset(cfg.data, split)
    device = dist.resolve_device(cfg.get("device", "auto"))
    model = load_model(cfg, ds.num_classes - 1, device)
    todo = pending(ds.ids, lambda i: cam_path(sd.path, i))
    if len(todo) < math.ceil(len(ds.ids) / dist.world_size()) and dist.is_main():
        log.info("make_cam: resuming, %d of this rank's images still to do", len(todo))
    groups = size_groups(ds, todo, max(1, int(s["batch_size"])))
    loader = DataLoader(_GroupSet(ds, groups), batch_size=None, shuffle=False,
                        num_workers=int(s["num_workers"]), collate_fn=_as_is)
    scales = [float(x) for x in s["scales"]]
    amp = bool(s["amp"]) and device.type == "cuda"
    log.info("make_cam: %d images of '%s' (%d to do on this rank, %d groups), scales %s, flip %s, on %s",
             len(ds.ids), split, len(todo), len(groups), scales, s["flip"], device)

    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc="make_cam", unit="img", disable=not dist.is_main(), dynamic_ncols=True)
    writes: list[Future] = []
    kill_after, computed = int(os.environ.get(KILL_ENV, "0") or 0), 0
    with ThreadPoolExecutor(max_workers=2) as writer, torch.no_grad():
        for items in loader:
            for ids, batch in _by_shape(items):
                labels = [list(ds.labels.get(i, [])) for i in ids]
                for i, keys, maps in _process(model, ids, batch, labels, scales, bool(s["flip"]), amp, device):
                    writes.append(writer.submit(save_cam, cam_path(sd.path, i), keys, maps))
                bar.update(len(ids))
                computed += len(ids)
                if kill_after and computed >= kill_after:
                    _drain(writes, keep=1)  # earlier files complete, the last write possibly mid-way
                    os.kill(os.getpid(), signal.SIGKILL)
            writes = _drain(writes, keep=_MAX_PENDING_WRITES)
        _drain(writes, keep=0)
    bar.close()

    per_rank = [len(todo)]
    if dist.is_distributed():
        per_rank = [None] * dist.world_size()
        torch.distributed.all_gather_object(per_rank, len(todo))
    metrics: dict[str, Any] = {}
    if dist.is_main():
        missing = missing_items(ds.ids, lambda i: cam_path(sd.path, i))
        if missing:
            raise WSSSError(f"{sd.path}: {len(missing)} CAMs missing after the run (first: {missing[0]}); re-run")
        if s["evaluate"] and ds.has_masks:
            result = evaluate_cam_dir(sd.path / "cams", ds, bg_threshold=float(s["bg_threshold"]), progress=True)
            write_json_atomic(sd.path / "metrics.json", {**result, "split": split})
            log.info("\n%s", format_cam_report(result, title=f"make_cam seeds on '{split}'"))
            metrics = {"miou": result["miou"], "bg_threshold": result["bg_threshold"],
                       "oracle_miou": result["oracle"]["miou"], "oracle_threshold": result["oracle"]["threshold"]}
            log.info("make_cam: seed mIoU %.2f at bg %.2f (oracle %.2f at %.2f) on %d images of '%s'",
                     100 * (metrics["miou"] or 0), metrics["bg_threshold"], 100 * metrics["oracle_miou"],
                     metrics["oracle_threshold"], len(ds.ids), split)
    return close_stage(sd, items=len(ds.ids), metrics=metrics, split=split, computed_per_rank=per_rank)


def _drain(writes: list[Future], keep: int) -> list[Future]:
    """Wait until at most ``keep`` writes are pending (bounds memory; re-raises a failed write)."""
    live = []
    for k, f in enumerate(writes):
        if f.done() or k < len(writes) - keep:
            f.result()
        else:
            live.append(f)
    return live


def _process(model: torch.nn.Module, ids: list[str], batch: np.ndarray, labels: list[list[int]],
             scales: list[float], flip: bool, amp: bool, device: torch.device,
             ) -> list[tuple[str, list[int], np.ndarray]]:
    """(id, keys, cams) of one same-size batch; on CUDA out-of-memory, its images again one at a time
    (P-NOC behaviour), and an image that does not fit alone is a one-line error naming it."""
    try:
        images = torch.from_numpy(batch).to(device, non_blocking=True)
        return list(zip(ids, labels, fused_cams(model, images, labels, scales, flip, amp)))
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not _is_oom(e):
            raise
        if len(ids) == 1:
            raise WSSSError(f"make_cam: out of GPU memory on image '{ids[0]}' alone "
                            f"({batch.shape[2]}x{batch.shape[1]}); use fewer/smaller cam.scales") from e
    images = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.warning("make_cam: out of GPU memory on a batch of %d images of %dx%d; retrying them one at a time",
                len(ids), batch.shape[2], batch.shape[1])
    out = []
    for k, i in enumerate(ids):
        out += _process(model, [i], batch[k:k + 1], [labels[k]], scales, flip, amp, device)
    return out
