"""Stage ``make_pseudo``: pseudo masks (palette PNG, 255 = ignore) from any CAM artifact.

Reads ``<work_dir>/<pseudo.input>/cams/<id>.npz`` (make_cam, propagate, clip_cam, crf, ...) for the ids of
``pseudo.split`` (default ``data.cam_split``) and writes ``<work_dir>/<pseudo.name>/masks/<id>.png``.
``pseudo.input`` has no default: which CAMs become the labels (seeds, random walk, CRF, ...) and the background
threshold that fits them go together, so a config must say it (a chain whose pseudo masks silently read the seeds
instead of the walk would lose the refinement without a word). The decision rule is
:func:`wsss.refine.pseudo.make_pseudo_mask`: IRN's ignore band (``conf_fg`` / ``conf_bg``) or a single
background threshold / power, each optionally refined by a dense CRF. Only the image's labelled classes can
appear: CAM channels of other classes are dropped before the decision.

Config section::

    pseudo = dict(input='propagate', split=None, name=None, bg_threshold=None, bg_power=None, conf_fg=0.30, conf_bg=0.05,
                  min_confidence=None, use_crf=False, crf=dict(n_iter=10, ...), num_workers=0)

When the split has ground truth, ``metrics.json`` gets the pseudo-mask mIoU with ignored pixels excluded
(``miou``), with them counted wrong (``miou_ignore_as_wrong``) and the share of ignored pixels
(:mod:`wsss.eval.mask_eval`). Per-image resume and the process pool are those of :mod:`stages.crf`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image
from tqdm import tqdm

from wsss import dist
from wsss.cam.io import load_cam
from wsss.config import Config
from wsss.data.build import build_dataset
from wsss.data.image_io import read_image
from wsss.data.palette import load_mask, save_mask
from wsss.engine.stage import close_stage, open_stage, pending, stage_run
from wsss.errors import InputError, WSSSError
from wsss.eval.confusion import format_table, write_metrics
from wsss.eval.mask_eval import MaskScorer, describe, scalar_metrics
from wsss.refine.crf import require_pydensecrf
from wsss.refine.pseudo import PseudoParams, make_pseudo_mask, restrict_to_labels
from wsss.engine.pool import map_images
from wsss.engine.stage import cam_dir, check_same_size, gt_ids, section_of
from wsss.schema import Rule, Schema

log = logging.getLogger(__name__)

STAGE = "make_pseudo"
SECTION = "pseudo"
CONFIG_KEYS = ("pseudo", "data")
_SECTION_KEYS = {"input", "bg_threshold", "bg_power", "conf_fg", "conf_bg", "min_confidence", "use_crf", "crf",
                 "num_workers", "name", "split"}
#: Types and ranges of the ``pseudo`` keys (wsss/schema.py; the section itself comes from configs/_base_/pseudo.py).
#: Workers and the folder name are not part of the masks' identity. ``input`` has no default: a chain names the
#: CAM stage it refines (make_pseudo stops with one line otherwise).
SCHEMA = Schema(SECTION, dict(input=None, bg_threshold=None, bg_power=None, conf_fg=None, conf_bg=None,
                              min_confidence=None, use_crf=False, crf=None, num_workers=0, name=None, split=None),
                rules=dict(input=Rule(kind="str"), bg_threshold=Rule(kind="number", min=0, max=1),
                           bg_power=Rule(kind="number", gt=0), conf_fg=Rule(kind="number", min=0, max=1),
                           conf_bg=Rule(kind="number", min=0, max=1), min_confidence=Rule(kind="number", min=0, max=1),
                           crf=Rule(kind="dict"), num_workers=Rule(min=0), name=Rule(kind="str"),
                           split=Rule(kind="str")),
                runtime=("num_workers", "name"))
SCHEMAS = (SCHEMA,)


def inputs(cfg: Config) -> list[str]:
    """The CAM stage this stage reads (``pseudo.input``, required)."""
    src = (cfg.get(SECTION) or {}).get("input")
    if not src:
        raise WSSSError(f"config section '{SECTION}' needs 'input': the CAM stage whose maps become the pseudo "
                        "masks (e.g. 'make_cam', 'propagate', 'clip_cam'), with a background threshold that fits them")
    return [str(src)]


def split_of(cfg: Config) -> str:
    """``pseudo.split``, else data.cam_split."""
    data = cfg.get("data") or {}
    return str((cfg.get(SECTION) or {}).get("split") or data.get("cam_split") or data.get("train_split", "train"))


def stage_name(cfg: Config) -> str:
    return str(cfg.get(SECTION, {}).get("name") or STAGE)


@dataclass(frozen=True)
class PseudoTask:
    """Everything one worker needs for one image (picklable)."""

    image_id: str
    image_path: str
    cam_path: str
    out_path: str
    labels: tuple[int, ...]
    params: PseudoParams


def _image_hw(path: str) -> tuple[int, int]:
    """Height and width from the image header (no decoding: the plain-threshold path never needs pixels)."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except Exception as e:
        raise InputError(path, f"unreadable image ({type(e).__name__}: {e})") from e


