"""The artifact store: one folder per stage, a manifest saying what made it, atomic per-item files.

Why: WSSS pipelines run for hours over tens of thousands of images. A killed job must resume where it
stopped, a re-run of a finished stage must be free, and artifacts made by two different configs must never be
mixed silently. Every guarantee here rests on two rules:

* a file exists only when it is complete (written to a temp name in the same folder, fsynced, renamed);
* ``<work_dir>/<stage>/manifest.json`` records the hash of the config keys the stage reads and the
  fingerprints of its inputs, so a mismatch is detected before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from wsss import __version__
from wsss.errors import StageMismatchError, WSSSError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_MARK = ".tmp-"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it onto ``path``.

    The temp name keeps the final suffix (``x.npz`` -> ``.x.tmp-<pid>.npz``) so writers that append a
    suffix (``np.savez``) or pick a format from it (``cv2.imwrite``) behave. On error the temp file is removed
    and ``path`` is untouched, so an existing artifact is never half-overwritten.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files a killed writer left behind (they are never valid artifacts). Returns the count."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for p in folder.rglob(f".*{TMP_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            count += 1
    return count


def fingerprint(stage: str, cfg_hash: str, inputs: Mapping[str, str]) -> str:
    """Identity of a stage's artifacts: its name, its config hash and its inputs' fingerprints."""
    blob = json.dumps({"stage": stage, "config": cfg_hash, "inputs": dict(sorted(inputs.items()))},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_manifest(stage_dir: str | Path) -> dict | None:
    """The manifest of a stage folder, or None when there is none."""
    p = Path(stage_dir) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise WSSSError(f"{p}: corrupt manifest ({e.msg}); delete the stage folder or pass --force") from e


def require_complete(work_dir: str | Path, stage: str) -> dict:
    """Manifest of an input stage, which must be complete; raises a one-line error otherwise."""
    d = Path(work_dir) / stage
    m = read_manifest(d)
    if m is None:
        raise WSSSError(f"{d}: input stage '{stage}' has not been run (no {MANIFEST}); run it first")
    if m.get("status") != "complete":
        raise WSSSError(f"{d}: input stage '{stage}' is {m.get('status')}, not complete; resume it first")
    return m


class StageDir:
    """The folder ``<work_dir>/<stage>/`` of one stage and its manifest.

    Typical use in a stage::

        sd = StageDir(work_dir, "make_cam", config_hash(cfg, KEYS), inputs={"train_cls": fp})
        if sd.begin(force=force):
            return sd.manifest            # complete and identical: nothing to do
        ... write per-item files with atomic_path(sd.path / "cams" / f"{id}.npz") ...
        sd.finish(items=len(ids), metrics={...})
    """

    def __init__(self, work_dir: str | Path, stage: str, cfg_hash: str,
                 inputs: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.stage = stage
        self.path = self.work_dir / stage
        self.cfg_hash = cfg_hash
        self.inputs = dict(inputs or {})
        self.config = dict(config or {})
        self.fingerprint = fingerprint(stage, cfg_hash, self.inputs)
        self.manifest: dict | None = None

    @classmethod
    def from_inputs(cls, work_dir: str | Path, stage: str, cfg_hash: str, input_stages: Iterable[str],
                    config: Mapping[str, Any] | None = None) -> "StageDir":
        """Build a StageDir whose inputs are the (complete) stages named in ``input_stages``."""
        inputs = {s: require_complete(work_dir, s)["fingerprint"] for s in input_stages}
        return cls(work_dir, stage, cfg_hash, inputs, config)

    @property
    def status(self) -> str:
        m = read_manifest(self.path)
        return "missing" if m is None else str(m.get("status"))

    def _mismatch(self, m: dict) -> str:
        parts = []
        if m.get("config_hash") != self.cfg_hash:
            parts.append(f"config hash {m.get('config_hash')} != {self.cfg_hash}")
        old_in, new_in = m.get("inputs", {}), self.inputs
        for k in sorted(set(old_in) | set(new_in)):
            if old_in.get(k) != new_in.get(k):
                parts.append(f"input '{k}' {old_in.get(k)} != {new_in.get(k)}")
        return "; ".join(parts) or "fingerprint differs"

    def begin(self, force: bool = False) -> bool:
        """Claim the folder. True means it is already complete with this exact fingerprint (skip the stage).

        A folder made by another config or other inputs is refused unless ``force``, which wipes it.
        A running (interrupted) folder with the same fingerprint is resumed: stale temp files are removed.
        """
        m = read_manifest(self.path)
        if m is not None and m.get("fingerprint") != self.fingerprint:
            if not force:
                raise StageMismatchError(
                    f"{self.path}: holds artifacts of a different run ({self._mismatch(m)}); "
                    f"pass --force to overwrite or use another --work-dir")
            log.warning("%s: --force: removing artifacts of a different run", self.path)
            shutil.rmtree(self.path)
            m = None
        if m is not None and m.get("status") == "complete" and not force:
            log.info("%s: already complete (fingerprint %s), nothing to do", self.path, self.fingerprint)
            self.manifest = m
            return True
        if m is not None and force:
            shutil.rmtree(self.path)
            m = None
        self.path.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(self.path)
        if m is not None:
            log.info("%s: resuming interrupted stage (%d stale temp files removed)", self.path, removed)
        self.manifest = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "config_hash": self.cfg_hash,
            "config": self.config,
            "inputs": self.inputs,
            "wsss_version": __version__,
            "started": (m or {}).get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "status": "running",
        }
        write_json_atomic(self.path / MANIFEST, self.manifest)
        return False

    def finish(self, items: int | None = None, metrics: Mapping[str, Any] | None = None,
               **extra: Any) -> dict:
        """Mark the stage complete, recording item counts, key metrics and anything else worth keeping."""
        assert self.manifest is not None, "begin() first"
        self.manifest.update(extra)
        self.manifest["status"] = "complete"
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if items is not None:
            self.manifest["items"] = int(items)
        if metrics:
            self.manifest["metrics"] = dict(metrics)
        write_json_atomic(self.path / MANIFEST, self.manifest)
        return self.manifest


def missing_items(ids: Iterable[str], path_of: "callable[[str], Path]") -> list[str]:
    """The ids whose output file does not exist yet (per-item resume)."""
    return [i for i in ids if not path_of(i).exists()]
