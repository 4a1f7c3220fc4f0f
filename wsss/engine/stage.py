"""Opening and closing a stage folder the same way in every stage, single-process or under torchrun."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from wsss import dist
from wsss.artifacts import StageDir, missing_items, read_manifest
from wsss.config import Config, config_hash, to_plain
from wsss.data.base import SegDataset
from wsss.errors import InputError, WSSSError

log = logging.getLogger(__name__)


def open_stage(cfg: Config, stage: str, keys: Iterable[str], input_stages: Iterable[str] = (),
               force: bool = False) -> tuple[StageDir, bool]:
    """Create/claim ``<work_dir>/<stage>`` for the config keys a stage reads and its input stages.

    Returns ``(stage_dir, already_complete)``. Rank 0 writes the manifest; other ranks wait and read it.
    """
    keys = sorted(set(keys) | {"seed"})
    sd = StageDir.from_inputs(cfg.work_dir, stage, config_hash(cfg, keys), list(input_stages),
                              config={k: to_plain(cfg.get(k)) for k in keys})
    done = sd.begin(force=force) if dist.is_main() else False
    dist.barrier()
    if not dist.is_main():
        sd.manifest = read_manifest(sd.path)
        done = bool(sd.manifest and sd.manifest.get("status") == "complete")
    return sd, done


def pending(ids: Iterable[str], out_path_of: Callable[[str], Path]) -> list[str]:
    """This rank's share of the ids whose output file does not exist yet."""
    return missing_items(dist.shard(list(ids)), out_path_of)


def close_stage(sd: StageDir, items: int | None = None, metrics: Mapping[str, Any] | None = None,
                **extra: Any) -> dict | None:
    """Wait for all ranks, then mark the stage complete on rank 0; returns the manifest."""
    dist.barrier()
    if dist.is_main():
        m = sd.finish(items=items, metrics=metrics, **extra)
    else:
        m = read_manifest(sd.path)
    dist.barrier()
    return m


#: Section keys that change how fast a stage runs, never what it writes: excluded from the config hash.
RUNTIME_KEYS = ("num_workers",)


def section_of(cfg: Config, section: str, allowed: set[str]) -> dict:
    """The stage's config section as a plain dict; unknown keys (typos) are a one-line error."""
    s = cfg.get(section)
    if s is None:
        raise WSSSError(f"config has no '{section}' section (inherit configs/_base_/{section}.py)")
    s = s.to_dict() if hasattr(s, "to_dict") else dict(s)
    unknown = sorted(set(s) - allowed)
    if unknown:
        raise WSSSError(f"unknown key(s) {unknown} in config section '{section}'; expected some of {sorted(allowed)}")
    if not s.get("input"):
        raise WSSSError(f"config section '{section}' needs 'input': the CAM stage to read (e.g. 'make_cam')")
    return s


def hashed_view(cfg: Config, keys: Sequence[str], section: str,
                runtime_keys: Sequence[str] = RUNTIME_KEYS) -> Config:
    """A copy of the config keys a stage reads, minus the ``runtime_keys`` of its section, for open_stage.

    Why: the worker count must not invalidate finished artifacts (a re-run on a bigger machine would be
    refused as a 'different run' otherwise).
    """
    view = {k: copy.deepcopy(cfg.get(k)) for k in set(keys) | {"seed"}}
    view[section] = {k: v for k, v in dict(view[section]).items() if k not in runtime_keys}
    out = Config(view)
    out.work_dir = cfg.work_dir
    return out


def check_same_size(cam_path: str | Path, cams: np.ndarray, image_hw: tuple[int, int]) -> None:
    """CAMs are stored at the original image size; anything else is a broken artifact."""
    if tuple(cams.shape[1:]) != tuple(image_hw):
        raise InputError(cam_path, f"CAMs are {cams.shape[1]}x{cams.shape[2]} but the image is "
                                   f"{image_hw[0]}x{image_hw[1]} (CAMs must be at the original image size)")


def cam_dir(cfg: Config, stage: str) -> Path:
    return Path(cfg.work_dir) / stage / "cams"


def gt_ids(ds: SegDataset, ids: Sequence[str]) -> list[str]:
    """The ids that have a ground-truth mask file (custom data may have masks for a few images only)."""
    if not ds.has_masks:
        return []
    return [i for i in ids if ds.mask_path(i) is not None and ds.mask_path(i).is_file()]
