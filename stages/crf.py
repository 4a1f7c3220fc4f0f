"""Stage ``crf``: dense-CRF-refined CAMs, in the CAM format, from any CAM artifact.

Reads ``<work_dir>/<crf.input>/cams/<id>.npz`` for the ids of ``data.cam_split``, builds per-pixel
probabilities (background score from ``bg_threshold`` or ``bg_power``, see :mod:`wsss.refine.pseudo`), runs a
dense CRF on the image (:mod:`wsss.refine.crf`) and writes ``<work_dir>/crf/cams/<id>.npz`` with the refined
probabilities of the same keys. The background probability is not stored: it is ``1 - sum(cams)`` (the
refined probabilities sum to 1), so later stages read the file like any other CAM artifact (e.g.
``make_pseudo`` with ``pseudo.input='crf'``).

Config section::

    crf = dict(input='make_cam', bg_threshold=0.30, bg_power=None, n_iter=10, gauss_sxy=3, gauss_compat=3,
               bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10, unary='softmax', gt_prob=0.7,
               num_workers=0)

``unary``: 'softmax' (default here: the stage's output is meant to stay a soft map) or 'labels' (IRN: the CRF
starts from the thresholded decision with confidence ``gt_prob``, see :mod:`wsss.refine.crf`).

``num_workers``: processes for the per-image work (0 = all cores of this machine / rank); it does not change
the outputs, so it is left out of the config hash. Per-image resume: a killed run re-started with the same
config only processes the images whose output file is missing.

This module also holds :func:`map_images`, the process pool both CPU-bound per-image stages (crf,
make_pseudo) use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from wsss import dist
from wsss.cam.io import load_cam, save_cam
from wsss.config import Config
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.data.image_io import read_image
from wsss.engine.pool import map_images
from wsss.engine.stage import cam_dir, check_same_size, close_stage, gt_ids, open_stage, pending, section_of, stage_run
from wsss.schema import Rule, Schema
from wsss.errors import WSSSError
from wsss.eval.confusion import ConfusionMatrix, format_table, write_metrics
from wsss.refine.crf import CRFParams, dense_crf, require_pydensecrf
from wsss.refine.pseudo import background_score, label_lut, scores_to_probs

log = logging.getLogger(__name__)

STAGE = "crf"
SECTION = "crf"
CONFIG_KEYS = ("crf", "data")
_CRF_KEYS = ("n_iter", "gauss_sxy", "gauss_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat", "unary",
             "gt_prob")
_SECTION_KEYS = set(_CRF_KEYS) | {"input", "bg_threshold", "bg_power", "num_workers", "name"}
#: Types and ranges of the ``crf`` keys (wsss/schema.py); workers and the folder name are not part of the identity.
SCHEMA = Schema(SECTION, dict(input="make_cam", bg_threshold=None, bg_power=None, num_workers=0, name=None,
                              n_iter=10, gauss_sxy=3.0, gauss_compat=3.0, bilateral_sxy=50.0, bilateral_srgb=5.0,
                              bilateral_compat=10.0, unary="softmax", gt_prob=0.7),
                rules=dict(input=Rule(kind="str"), bg_threshold=Rule(kind="number", min=0, max=1),
                           bg_power=Rule(kind="number", gt=0), num_workers=Rule(min=0), name=Rule(kind="str"),
                           n_iter=Rule(min=1), gauss_sxy=Rule(gt=0), gauss_compat=Rule(min=0), bilateral_sxy=Rule(gt=0),
                           bilateral_srgb=Rule(gt=0), bilateral_compat=Rule(min=0),
                           unary=Rule(choices=("softmax", "labels")), gt_prob=Rule(gt=0, max=1)),
                runtime=("num_workers", "name"))
SCHEMAS = (SCHEMA,)


# ----------------------------------------------------------------------------------------------------------------
# The crf stage.

def inputs(cfg: Config) -> list[str]:
    """The CAM stage this stage reads (``crf.input``)."""
    return [str(cfg.get(SECTION, {}).get("input") or "make_cam")]


def stage_name(cfg: Config) -> str:
    return str(cfg.get(SECTION, {}).get("name") or STAGE)


@dataclass(frozen=True)
class CRFTask:
    """Everything one worker needs for one image (picklable)."""

    image_id: str
    image_path: str
    cam_path: str
    out_path: str
    bg_threshold: float | None
    bg_power: float | None
    params: CRFParams


def refine_one(task: CRFTask) -> str | None:
    """Refine one image's CAMs and write them; returns an error line instead of raising (see map_images)."""
    try:
        keys, cams = load_cam(task.cam_path)
        image = read_image(task.image_path)
        check_same_size(task.cam_path, cams, image.shape[:2])
        bg = background_score(cams, threshold=task.bg_threshold, power=task.bg_power)
        probs = dense_crf(image, scores_to_probs(cams, bg), task.params)
        save_cam(task.out_path, keys, probs[1:])
    except WSSSError as e:
        return str(e)
    return None


