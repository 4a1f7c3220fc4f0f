"""Stage propagate: refine CAMs per image by a random walk with learned affinities (``method='rw'``) or by PAR
(``method='par'``, training-free, image colours only).

Reads ``<work_dir>/<propagate.input>/cams/<id>.npz`` for the ids of ``propagate.split`` (default
``data.cam_split``) and, for ``rw``, ``<work_dir>/<propagate.model>/final.pth`` (stage train_aff). Writes
``<work_dir>/<propagate.name>/cams/<id>.npz`` in the standard CAM format (same keys, original size, [0, 1]), and
``metrics.json`` (mIoU at ``eval_threshold`` and the oracle threshold sweep, when the split has ground truth).
``propagate.name`` renames the folder, so ``propagate`` (rw) and ``propagate_par`` coexist in one work_dir.

How background is represented in the output (the format stores foreground classes only) is set by
``propagate.bg``, see :mod:`wsss.refine.propagation`: with ``'none'`` (IRN) the walked CAMs are max-normalised
(``propagate.normalise``: ``'global'`` = one maximum over all classes, IRN's; ``'per_class'`` = each class by its
own) and thresholded downstream like any CAM (IRN: 0.25); with ``'power'``/``'threshold'`` each class
holds its share against the walked background channel and 0.5 is the natural threshold.

Per-image resume (existing outputs are skipped, each file written atomically), ids sharded by rank under
torchrun, one image at a time on the rank's device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wsss import dist
from wsss.cam.io import load_cam, save_cam
from wsss.config import Config, to_plain
from wsss.data.build import build_dataset
from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.engine.checkpoint import load_weights
from wsss.engine.stage import check_same_size, close_stage, open_stage, pending, stage_run
from wsss.errors import ConfigError, InputError
from wsss.eval.cam_eval import evaluate_cam_dir, format_cam_report
from wsss.eval.confusion import write_metrics
from wsss.models.affinity_net import AffinityNet, build_affinity_net
from wsss.ops import radius_offsets
from wsss.refine.propagation import BG_MODES, NORMALISE_MODES, image_affinity, par_cams, random_walk_cams
from wsss.schema import Rule, Schema, did_you_mean

log = logging.getLogger(__name__)

STAGE = "propagate"
#: Every key the stage may read; ``aff_model`` only matters for ``method='rw'`` (left out of the hash for par).
CONFIG_KEYS = ("data", "aff_model", "propagate")
METHODS = ("rw", "par")

DEFAULTS: dict[str, Any] = dict(
    method="rw", name=None, input="make_cam", model="train_aff", split=None, radius=5, beta=10, t=256,
    scales=[1.0], flip=True, bg="none", bg_power=8, bg_threshold=0.05, normalise="per_class",
    par=dict(dilations=[1, 2, 4, 8, 12, 24], num_iter=10, w1=0.3, w2=0.01, scale=1.0), eval_threshold=None,
)
_PAR_KEYS = ("dilations", "num_iter", "w1", "w2", "scale")


#: What the ``propagate`` section accepts (wsss/schema.py); ``eval_threshold`` only sets the stage's report and
#: ``name`` the folder: neither is part of the CAMs' identity.
SCHEMA = Schema("propagate", DEFAULTS, rules=dict(
    method=Rule(choices=METHODS), name=Rule(kind="str"), input=Rule(kind="str"), model=Rule(kind="str"),
    split=Rule(kind="str"), radius=Rule(min=1), beta=Rule(kind="number", gt=0), t=Rule(min=1),
    scales=Rule(gt=0, nonempty=True), bg=Rule(choices=BG_MODES), bg_power=Rule(kind="number", gt=0),
    bg_threshold=Rule(min=0, max=1), eval_threshold=Rule(kind="number", min=0, max=1),
    normalise=Rule(choices=NORMALISE_MODES)),
    runtime=("name",), evaluation=("eval_threshold",))
SCHEMAS = (SCHEMA,)


def section(cfg: Config) -> dict[str, Any]:
    """The ``propagate`` section with defaults filled in (unknown keys or values are an error)."""
    sec = dict(to_plain(cfg.get("propagate") or {}))
    out = SCHEMA.resolve(sec)
    par = {**DEFAULTS["par"], **dict(sec.get("par") or {})}
    bad = sorted(set(par) - set(_PAR_KEYS))
    if bad:
        raise ConfigError(f"config propagate.par.{bad[0]}: unknown key{did_you_mean(bad[0], _PAR_KEYS)} "
                          f"(known: {', '.join(_PAR_KEYS)})")
    out["par"] = par
    return out


def stage_name(cfg: Config) -> str:
    return str(section(cfg)["name"] or STAGE)


def inputs(cfg: Config) -> list[str]:
    """The CAM stage, plus the affinity stage for the random walk."""
    sec = section(cfg)
    return [str(sec["input"])] + ([str(sec["model"])] if sec["method"] == "rw" else [])


def config_keys(cfg: Config) -> tuple[str, ...]:
    """The keys this run reads: PAR does not depend on the affinity model."""
    return CONFIG_KEYS if section(cfg)["method"] == "rw" else ("data", "propagate")


def eval_threshold(sec: dict[str, Any]) -> float:
    """The background threshold for the stage's own mIoU: 0.25 (IRN) for max-normalised walks, else 0.5."""
    if sec["eval_threshold"] is not None:
        return float(sec["eval_threshold"])
    return 0.25 if sec["bg"] == "none" else 0.5


