"""Stage ``debias``: biased-object removal (after MARS) on the CAMs of any CAM stage; output in the CAM format.

Reads ``<work_dir>/<debias.input>/cams/<id>.npz`` for the ids of ``data.cam_split`` and the images. Three passes:

1. dense features of a frozen backbone (``backbone=dict(arch, weights, pretrained, output_stride)``, built by
   wsss.models.backbones, L2-normalised per pixel; or ``backbone='rgb'``, the pixel colours) for every image, a
   deterministic sample of at most ``max_samples`` pixel features over the dataset, k-means into ``clusters``
   groups (wsss/cluster.py, seeded by ``seed``);
2. every pixel's cluster (nearest centre, nearest-upsampled to the image size) and the per (class, cluster)
   counts of wsss.refine.debias.BiasStats against the CAMs -> the biased clusters of each class;
3. ``cams/<id>.npz``: each class's CAM with its biased clusters set to 0 (same keys, same size).

Also writes ``clusters.json`` (biased clusters per class with their share / bg_rate / presence) and
``metrics.json`` (CAM mIoU / precision / recall against ground truth at ``bg_threshold``, plus the oracle sweep).
A killed run recomputes passes 1-2 (deterministic) and writes only the missing CAM files.

Config section::

    debias = dict(input='make_cam', name=None, backbone='rgb', scale=1.0, clusters=16, max_samples=100000,
                  cam_threshold=0.3, min_share=0.01, min_bg_rate=0.5, min_presence=0.1, min_free_rate=0.5,
                  keep_top=1, bg_threshold=0.3)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wsss import dist
from wsss.artifacts import write_json_atomic
from wsss.cam.io import load_cam, save_cam
from wsss.cluster import kmeans, nearest_center
from wsss.config import Config, to_plain
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.engine.stage import cam_dir, check_same_size, close_stage, hashed_view, open_stage, pending, section_of
from wsss.errors import WSSSError
from wsss.eval.cam_eval import evaluate_cam_dir, format_cam_report
from wsss.eval.confusion import write_metrics
from wsss.eval.seg_infer import image_to_tensor
from wsss.refine.debias import BiasRule, BiasStats, remove_biased

log = logging.getLogger(__name__)

STAGE = "debias"
SECTION = "debias"
CONFIG_KEYS = ("debias", "data")
DEFAULTS: dict[str, Any] = dict(input="make_cam", name=None, backbone="rgb", scale=1.0, clusters=16,
                                max_samples=100000, cam_threshold=0.3, min_share=0.01, min_bg_rate=0.5,
                                min_presence=0.1, min_free_rate=0.5, keep_top=1, bg_threshold=0.3)


def settings(cfg: Config) -> dict[str, Any]:
    """The ``debias`` section with defaults (it must name ``input``; unknown keys are an error)."""
    return {**DEFAULTS, **to_plain(section_of(cfg, SECTION, set(DEFAULTS)))}


def inputs(cfg: Config) -> list[str]:
    return [str(settings(cfg)["input"])]


def stage_name(cfg: Config) -> str:
    return str(settings(cfg)["name"] or STAGE)


class FeatureExtractor:
    """Dense per-pixel features of an image: [D, h, w] float32 (L2-normalised for a backbone)."""

    def __init__(self, backbone: Any, scale: float) -> None:
        self.scale = float(scale)
        self.net = None
        if backbone != "rgb":
            if not isinstance(backbone, dict) or "arch" not in backbone:
                raise WSSSError(f"debias.backbone must be 'rgb' or dict(arch=..., weights=..., ...), got {backbone!r}")
            from wsss.models.backbones import create_backbone

            kw = {k: v for k, v in backbone.items() if k != "arch"}
            self.net = create_backbone(str(backbone["arch"]), section="debias.backbone", **kw).eval()

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if self.scale != 1.0:
            image = cv2.resize(image, (max(1, round(w * self.scale)), max(1, round(h * self.scale))),
                               interpolation=cv2.INTER_LINEAR)
        if self.net is None:
            return image.astype(np.float32).transpose(2, 0, 1) / 255.0
        feats = self.net(image_to_tensor(image))[0].float()
        return F.normalize(feats, dim=0).numpy()


def sample_pixels(feats: np.ndarray, n: int, seed: int, index: int) -> np.ndarray:
    """[min(n, h*w), D] pixel features of one image, chosen by a generator of (seed, index)."""
    flat = feats.reshape(feats.shape[0], -1).T
    if flat.shape[0] <= n:
        return flat
    rng = np.random.default_rng([int(seed), int(index)])
    return flat[np.sort(rng.choice(flat.shape[0], n, replace=False))]


def cluster_map(feats: np.ndarray, centers: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[H, W] int16 nearest-centre ids of [D, h, w] features, nearest-upsampled to ``size`` (H, W)."""
    d, h, w = feats.shape
    ids = nearest_center(torch.from_numpy(feats.reshape(d, -1).T.copy()), centers).numpy().reshape(h, w)
    if (h, w) != tuple(size):
        ids = cv2.resize(ids.astype(np.int16), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return ids.astype(np.int16)


def run(cfg: Config, resume: bool = False, force: bool = False, **_: Any) -> dict:
    """Run the debias stage (see the module doc). Returns the manifest."""
    s = settings(cfg)
    name, src = stage_name(cfg), str(s["input"])
    ds = build_dataset(cfg.data, cfg.data.get("cam_split", "train"))
    src_dir = cam_dir(cfg, src)
    missing = [i for i in ds.ids if not (src_dir / f"{i}.npz").is_file()]
    if missing:
        raise WSSSError(f"{src_dir / (missing[0] + '.npz')}: CAM file missing ({len(missing)} of {len(ds.ids)}); "
                        f"run stage '{src}' first")
    sd, done = open_stage(hashed_view(cfg, CONFIG_KEYS, SECTION), name, CONFIG_KEYS, [src], force=force)
    if done:
        return sd.manifest
    rule = BiasRule(float(s["cam_threshold"]), float(s["min_share"]), float(s["min_bg_rate"]),
                    float(s["min_presence"]), float(s["min_free_rate"]), int(s["keep_top"]))
    extract = FeatureExtractor(s["backbone"], float(s["scale"]))
    seed = int(cfg.get("seed", 0))
    maps, biased, stats = find_biased(ds, src_dir, extract, int(s["clusters"]), int(s["max_samples"]), rule, seed)
    out_of = (lambda i: sd.path / "cams" / f"{i}.npz")
    todo = dist.shard(pending(ds.ids, out_of))  # passes 1-2 are identical on every rank; writing is sharded
    for i in tqdm(todo, desc=f"{name} write", unit="img", leave=False, disable=not dist.is_main()):
        keys, cams = load_cam(src_dir / f"{i}.npz")
        save_cam(out_of(i), keys, remove_biased(keys, cams, maps[i], biased))
    dist.barrier()
    metrics: dict[str, Any] = {"biased_clusters": int(biased.sum())}
    result = evaluate_cam_dir(sd.path / "cams", ds, bg_threshold=float(s["bg_threshold"]),
                              distributed=True) if ds.has_masks else None
    if dist.is_main():
        write_json_atomic(sd.path / "clusters.json", describe(biased, stats, ds.class_names, rule))
        if result is not None:
            write_metrics(sd.path / "metrics.json", result)
            log.info("%s\n%s", name, format_cam_report(result, f"{name} vs ground truth ({ds.split})"))
            metrics["miou"] = result["miou"]
    return close_stage(sd, items=len(ds.ids), metrics=metrics)


def find_biased(ds: SegDataset, src_dir: Path, extract: FeatureExtractor, clusters: int, max_samples: int,
                rule: BiasRule, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, BiasStats]:
    """Passes 1-2: cluster maps of every image, the [C-1, M] biased matrix and the counts behind it."""
    per_image = max(1, math.ceil(max_samples / max(len(ds.ids), 1)))
    samples = [sample_pixels(extract(ds.image(i)), per_image, seed, k)
               for k, i in enumerate(tqdm(ds.ids, desc="debias features", unit="img", leave=False))]
    _, centers = kmeans(torch.from_numpy(np.concatenate(samples)), clusters, seed=seed)
    stats = BiasStats(ds.num_classes, int(centers.shape[0]))
    maps: dict[str, np.ndarray] = {}
    for i in tqdm(ds.ids, desc="debias clusters", unit="img", leave=False):
        image = ds.image(i)
        keys, cams = load_cam(src_dir / f"{i}.npz")
        check_same_size(src_dir / f"{i}.npz", cams, image.shape[:2])
        maps[i] = cluster_map(extract(image), centers, image.shape[:2])
        stats.update(maps[i], keys, cams, rule.cam_threshold)
    return maps, stats.biased(rule), stats


MEASURES = ("share", "free_rate", "bg_rate", "presence")


def describe(biased: np.ndarray, stats: BiasStats, class_names: list[str], rule: BiasRule) -> dict[str, Any]:
    """clusters.json: the rule and, per class, its biased clusters with the measures that selected them."""
    m = stats.measures()
    out: dict[str, Any] = {"rule": rule.__dict__, "clusters": stats.num_clusters, "biased": {}}
    for c in range(biased.shape[0]):
        out["biased"][class_names[c + 1]] = [
            {"cluster": int(j), **{k: round(float(m[k][c, j]), 4) for k in MEASURES}}
            for j in np.flatnonzero(biased[c])]
    return out