def pseudo_one(task: PseudoTask) -> str | None:
    """Write one image's pseudo mask; returns an error line instead of raising (see stages.crf.map_images)."""
    try:
        keys, cams = load_cam(task.cam_path)
        keys, cams = restrict_to_labels(keys, cams, task.labels)
        image = None
        if task.params.crf is not None:
            image = read_image(task.image_path)
            hw = image.shape[:2]
        else:
            hw = _image_hw(task.image_path)
        check_same_size(task.cam_path, cams, hw)
        save_mask(task.out_path, make_pseudo_mask(keys, cams, task.params, image))
    except WSSSError as e:
        return str(e)
    return None


def validate(cfg: Config) -> tuple[dict, PseudoParams]:
    """The checked ``pseudo`` section and its decision rule (errors before any work, one line)."""
    s = section_of(cfg, SECTION, _SECTION_KEYS, SCHEMA)
    params = PseudoParams.from_config(s)
    if params.crf is not None:
        require_pydensecrf()  # fail before claiming the stage folder, with the install fix
    return s, params


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Run the make_pseudo stage (see the module doc). Returns the manifest."""
    s, params = validate(cfg)
    name, src = stage_name(cfg), inputs(cfg)[0]
    ds = build_dataset(cfg.data, split_of(cfg))
    sd, done = open_stage(cfg, name, CONFIG_KEYS, [src], force=force, datasets=[ds], schemas=SCHEMAS)
    if done:
        return sd.manifest
    out_of = (lambda i: sd.path / "masks" / f"{i}.png")
    todo = pending(ds.ids, out_of)
    log.info("%s: %d of %d pseudo masks of '%s' to make from %s (%s)", name, len(todo), len(ds.ids), ds.split,
             src, params)
    tasks = [PseudoTask(i, str(ds.image_path(i)), str(cam_dir(cfg, src) / f"{i}.npz"), str(out_of(i)),
                        tuple(int(c) for c in ds.labels.get(i, [])), params) for i in todo]
    map_images(pseudo_one, tasks, s.get("num_workers", 0), desc=name)
    dist.barrier()
    metrics: dict = {}
    ids = gt_ids(ds, ds.ids)
    if ids:  # every rank scores its shard, then the counts are summed (exactly the single-process result)
        scorer = MaskScorer(ds.num_classes)
        error = None
        try:
            for i in tqdm(dist.shard(ids), desc="eval pseudo", unit="img", leave=False, disable=not dist.is_main()):
                scorer.update(load_mask(out_of(i), ds.num_classes), ds.mask(i))
        except Exception as e:  # noqa: BLE001 - the other ranks must not wait for this one forever
            error = e
        dist.raise_first_error(error)
        scorer.reduce()
        summary = scorer.summary(ds.class_names)
        metrics = scalar_metrics(summary)
        if dist.is_main():
            write_metrics(sd.path / "metrics.json", summary)
            log.info("%s\n%s", name, format_table(summary, f"{name}: pseudo masks vs ground truth ({ds.split}), "
                                                          "ignored pixels excluded"))
            log.info("%s: %s", name, describe(summary))
    return close_stage(sd, items=len(ds.ids), metrics=metrics)
