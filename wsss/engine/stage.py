"""Opening and closing a stage folder the same way in every stage, single-process or under torchrun."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Any

from wsss import dist
from wsss.artifacts import StageDir, missing_items, read_manifest
from wsss.config import Config, config_hash, to_plain

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
