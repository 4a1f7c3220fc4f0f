"""Stage ``clip_cam``: training-free CAMs from a frozen CLIP ViT, in the standard CAM format.

Reads the images and image-level labels of ``clip_cam.split`` (default ``data.cam_split``) and writes
``<work_dir>/clip_cam/cams/<id>.npz`` (keys = the image's labelled classes only, cams float16 [K, H, W] in
[0, 1] at the original image size), the same format as ``make_cam``, so ``crf``, ``make_pseudo`` and the
other refinements read it with ``input='clip_cam'``. Methods (:mod:`wsss.refine.clip_cam`): CLIP-ES softmax
Grad-CAM (``method='gradcam'``) or dense patch-text alignment (``method='dense'``), each optionally refined by
the class-aware attention affinity (``refine=True``).

Config section (defaults in configs/_base_/clip_cam.py)::

    clip_cam = dict(model='ViT-B-16', pretrained='openai', method='gradcam', templates='clip_es',
                    background_prompts='voc', class_names=None, scales=[1.0], refine=True, batch_size=8, ...)

Per-image resume (a file exists only when complete), ids sharded by rank under torchrun, images of equal
network input size run as one batch. When the split has masks, ``metrics.json`` gets the CAM mIoU at
``bg_threshold`` and the oracle over a threshold sweep (:mod:`wsss.eval.cam_eval`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from wsss import dist
from wsss.cam.io import save_cam
from wsss.config import Config
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.data.torch_sets import InferenceSet
from wsss.engine.stage import close_stage, open_stage, pending, stage_run
from wsss.errors import WSSSError
from wsss.eval.cam_eval import evaluate_cam_dir, format_cam_report
from wsss.eval.confusion import write_metrics
from wsss.models.clip_loader import load_clip
from wsss.refine.clip_cam import ClipCamSettings, TextBank, build_text_bank, clip_cams
from wsss.refine.clip_prompts import resolve_background, resolve_templates
from wsss.engine.stage import gt_ids, hashed_view

log = logging.getLogger(__name__)

STAGE = "clip_cam"
SECTION = "clip_cam"
CONFIG_KEYS = ("clip_cam", "data")
#: Keys that change speed or the logged evaluation only, never the CAM files: left out of the config hash.
RUNTIME_KEYS = ("batch_size", "num_workers", "bg_threshold", "name")
_MODEL_KEYS = {"model", "pretrained", "model_cfg", "quick_gelu", "cache_dir"}
_TEXT_KEYS = {"templates", "background_prompts", "class_names", "class_prompts", "use_synonyms"}
_SETTING_KEYS = set(ClipCamSettings.__dataclass_fields__)
_SECTION_KEYS = _MODEL_KEYS | _TEXT_KEYS | _SETTING_KEYS | set(RUNTIME_KEYS) | {"split"}


def inputs(cfg: Config) -> list[str]:
    """No input stage: CLIP needs only the images and their labels."""
    return []


def stage_name(cfg: Config) -> str:
    return str(cfg.get(SECTION, {}).get("name") or STAGE)


def section(cfg: Config) -> dict:
    """The ``clip_cam`` section as a plain dict; unknown keys (typos) are a one-line error."""
    s = cfg.get(SECTION)
    if s is None:
        raise WSSSError(f"config has no '{SECTION}' section (inherit configs/_base_/clip_cam.py)")
    s = s.to_dict() if hasattr(s, "to_dict") else dict(s)
    unknown = sorted(set(s) - _SECTION_KEYS)
    if unknown:
        raise WSSSError(f"unknown key(s) {unknown} in config section '{SECTION}'; expected some of "
                        f"{sorted(_SECTION_KEYS)}")
    return s


def settings_from(sec: dict) -> ClipCamSettings:
    """The CAM computation settings of a section (validated)."""
    kw = {k: sec[k] for k in _SETTING_KEYS if k in sec and sec[k] is not None}
    if "scales" in kw:
        kw["scales"] = tuple(kw["scales"])
    return ClipCamSettings(**kw)


def prompt_class_names(sec: dict, ds: SegDataset) -> list[str]:
    """Class names the prompts use: the dataset's, or ``clip_cam.class_names`` (C-1 foreground names or C names
    with 'background' first) when the dataset's names are codes CLIP cannot read."""
    names = sec.get("class_names")
    if not names:
        return list(ds.class_names)
    names = [str(n) for n in names]
    if len(names) == ds.num_classes - 1:
        return ["background"] + names
    if len(names) == ds.num_classes and names[0].lower() == "background":
        return names
    raise WSSSError(f"clip_cam.class_names has {len(names)} names; the dataset has {ds.num_classes - 1} foreground "
                    f"classes ({', '.join(ds.class_names[1:])})")


