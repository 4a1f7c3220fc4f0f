"""Stage make_cam: multi-scale + flip CAMs for every image of a split, in the CAM format of DESIGN.md.

Reads ``data``, ``cls_model`` and ``cam`` (and the ``train_cls`` weights). Writes
``<work_dir>/<cam.name>/cams/<id>.npz`` (``cam.name`` defaults to ``make_cam``; a chain that needs CAMs of two
splits, e.g. ``train_aug`` for the segmentation labels and ``train`` for the seed mIoU, names them
``make_cam_train_aug`` / ``make_cam_train`` so both sit side by side) (keys = the image's labelled classes, maps at the original size,
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
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from wsss import dist
from wsss.cam.io import save_cam
from wsss.cam.memory import USABLE_SHARE, ActivationProbe, available_bytes, fit_size, human_bytes
from wsss.cam.multiscale import multiscale_cam, normalise_cams, normalise_images
from wsss.config import Config
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.engine.checkpoint import load_weights
from wsss.engine.stage import close_stage, open_stage, pending, stage_run
from wsss.errors import InputError, WSSSError
from wsss.eval.cam_eval import evaluate_cam_dir, format_cam_report
from wsss.artifacts import MANIFEST, acquire_lock, missing_items, release_lock, write_json_atomic
from wsss.models.registry import build_classifier
from wsss.schema import Rule, Schema

STAGE = "make_cam"
CONFIG_KEYS = ("data", "cls_model", "cam")
_MAX_PENDING_WRITES = 64
# Test hook: SIGKILL this process once this many images have been computed (the last write may be in flight).
KILL_ENV = "WSSS_TEST_KILL_AFTER_IMAGES"

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = dict(name=None, split=None, scales=[1.0, 0.5, 1.5, 2.0], flip=True, batch_size=8,
                                num_workers=2, amp=True, checkpoint=None, bg_threshold=0.15, evaluate=True,
                                max_side=None)
#: What the ``cam`` section accepts (wsss/schema.py); batch size and workers change speed only, the folder
#: ``name`` only where the CAMs go, the threshold and ``evaluate`` only the report: none is part of the CAMs'
#: identity. ``max_side``: images whose longer side is larger are shrunk to it for inference and their CAMs resized
#: back (a 6000x4000 photo at 4 scales needs tens of GB otherwise).
SCHEMA = Schema("cam", DEFAULTS, rules=dict(
    scales=Rule(gt=0, nonempty=True), batch_size=Rule(min=1), num_workers=Rule(min=0), split=Rule(kind="str"),
    name=Rule(kind="str"), checkpoint=Rule(kind="str"), bg_threshold=Rule(min=0, max=1),
    max_side=Rule(kind="int", min=16, nullable=True)),
    runtime=("batch_size", "num_workers", "name"), evaluation=("bg_threshold", "evaluate"))
SCHEMAS = (SCHEMA,)


def settings(cfg: Config) -> dict[str, Any]:
    """``cam`` section with defaults filled in; unknown keys and wrong values are refused (one line)."""
    return SCHEMA.resolve(cfg.get("cam"))


def inputs(cfg: Config) -> list[str]:
    """train_cls, unless ``cam.checkpoint`` names the weights directly."""
    return [] if (cfg.get("cam") or {}).get("checkpoint") else ["train_cls"]


def stage_name(cfg: Config) -> str:
    """The stage folder: ``cam.name`` or 'make_cam'."""
    return str((cfg.get("cam") or {}).get("name") or STAGE)


def cam_split(cfg: Config) -> str:
    return (cfg.get("cam") or {}).get("split") or cfg.data.get("cam_split") or cfg.data.train_split


def cam_path(stage_dir: Path, image_id: str) -> Path:
    return stage_dir / "cams" / f"{image_id}.npz"


def load_model(cfg: Config, num_classes_fg: int, device: torch.device,
               checkpoint: str | Path | None = None) -> torch.nn.Module:
    """The trained classifier in eval mode (initial weights are not fetched: the checkpoint replaces them).
    ``checkpoint`` defaults to ``cam.checkpoint``, then ``<work_dir>/train_cls/final.pth``."""
    model_cfg = dict(cfg.cls_model)
    for key in ("pretrained", "weights"):
        if key in model_cfg:
            model_cfg[key] = False if key == "pretrained" else None
    if model_cfg.get("head_init"):  # the trained head comes from the checkpoint too
        model_cfg["head_init"] = None
    model = build_classifier(model_cfg, num_classes_fg)
    ckpt = checkpoint or (cfg.get("cam") or {}).get("checkpoint") or Path(cfg.work_dir) / "train_cls" / "final.pth"
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
               flip: bool, amp: bool, infer_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Normalised CAMs of a same-size batch, labelled classes only.

    images: [B, H, W, 3] uint8 on the compute device; labels: per image its class indices (1..C-1).
    ``infer_size``: run the network on the images resized to this (h, w) (``cam.max_side``) and bring the
    fused maps back to (H, W) before normalising. Returns per image float32 [len(labels[b]), H, W] in [0, 1].
    """
    keep = sorted({c - 1 for lab in labels for c in lab})
    h, w = images.shape[1:3]
    if not keep:
        return [np.zeros((0, h, w), np.float32) for _ in labels]
    idx = torch.tensor(keep, dtype=torch.long, device=images.device)
    x = normalise_images(images)
    if infer_size is not None and tuple(infer_size) != (h, w):
        x = torch.nn.functional.interpolate(x, size=tuple(infer_size), mode="bilinear", align_corners=False,
                                            antialias=True)
    fused = multiscale_cam(model.cam, x, scales, flip, classes=idx, amp=amp)
    if tuple(fused.shape[-2:]) != (h, w):
        fused = torch.nn.functional.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False)
    fused = normalise_cams(fused)
    pos = {c: k for k, c in enumerate(keep)}
    out = []
    for b, lab in enumerate(labels):
        rows = [pos[c - 1] for c in lab]
        out.append(fused[b, rows].cpu().numpy() if rows else np.zeros((0, *fused.shape[-2:]), np.float32))
    return out