def crf_decision(keys: np.ndarray, cams: np.ndarray) -> np.ndarray:
    """The CRF's own labelling from a refined CAM file: argmax of (1 - sum(cams), cams) -> [H, W] uint8."""
    bg = np.clip(1.0 - cams.sum(axis=0), 0.0, 1.0)
    return label_lut(keys)[np.concatenate([bg[None], cams]).argmax(axis=0)].astype(np.uint8)


def evaluate_refined(ds: SegDataset, ids: Sequence[str], cams_of: Callable[[str], Path],
                     distributed: bool = False) -> dict | None:
    """mIoU of the CRF decisions against ground truth (None without ground truth). ``distributed``: call on
    every rank; each scores its shard and the confusion matrices are summed."""
    ids = gt_ids(ds, ids)
    if not ids:
        return None
    cm = ConfusionMatrix(ds.num_classes)
    error = None
    try:
        for i in tqdm(dist.shard(ids) if distributed else ids, desc="eval crf", unit="img", leave=False,
                      disable=not dist.is_main()):
            keys, cams = load_cam(cams_of(i))
            cm.update(crf_decision(keys, cams), ds.mask(i))
    except Exception as e:  # noqa: BLE001 - every rank must hear of it before the reduction
        error = e
    dist.raise_first_error(error, collective=distributed)
    if distributed:
        cm.reduce()
    summary = cm.summary(ds.class_names)
    summary["images"] = len(ids)
    return summary


def validate(cfg: Config) -> tuple[dict, CRFParams]:
    """The checked ``crf`` section and its CRF parameters (errors before any work, one line)."""
    s = section_of(cfg, SECTION, _SECTION_KEYS, SCHEMA)
    params = CRFParams.from_config({k: s[k] for k in _CRF_KEYS if k in s})
    if (s.get("bg_threshold") is None) == (s.get("bg_power") is None):
        raise WSSSError("crf needs exactly one of crf.bg_threshold and crf.bg_power (the background score)")
    require_pydensecrf()  # fail before claiming the stage folder, with the install fix
    return s, params


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Run the crf stage (see the module doc). Returns the manifest."""
    s, params = validate(cfg)
    name, src = stage_name(cfg), inputs(cfg)[0]
    ds = build_dataset(cfg.data, cfg.data.get("cam_split", "train"))
    sd, done = open_stage(cfg, name, CONFIG_KEYS, [src], force=force, datasets=[ds], schemas=SCHEMAS)
    if done:
        return sd.manifest
    out_of = (lambda i: sd.path / "cams" / f"{i}.npz")
    todo = pending(ds.ids, out_of)
    log.info("%s: %d of %d images of '%s' to refine (CRF %s)", name, len(todo), len(ds.ids), ds.split, params)
    tasks = [CRFTask(i, str(ds.image_path(i)), str(cam_dir(cfg, src) / f"{i}.npz"), str(out_of(i)),
                     s.get("bg_threshold"), s.get("bg_power"), params) for i in todo]
    map_images(refine_one, tasks, s.get("num_workers", 0), desc=name)
    dist.barrier()
    metrics: dict = {}
    summary = evaluate_refined(ds, ds.ids, out_of, distributed=True)
    if dist.is_main():
        if summary is not None:
            write_metrics(sd.path / "metrics.json", summary)
            log.info("%s\n%s", name, format_table(summary, f"{name}: CRF decision vs ground truth ({ds.split})"))
            log.info("%s: mIoU %.2f on %d images", name, 100 * (summary["miou"] or 0.0), summary["images"])
            metrics = {"miou": summary["miou"], "pixel_accuracy": summary["pixel_accuracy"],
                       "images": summary["images"]}
    return close_stage(sd, items=len(ds.ids), metrics=metrics)
