"""Opening and closing a stage folder the same way in every stage, single-process or under torchrun."""

from __future__ import annotations

import copy
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from wsss import dist
from wsss.artifacts import DATA_FINGERPRINT, StageDir, missing_items, read_manifest
from wsss.config import Config, config_hash, to_plain
from wsss.data.base import SegDataset
from wsss.errors import ConfigError, InputError, WSSSError

log = logging.getLogger(__name__)


#: Keys of the ``data`` section that say where the data is or which split name to read, never what it is: the
#: dataset's identity comes from the fingerprint of the ids, labels and files a stage reads (open_stage).
DATA_LOCATION_KEYS = ("root", "image_dir", "labels_csv", "mask_dir", "split_files", "classes", "generate",
                      "train_split", "val_split", "cam_split", "name")
#: Keys of any section that change how fast a stage runs or how it logs, never what it writes: excluded from
#: the identity of sections that have no schema (a schema names its own runtime and evaluation keys).
GENERIC_RUNTIME_KEYS = ("num_workers", "log_interval", "ckpt_interval", "name")


def _schema_map(schemas: Iterable[Any]) -> dict[str, Any]:
    return {s.section: s for s in schemas}


def identity_config(cfg: Config, keys: Iterable[str], schemas: Iterable[Any] = (),
                    with_data: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values to record, values to hash) of the config keys that decide a stage's artifacts.

    Sections with a schema (wsss/schema.py) contribute their resolved values minus runtime / evaluation keys;
    the hash covers only the values that differ from the defaults, so a key added to a stage later (with a
    default that keeps the old behaviour) does not invalidate existing artifacts. Other sections contribute
    their values minus :data:`GENERIC_RUNTIME_KEYS`. ``data`` contributes only its ``type`` and ``class_names``
    when the stage fingerprints the data it reads (``with_data``), else everything but :data:`DATA_LOCATION_KEYS`.
    """
    smap = _schema_map(schemas)
    record: dict[str, Any] = {}
    hashed: dict[str, Any] = {}
    for k in sorted(set(keys) | {"seed"}):
        value = to_plain(cfg.get(k))
        if k == "data" and isinstance(value, dict):
            value = {kk: v for kk, v in value.items() if kk not in DATA_LOCATION_KEYS}
            if with_data:
                value = {kk: v for kk, v in value.items() if kk in ("type", "class_names")}
            record[k] = hashed[k] = value
        elif k in smap:
            schema = smap[k]
            ident = to_plain(schema.identity(schema.resolve(cfg.get(k))))
            record[k] = ident
            defaults = to_plain(dict(schema.defaults))
            hashed[k] = {kk: v for kk, v in ident.items() if kk not in defaults or defaults[kk] != v}
        elif isinstance(value, dict):
            record[k] = hashed[k] = {kk: v for kk, v in value.items() if kk not in GENERIC_RUNTIME_KEYS}
        else:
            record[k] = hashed[k] = value
    return record, hashed


def open_stage(cfg: Config, stage: str, keys: Iterable[str], input_stages: Iterable[str] = (),
               force: bool | str = False, *, datasets: Sequence[SegDataset] = (), with_masks: bool = False,
               schemas: Iterable[Any] = ()) -> tuple[StageDir, bool]:
    """Lock and create/claim ``<work_dir>/<stage>`` for the config keys a stage reads and its input stages.

    ``datasets``: the splits the stage reads; their per-id fingerprints (files, labels, and masks when
    ``with_masks``) are part of the stage's identity instead of ``data.root`` or the split's name.
    ``schemas``: the stage's section schemas, whose runtime / evaluation keys stay out of the identity.
    Returns ``(stage_dir, already_complete)``. Rank 0 locks and writes the manifest; other ranks wait and read it.
    """
    from wsss.data.fingerprint import memo_for, seed_memo, split_fingerprint

    keys = sorted(set(keys) | {"seed"})
    record, hashed = identity_config(cfg, keys, schemas, with_data=bool(datasets))
    data: dict[str, dict[str, str]] = {}
    stage_path = Path(cfg.work_dir) / stage
    if dist.is_main() and datasets:
        old = stage_path / DATA_FINGERPRINT
        if old.is_file():
            try:
                seed_memo(json.loads(old.read_text()).get("cache"))
            except (OSError, ValueError, TypeError):
                pass
        for k, ds in enumerate(datasets):
            data["data" if k == 0 else f"data:{k}"] = split_fingerprint(ds, with_masks=with_masks)
    sd = StageDir.from_inputs(cfg.work_dir, stage, config_hash(hashed, keys), list(input_stages),
                              config=record, data=data)
    if data:
        sd.data_cache = memo_for([str(ds.image_path(i)) for ds in datasets for i in ds.ids]
                                 + ([str(ds.mask_path(i)) for ds in datasets for i in ds.ids if ds.has_masks]
                                    if with_masks else []))
    done = sd.begin(force=force) if dist.is_main() else False
    dist.barrier()
    if not dist.is_main():
        sd.manifest = read_manifest(sd.path)
        done = bool(sd.manifest and sd.manifest.get("status") == "complete")
    return sd, done


def stage_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a stage's ``run``: a run that fails or is interrupted drops the stage locks it took.

    Why: the CLI and the pipeline runner release locks at the end of a process, but a stage called as a library
    function (a notebook, a test) lives on in its caller, whose live pid would otherwise keep the folder locked.
    """
    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from wsss.artifacts import held_locks, release_lock

        before = held_locks()
        try:
            return run(*args, **kwargs)
        except BaseException:
            for p in held_locks() - before:
                release_lock(p)
            raise
    return wrapper


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


def section_of(cfg: Config, section: str, allowed: set[str], schema: Any = None) -> dict:
    """The stage's config section as a plain dict; unknown keys (typos) are a one-line error with a
    did-you-mean, and with a ``schema`` (wsss/schema.py) every given value is checked too."""
    from wsss.schema import did_you_mean

    s = cfg.get(section)
    if s is None:
        raise WSSSError(f"config has no '{section}' section (inherit configs/_base_/{section}.py)")
    s = s.to_dict() if hasattr(s, "to_dict") else dict(s)
    unknown = sorted(set(s) - allowed)
    if unknown:
        raise ConfigError(f"config {section}.{unknown[0]}: unknown key{did_you_mean(unknown[0], allowed)} "
                          f"(known: {', '.join(sorted(allowed))})")
    if schema is not None:
        schema.check({k: v for k, v in s.items() if k in schema.defaults})
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