def _is_oom(e: BaseException) -> bool:
    """CUDA's out-of-memory error, or the CPU allocator's "can't allocate memory"."""
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


class _MemoryPlan:
    """Fits each same-size batch into the free memory of the device before running it (wsss/cam/memory.py)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, scales: Sequence[float], flip: bool,
                 max_side: int | None) -> None:
        self.probe = ActivationProbe(model.cam, list(model.modules()), device)
        self.device, self.scales, self.flip, self.max_side = device, list(scales), flip, max_side
        self.resized = 0

    def refuse(self, image_id: str, h: int, w: int, need: int, free: int) -> None:
        raise WSSSError(f"make_cam: image '{image_id}' ({w}x{h}) needs about {human_bytes(need)} for CAMs at "
                        f"scales {self.scales}{' with flip' if self.flip else ''}, only {human_bytes(free)} "
                        f"of {self.device.type} memory are free; set cam.max_side (e.g. 2048) or use "
                        f"fewer / smaller cam.scales")

    def check_alone(self, ds: SegDataset, groups: list[list[str]]) -> None:
        """Before any CAM is computed: every image must fit on its own (so a refusal leaves nothing written,
        and the corrected run is not blocked by half a stage)."""
        free = self.available()
        for group in groups:
            with Image.open(ds.image_path(group[0])) as im:
                w, h = im.size
            size = fit_size(h, w, self.max_side)
            classes = max(len(ds.labels.get(i, [])) for i in group)
            need = self.probe.estimate(1, size[0], size[1], self.scales, self.flip, classes)
            if need > free:
                self.refuse(group[0], h, w, need, free)

    def available(self) -> int:
        free = available_bytes(self.device)
        if self.device.type == "cuda":  # blocks PyTorch's allocator holds but does not use are free for us too
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return int(USABLE_SHARE * free)

    def chunks(self, ids: list[str], batch: np.ndarray, labels: list[list[int]]
               ) -> Iterator[tuple[list[str], np.ndarray, list[list[int]], tuple[int, int]]]:
        """(ids, batch, labels, inference size) pieces of a batch that each fit; raises for an image that
        does not fit alone."""
        h, w = batch.shape[1:3]
        size = fit_size(h, w, self.max_side)
        classes = len({c for lab in labels for c in lab})
        need = self.probe.estimate(len(ids), size[0], size[1], self.scales, self.flip, classes)
        free = self.available()
        if need <= free:
            if size != (h, w):
                self.resized += len(ids)
            yield ids, batch, labels, size
            return
        if len(ids) == 1:
            self.refuse(ids[0], h, w, need, free)
        log.warning("make_cam: %d images of %dx%d need about %s, %s free: running them in smaller batches",
                    len(ids), w, h, human_bytes(need), human_bytes(free))
        half = len(ids) // 2
        yield from self.chunks(ids[:half], batch[:half], labels[:half])
        yield from self.chunks(ids[half:], batch[half:], labels[half:])


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Write CAMs for the configured split; returns the stage manifest. ``resume`` is implied (per image)."""
    return write_cam_stage(cfg, stage_name(cfg), CONFIG_KEYS, inputs(cfg), settings(cfg), cam_split(cfg),
                           fused_cams, SCHEMAS, force=force)


