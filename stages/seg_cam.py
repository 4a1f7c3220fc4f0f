"""Stage seg_cam: the predictions of a classifier's own segmentation branch (ToCo's single-stage decoder,
``cls_model.seg_head``) written in the CAM format of DESIGN.md, so they feed make_pseudo / crf / eval_cam like
any CAM producer (``pseudo.input='seg_cam'``).

Reads ``data``, ``cls_model`` and ``seg_cam`` (and the ``train_cls`` weights). Writes
``<work_dir>/seg_cam/cams/<id>.npz``: ``keys`` = the image's labelled classes, ``cams`` = their softmax
probabilities at the original size, and ``metrics.json`` (mIoU at ``seg_cam.bg_threshold`` and the oracle).

Why CAM-format probabilities and not masks: the branch's output is a per-class score map; stored as one it
keeps the information a later CRF or a threshold sweep needs, and every consumer already reads the format.
The logits are summed over ``scales`` (each the max of the image and its flip, as ToCo's
infer_seg_as_cam.py), then a softmax runs over background + the image's labelled classes (the absent classes
are left out, the image-level label filter every stage applies). With one labelled class a pixel's foreground
probability beats the background exactly when it is above 0.5, so ``bg_threshold=0.5`` is the decoder's argmax
there; with several classes 0.5 is a slightly stricter rule than the argmax.

``seg_cam.labels='predicted'`` is for held-out evaluation of the decoder as the final segmenter (ToCo's
infer_seg_voc.py): no image-level labels, softmax over all classes, and the stored keys are the foreground
classes that win the argmax at some pixel (a class that never wins cannot pass a threshold >= 0.5).

Per-image resume, batching, the OOM retry and evaluation are make_cam's (``write_cam_stage``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from stages.make_cam import DEFAULTS as CAM_DEFAULTS
from stages.make_cam import SCHEMA as CAM_SCHEMA
from stages.make_cam import write_cam_stage
from wsss.engine.stage import stage_run
from wsss.schema import Rule, Schema
from wsss.cam.multiscale import multiscale_cam, normalise_images
from wsss.config import Config
from wsss.errors import WSSSError

STAGE = "seg_cam"
CONFIG_KEYS = ("data", "cls_model", "seg_cam")
DEFAULTS: dict[str, Any] = {**CAM_DEFAULTS, "scales": [1.0, 1.25, 1.5], "bg_threshold": 0.5, "labels": "image"}
LABEL_MODES = ("image", "predicted")
#: make_cam's keys and rules (wsss/schema.py), plus ``labels``; the same runtime / evaluation-only keys.
SCHEMA = Schema("seg_cam", DEFAULTS, rules={**CAM_SCHEMA.rules, "labels": Rule(choices=LABEL_MODES)},
                runtime=CAM_SCHEMA.runtime, evaluation=CAM_SCHEMA.evaluation)
SCHEMAS = (SCHEMA,)


def settings(cfg: Config) -> dict[str, Any]:
    """``seg_cam`` section with defaults filled in; unknown keys and wrong values are refused (one line)."""
    s = SCHEMA.resolve(cfg.get("seg_cam"))
    if not (cfg.get("cls_model") or {}).get("seg_head"):
        raise WSSSError("seg_cam needs a classifier with a segmentation branch: set cls_model.seg_head=dict(...) "
                        "(type='toco') and train it with train_cls")
    return s


def inputs(cfg: Config) -> list[str]:
    """train_cls, unless ``seg_cam.checkpoint`` names the weights directly."""
    return [] if (cfg.get("seg_cam") or {}).get("checkpoint") else ["train_cls"]


def stage_name(cfg: Config) -> str:
    """The stage folder: ``seg_cam.name`` or 'seg_cam'."""
    return str((cfg.get("seg_cam") or {}).get("name") or STAGE)


def split_of(cfg: Config) -> str:
    return (cfg.get("seg_cam") or {}).get("split") or cfg.data.get("cam_split") or cfg.data.train_split


def fused_seg_probs(model: torch.nn.Module, images: torch.Tensor, labels: list[list[int]] | None,
                    scales: Sequence[float], flip: bool, amp: bool,
                    infer_size: tuple[int, int] | None = None) -> list:
    """Segmentation-branch probabilities of a same-size batch, labelled classes only.

    images: [B, H, W, 3] uint8 on the compute device; labels: per image its class indices (1..C-1).
    Returns per image float32 [len(labels[b]), H, W] in [0, 1]: softmax over background + labelled classes
    of the logits summed over scales (max over each flip pair when ``flip``). ``labels=None``: no image-level
    labels; per image ``(keys, maps)`` with the softmax over all classes and keys = the foreground classes
    that win the argmax somewhere. ``infer_size``: run the network on the images resized to this (h, w)
    (``seg_cam.max_side``) and bring the logits back to (H, W).
    """
    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        if not flip:
            return model.seg_logits(x)
        both = model.seg_logits(torch.cat([x, x.flip(-1)], dim=0))
        n = x.shape[0]
        return torch.maximum(both[:n], both[n:].flip(-1))

    x = normalise_images(images)
    h, w = x.shape[-2:]
    if infer_size is not None and tuple(infer_size) != (h, w):
        x = torch.nn.functional.interpolate(x, size=tuple(infer_size), mode="bilinear", align_corners=False,
                                            antialias=True)
    summed = multiscale_cam(logits_fn, x, scales, flip=False, amp=amp)  # [B, C, h', w']
    if tuple(summed.shape[-2:]) != (h, w):
        summed = torch.nn.functional.interpolate(summed, size=(h, w), mode="bilinear", align_corners=False)
    out: list = []
    if labels is None:
        probs = torch.softmax(summed, dim=1)
        for b in range(probs.shape[0]):
            keys = [int(c) for c in torch.unique(probs[b].argmax(dim=0)).tolist() if c > 0]
            out.append((keys, probs[b, keys].cpu().numpy().astype(np.float32)))
        return out
    for b, lab in enumerate(labels):
        keep = torch.tensor([0] + [int(c) for c in lab], dtype=torch.long, device=summed.device)
        probs = torch.softmax(summed[b].index_select(0, keep), dim=0)[1:]
        out.append(probs.cpu().numpy().astype(np.float32))
    return out


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Write the segmentation branch's probabilities for the configured split; returns the manifest."""
    s = settings(cfg)
    fuse = fused_seg_probs
    if s["labels"] == "predicted":
        def fuse(model, images, labels, scales, flip, amp, infer_size=None):  # noqa: E306 (labels not used)
            return fused_seg_probs(model, images, None, scales, flip, amp, infer_size)
        fuse.__name__ = "seg_cam"
    return write_cam_stage(cfg, stage_name(cfg), CONFIG_KEYS, inputs(cfg), s, split_of(cfg), fuse, SCHEMAS,
                           force=force)