def load_affinity_model(work_dir: str | Path, model_stage: str, device: torch.device) -> AffinityNet:
    """The trained affinity net of ``<work_dir>/<model_stage>/final.pth`` (its own ``aff_model`` config)."""
    path = Path(work_dir) / model_stage / "final.pth"
    if not path.is_file():
        raise InputError(path, f"affinity weights not found; run stage '{model_stage}' (tools/train_aff.py) first")
    state = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = dict(state.get("aff_model") or {})
    mcfg.update(pretrained=False, weights=None)  # the trained weights below replace any initialisation
    model = build_affinity_net(**mcfg)
    load_weights(path, model)
    return model.to(device).eval()


def _image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> [3, H, W] float32 ImageNet-normalised (as in training)."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).to(device)


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Propagate the CAMs of every image of the split; returns the stage manifest."""
    sec = section(cfg)
    name = stage_name(cfg)
    data = cfg.get("data") or {}
    split = str(sec["split"] or data.get("cam_split") or data.get("train_split", "train"))
    ds = build_dataset(cfg.data, split)
    sd, done = open_stage(cfg, name, config_keys(cfg), inputs(cfg), force=force, datasets=[ds], schemas=SCHEMAS)
    if done:
        return sd.manifest
    device = dist.resolve_device(cfg.get("device", "auto"))
    cam_dir = Path(cfg.work_dir) / str(sec["input"]) / "cams"
    out_of = (lambda i: sd.path / "cams" / f"{i}.npz")
    todo = pending(ds.ids, out_of)
    model, offsets = None, None
    if sec["method"] == "rw":
        model = load_affinity_model(cfg.work_dir, str(sec["model"]), device)
        offsets = radius_offsets(int(sec["radius"]))
    log.info("%s: %s on %d of %d images of '%s' (%s)", name, sec["method"], len(todo), len(ds), ds.split, device)
    par = sec["par"]
    for image_id in tqdm(todo, desc=name, unit="img", disable=not dist.is_main() or not todo):
        cam_path = cam_dir / f"{image_id}.npz"
        keys, cams = load_cam(cam_path)
        image = ds.image(image_id)
        check_same_size(cam_path, cams, image.shape[:2])
        c = torch.from_numpy(cams).to(device)
        with torch.no_grad():
            if sec["method"] == "rw":
                aff = image_affinity(model, _image_tensor(image, device), offsets, sec["scales"], bool(sec["flip"]))
                out = random_walk_cams(c, aff, offsets, model.feature_stride, float(sec["beta"]), int(sec["t"]),
                                       sec["bg"], float(sec["bg_power"]), float(sec["bg_threshold"]),
                                       str(sec["normalise"]))
            else:
                img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().to(device)
                out = par_cams(img, c, par["dilations"], int(par["num_iter"]), float(par["w1"]), float(par["w2"]),
                               float(par["scale"]), sec["bg"], float(sec["bg_power"]), float(sec["bg_threshold"]),
                               str(sec["normalise"]))
        save_cam(out_of(image_id), keys, out.cpu().numpy())
    dist.barrier()
    metrics: dict[str, Any] = {}
    if ds.has_masks:  # every rank scores its shard; the sums are the single-process result
        thr = eval_threshold(sec)
        result = evaluate_cam_dir(sd.path / "cams", ds, bg_threshold=thr, distributed=True)
        metrics = {"miou": result["miou"], "bg_threshold": thr, "oracle_miou": result["oracle"]["miou"],
                   "oracle_threshold": result["oracle"]["threshold"]}
    if metrics and dist.is_main():
        write_metrics(sd.path / "metrics.json", result)
        log.info("%s\n%s", name, format_cam_report(result, f"{name} ({sec['method']}) vs ground truth ({ds.split})"))
        log.info("%s: mIoU %.2f at bg threshold %.2f (oracle %.2f at %.2f)", name, 100 * (result["miou"] or 0), thr,
                 100 * result["oracle"]["miou"], result["oracle"]["threshold"])
    return close_stage(sd, items=len(ds), metrics=metrics)