def write_cam_stage(cfg: Config, name: str, config_keys: Sequence[str], stage_inputs: list[str],
                    s: dict[str, Any], split: str, fuse: Callable[..., list], schemas: Sequence[Any],
                    force: bool = False) -> dict:
    """The body of every stage that runs the trained classifier over a split and writes CAM-format npz files
    (make_cam; seg_cam for a segmentation branch): per-image resume, memory-planned size-grouped batches, OOM
    retry, evaluation. ``fuse(model, images [B,H,W,3] uint8, labels, scales, flip, amp, infer_size)`` gives per
    image float32 [len(labels[b]), H, W] in [0, 1], or a ``(keys, maps)`` pair when it picks the classes itself;
    ``s`` holds the keys of make_cam's DEFAULTS."""
    ds = build_dataset(cfg.data, split)
    sd, done = open_stage(cfg, name, config_keys, stage_inputs, force=force, datasets=[ds], schemas=schemas)
    if done:
        _refresh_report(sd, ds, split, s, name)
        return sd.manifest
    device = dist.resolve_device(cfg.get("device", "auto"))
    model = load_model(cfg, ds.num_classes - 1, device, s.get("checkpoint"))
    todo = pending(ds.ids, lambda i: cam_path(sd.path, i))
    if len(todo) < math.ceil(len(ds.ids) / dist.world_size()) and dist.is_main():
        log.info("%s: resuming, %d of this rank's images still to do", name, len(todo))
    groups = size_groups(ds, todo, max(1, int(s["batch_size"])))
    loader = DataLoader(_GroupSet(ds, groups), batch_size=None, shuffle=False,
                        num_workers=int(s["num_workers"]), collate_fn=_as_is)
    scales = [float(x) for x in s["scales"]]
    amp = bool(s["amp"]) and device.type == "cuda"
    log.info("%s: %d images of '%s' (%d to do on this rank, %d groups), scales %s, flip %s, on %s",
             name, len(ds.ids), split, len(todo), len(groups), scales, s["flip"], device)

    plan = _MemoryPlan(model, device, scales, bool(s["flip"]), s["max_side"])
    plan.check_alone(ds, groups)
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc=name, unit="img", disable=not dist.is_main(), dynamic_ncols=True)
    writes: list[Future] = []
    kill_after, computed = int(os.environ.get(KILL_ENV, "0") or 0), 0
    with ThreadPoolExecutor(max_workers=2) as writer, torch.no_grad():
        for items in loader:
            for ids, batch in _by_shape(items):
                labels = [list(ds.labels.get(i, [])) for i in ids]
                for c_ids, c_batch, c_labels, size in plan.chunks(ids, batch, labels):
                    for i, keys, maps in _process(model, c_ids, c_batch, c_labels, scales, bool(s["flip"]), amp,
                                                  device, size, fuse):
                        writes.append(writer.submit(save_cam, cam_path(sd.path, i), keys, maps))
                bar.update(len(ids))
                computed += len(ids)
                if kill_after and computed >= kill_after:
                    _drain(writes, keep=1)  # earlier files complete, the last write possibly mid-way
                    os.kill(os.getpid(), signal.SIGKILL)
            writes = _drain(writes, keep=_MAX_PENDING_WRITES)
        _drain(writes, keep=0)
    bar.close()

    per_rank = [(len(todo), plan.resized)]
    if dist.is_distributed():
        per_rank = [None] * dist.world_size()
        torch.distributed.all_gather_object(per_rank, (len(todo), plan.resized))
    resized = sum(r for _, r in per_rank)
    per_rank = [n for n, _ in per_rank]
    if resized:
        log.info("%s: %d images shrunk to a longer side of %d for inference (CAMs stored at full size)",
                 name, resized, s["max_side"])
    metrics: dict[str, Any] = {}
    # Every rank checks and scores (its shard, then the sums): rank 0 alone would take an hour on COCO while
    # the others wait in a collective. Same files on every rank (shared work dir), so all raise alike.
    missing = missing_items(ds.ids, lambda i: cam_path(sd.path, i))
    if missing:
        raise WSSSError(f"{sd.path}: {len(missing)} CAMs missing after the run (first: {missing[0]}); re-run")
    if s["evaluate"] and ds.has_masks:
        metrics = _evaluate(sd.path, ds, split, float(s["bg_threshold"]), name)
    return close_stage(sd, items=len(ds.ids), metrics=metrics, split=split, computed_per_rank=per_rank,
                       max_side=s["max_side"], resized_for_inference=resized)