def text_bank_for(clip, sec: dict, ds: SegDataset, device: torch.device) -> TextBank:
    """Text embeddings of the dataset's classes and the background prompts (once per run)."""
    names = prompt_class_names(sec, ds)
    templates = resolve_templates(sec.get("templates"))
    background = resolve_background(sec.get("background_prompts"))
    bank = build_text_bank(clip, names, templates, background, sec.get("class_prompts"),
                           bool(sec.get("use_synonyms", True)), device)
    log.info("clip_cam: %d class prompts x %d template(s), %d background prompts; e.g. '%s'",
             len(bank.prompts), len(templates), len(background), templates[0].format(bank.prompts[0][0]))
    return bank


def image_labels(ds: SegDataset, image_id: str) -> list[int]:
    """Sorted unique foreground labels of an image (1..C-1)."""
    return sorted({int(c) for c in ds.labels.get(image_id, []) if 0 < int(c) < ds.num_classes})


def size_sorted(ds: SegDataset, ids: list[str]) -> list[str]:
    """``ids`` ordered by image size (read from the file headers), so a batch mostly holds images of one network
    input size and runs as one forward pass. Unreadable headers sort last; reading errors surface later."""
    def size(image_id: str) -> tuple[int, int, int]:
        try:
            with Image.open(ds.image_path(image_id)) as im:
                return 0, im.height, im.width
        except Exception:  # reported with its path when the image is read for real
            return 1, 0, 0
    return sorted(ids, key=size)


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Write CLIP CAMs for every image of the split; returns the stage manifest."""
    sec = section(cfg)
    settings = settings_from(sec)
    name = stage_name(cfg)
    split = sec.get("split") or cfg.data.get("cam_split", "train")
    ds = build_dataset(cfg.data, split)
    sd, done = open_stage(hashed_view(cfg, CONFIG_KEYS, SECTION, RUNTIME_KEYS), name, CONFIG_KEYS, inputs(cfg),
                          force=force, datasets=[ds])
    if done:
        return sd.manifest
    cam_dir = sd.path / "cams"

    def out_path(image_id: str) -> Path:
        return cam_dir / f"{image_id}.npz"

    todo = pending(ds.ids, out_path)
    log.info("clip_cam: %d of %d %s images to do on rank %d (%s, %s)", len(todo), len(ds),
             split, dist.rank(), settings.method, "refined" if settings.refine else "unrefined")
    if todo:
        _write_cams(cfg, sec, settings, ds, todo, out_path)
    dist.barrier()
    metrics: dict = {}
    eval_ids = gt_ids(ds, ds.ids)
    if eval_ids:  # every rank scores its shard; the sums are the single-process result
        bg = sec.get("bg_threshold")
        result = evaluate_cam_dir(cam_dir, ds, bg_threshold=0.4 if bg is None else float(bg), ids=eval_ids,
                                  distributed=True)
        if dist.is_main():
            write_metrics(sd.path / "metrics.json", result)
            log.info("clip_cam %s:\n%s", split, format_cam_report(result, title=f"clip_cam CAMs ({split})"))
        metrics = {"miou": result["miou"], "bg_threshold": result["bg_threshold"],
                   "oracle_miou": result["oracle"]["miou"], "oracle_threshold": result["oracle"]["threshold"]}
    return close_stage(sd, items=len(ds), metrics=metrics, split=split)


def _write_cams(cfg: Config, sec: dict, settings: ClipCamSettings, ds: SegDataset, todo: list[str],
                out_path) -> None:
    """Compute and save the CAMs of ``todo`` (this rank's missing ids) in batches."""
    device = dist.resolve_device(cfg.get("device", "auto"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.get("seed", 0)))  # random weights (pretrained=None) identical on resume / ranks
        clip = load_clip(str(sec.get("model", "ViT-B-16")), sec.get("pretrained"), device,
                         sec.get("model_cfg") or None, sec.get("quick_gelu"), sec.get("cache_dir"))
    bank = text_bank_for(clip, sec, ds, device)
    index = {image_id: i for i, image_id in enumerate(ds.ids)}
    todo = size_sorted(ds, todo)
    subset = Subset(InferenceSet(ds), [index[i] for i in todo])
    loader = DataLoader(subset, batch_size=max(1, int(sec.get("batch_size", 8))), shuffle=False,
                        num_workers=int(sec.get("num_workers", 2)), collate_fn=InferenceSet.collate)
    bar = tqdm(total=len(todo), desc=f"clip_cam rank {dist.rank()}", unit="img", disable=not dist.is_main())
    for images, idx in loader:
        ids = [ds.ids[i] for i in idx]
        keys = [image_labels(ds, i) for i in ids]
        cams = clip_cams(clip, bank, images, keys, settings, device)
        for image_id, k, c in zip(ids, keys, cams):
            save_cam(out_path(image_id), np.asarray(k, dtype=np.int16), c)
        bar.update(len(ids))
    bar.close()