def _evaluate(stage_dir: Path, ds: SegDataset, split: str, bg_threshold: float, name: str,
              distributed: bool = True) -> dict[str, Any]:
    """Seed mIoU of the stage's CAMs at ``bg_threshold`` and the oracle sweep: metrics.json and the report (rank
    0), and the figures for the manifest. ``distributed``: every rank scores its shard and the sums are reduced."""
    result = evaluate_cam_dir(stage_dir / "cams", ds, bg_threshold=bg_threshold, progress=True,
                              distributed=distributed)
    metrics = {"miou": result["miou"], "bg_threshold": result["bg_threshold"],
               "oracle_miou": result["oracle"]["miou"], "oracle_threshold": result["oracle"]["threshold"]}
    if dist.is_main():
        write_json_atomic(stage_dir / "metrics.json", {**result, "split": split})
        log.info("\n%s", format_cam_report(result, title=f"{name} seeds on '{split}'"))
        log.info("%s: seed mIoU %.2f at bg %.2f (oracle %.2f at %.2f) on %d images of '%s'", name,
                 100 * (metrics["miou"] or 0), metrics["bg_threshold"], 100 * metrics["oracle_miou"],
                 metrics["oracle_threshold"], len(ds.ids), split)
    return metrics


def _refresh_report(sd: Any, ds: SegDataset, split: str, s: dict[str, Any], name: str) -> None:
    """A complete stage re-run with another evaluation-only setting (``cam.bg_threshold``): the CAMs stay, the
    report is recomputed at the new threshold (it is not part of the CAMs' identity, so nothing else changes)."""
    old = (sd.manifest.get("metrics") or {}).get("bg_threshold")
    if not (dist.is_main() and s["evaluate"] and ds.has_masks) or old is None \
            or abs(float(old) - float(s["bg_threshold"])) < 1e-12:
        return
    log.info("%s: CAMs unchanged; re-scoring them at cam.bg_threshold %s (was %s)", name, s["bg_threshold"], old)
    acquire_lock(sd.path)
    try:
        manifest = dict(sd.manifest)
        manifest["metrics"] = {**(manifest.get("metrics") or {}),
                               **_evaluate(sd.path, ds, split, float(s["bg_threshold"]), name, distributed=False)}
        write_json_atomic(sd.path / MANIFEST, manifest)
        sd.manifest = manifest
    finally:
        release_lock(sd.path)


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
             infer_size: tuple[int, int] | None = None, fuse: Callable[..., list] = fused_cams,
             ) -> list[tuple[str, list[int], np.ndarray]]:
    """(id, keys, cams) of one same-size batch; on out-of-memory (CUDA, or the CPU allocator when the estimate
    was too low), its images again one at a time (P-NOC behaviour), and an image that does not fit alone is a
    one-line error naming it."""
    try:
        images = torch.from_numpy(batch).to(device, non_blocking=True)
        fused = fuse(model, images, labels, scales, flip, amp, infer_size)
        return [(i, *(f if isinstance(f, tuple) else (lab, f))) for i, lab, f in zip(ids, labels, fused)]
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not _is_oom(e):
            raise
        if len(ids) == 1:
            raise WSSSError(f"make_cam: out of {device.type} memory on image '{ids[0]}' alone "
                            f"({batch.shape[2]}x{batch.shape[1]}); set cam.max_side or use fewer/smaller "
                            f"cam.scales") from e
    images = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.warning("make_cam: out of %s memory on a batch of %d images of %dx%d; retrying them one at a time",
                device.type, len(ids), batch.shape[2], batch.shape[1])
    out = []
    for k, i in enumerate(ids):
        out += _process(model, [i], batch[k:k + 1], [labels[k]], scales, flip, amp, device, infer_size, fuse)
    return out
