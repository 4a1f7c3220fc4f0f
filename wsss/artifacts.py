"""The artifact store: one folder per stage, a manifest saying what made it, atomic per-item files.

Why: WSSS pipelines run for hours over tens of thousands of images. A killed job must resume where it
stopped, a re-run of a finished stage must be free, and artifacts made by two different configs must never be
mixed silently. Every guarantee here rests on two rules:

* a file exists only when it is complete (written to a temp name in the same folder, fsynced, renamed);
* ``<work_dir>/<stage>/manifest.json`` records the hash of the config values that decide the stage's artifacts
  and the fingerprints of its inputs (earlier stages, and the data it read), so a mismatch is detected before
  anything is written.

Two more rules keep jobs from destroying each other's work: a stage folder is locked by the process running it
(``.lock``: host, pid, start time; a lock of a dead process on this host is stale and taken over), and a folder in
which an earlier run wrote no artifact (it failed at start-up) never blocks the next run.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from wsss import __version__
from wsss.errors import StageLockedError, StageMismatchError, WSSSError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_MARK = ".tmp-"
LOCK = ".lock"
#: Per-id fingerprints of the data a stage read (see wsss/data/fingerprint.py); the manifest holds their digest.
DATA_FINGERPRINT = "data_fingerprint.json"
#: Files of a stage folder that are bookkeeping, not artifacts: a folder holding only these was never started
#: for real, so it does not block a run with another config.
NOT_ARTIFACTS = frozenset({MANIFEST, LOCK, DATA_FINGERPRINT, "train.log", "log.txt"})


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        translated = write_error(path, e)
        if translated is not None:
            raise translated from None
        raise


_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied"}


def write_error(path: str | Path, exc: BaseException) -> WSSSError | None:
    """A one-line error for a failed write of ``path`` (disk full, read-only, no permission), else None.

    torch.save reports a full disk as a C++ enforce message ("... No space left on device"), not as an
    OSError; both are recognised, so the user reads which file could not be written and why.
    """
    if isinstance(exc, WSSSError):
        return None
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = Path(exc.filename) if getattr(exc, "filename", None) else Path(path)
        return WSSSError(f"{where}: cannot write: {_WRITE_ERRNOS[exc.errno]} (nothing written so far is damaged; "
                         f"free space or fix permissions and re-run to resume)")
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    reason = next((r for code, r in _WRITE_ERRNOS.items() if os.strerror(code) in str(exc)), None)
    if reason is None and _free_bytes(Path(path).parent) < _LOW_SPACE:
        reason = "no space left on device"  # torch's writer says 'iostream error' / 'unexpected pos' instead
    if reason is None:
        return None
    return WSSSError(f"{path}: cannot write: {reason} (nothing written so far is damaged; "
                     f"free space or fix permissions and re-run to resume)")


_LOW_SPACE = 1 << 20  # bytes: below this a failed write is put down to a full disk


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


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


# ----------------------------------------------------------------------------------------------------------------
# Locks: one live process per stage folder.

_HELD: dict[Path, str] = {}  # lock path -> its content, for the locks this process holds


def _proc_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot, Linux) to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        if state[state.rfind(")") + 2:].split()[0] == "Z":  # a zombie is dead, only not yet reaped
            return False
    except OSError:
        pass
    now = _proc_start(pid)
    return start is None or now is None or now == start


def lock_owner(stage_dir: str | Path) -> dict | None:
    """The live owner recorded in ``<stage_dir>/.lock`` ({host, pid, started, command}); None when there is no
    lock or it is stale (its process on this host is gone)."""
    p = Path(stage_dir) / LOCK
    try:
        info = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        if time.time() - p.stat().st_mtime < 5:  # being written right now by its owner
            return {"host": "?", "pid": -1, "started": "just now", "command": "?"}
        return None
    if info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1)), info.get("proc_start")):
        return None
    return info


def acquire_lock(stage_dir: str | Path) -> None:
    """Lock ``stage_dir`` for this process, or raise a one-line StageLockedError naming the live owner.

    The lock is created atomically (a complete temp file hard-linked onto ``.lock``, which fails when it
    exists). A lock left by a dead process on this host (SIGKILL, power loss of a node with the same name does
    not count) is stale: it is replaced with a log line. A lock of another host cannot be checked: it is
    refused, and the message says how to clear it when that job is known to be gone.
    """
    d = Path(stage_dir)
    p = d / LOCK
    if p in _HELD:
        return
    d.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)[:300]}
    text = json.dumps(info, indent=2)
    tmp = d / f".lock{TMP_MARK}{os.getpid()}"
    for _ in range(3):
        tmp.write_text(text)
        try:
            os.link(tmp, p)
            tmp.unlink()
            _HELD[p] = text
            return
        except FileExistsError:
            tmp.unlink()
        except OSError:  # file systems without hard links: exclusive create (content follows at once)
            tmp.unlink()
            try:
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                _HELD[p] = text
                return
        owner = lock_owner(d)
        if owner is not None:
            same_host = owner.get("host") == socket.gethostname()
            hint = ("wait for it or stop it" if same_host else
                    f"wait for it, or delete {p} if that job is gone")
            raise StageLockedError(f"{d}: stage is being run by pid {owner.get('pid')} on {owner.get('host')} "
                                   f"since {owner.get('started')} ({owner.get('command')}); {hint}")
        log.warning("%s: removing the stale lock of a process that is gone", p)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    raise StageLockedError(f"{p}: could not take the stage lock (another process keeps creating it)")


def release_lock(stage_dir: str | Path) -> None:
    """Drop this process's lock on ``stage_dir`` (a lock another process holds is never touched)."""
    p = Path(stage_dir) / LOCK
    text = _HELD.pop(p, None)
    if text is None:
        return
    with contextlib.suppress(OSError):
        if p.read_text() == text:
            p.unlink()


def held_locks() -> set[Path]:
    """The stage folders this process holds locks on."""
    return {p.parent for p in _HELD}


def release_locks() -> None:
    """Drop every lock this process holds (end of a stage, failure, exit)."""
    for p in list(_HELD):
        release_lock(p.parent)


atexit.register(release_locks)


def artifact_files(stage_dir: str | Path) -> list[Path]:
    """The files of a stage folder that are artifacts (not the manifest, lock, logs or temp files)."""
    d = Path(stage_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.rglob("*"):
        if not p.is_file() or TMP_MARK in p.name or (p.parent == d and p.name in NOT_ARTIFACTS):
            continue
        out.append(p)
    return out


def clear_stage_dir(stage_dir: str | Path) -> int:
    """Remove everything in a stage folder but this process's lock; returns the number of files removed."""
    d = Path(stage_dir)
    count = 0
    for child in list(d.iterdir()) if d.is_dir() else []:
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            count += sum(1 for q in child.rglob("*") if q.is_file())
            shutil.rmtree(child)
        else:
            count += 1
            child.unlink()
    return count


# ----------------------------------------------------------------------------------------------------------------
# Identity.

def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def config_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, limit: int = 6) -> str:
    """'cam.scales [1.0, 0.5] -> [1.0]; train_cls.iters 5 -> 8' for the values that differ."""
    a, b = _flatten(old or {}), _flatten(new or {})
    missing = object()
    parts = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, missing), b.get(k, missing)
        if va != vb:
            parts.append(f"{k} {'(unset)' if va is missing else json.dumps(va, default=str)} -> "
                         f"{'(unset)' if vb is missing else json.dumps(vb, default=str)}")
    if len(parts) > limit:
        parts = parts[:limit] + [f"... {len(parts) - limit} more"]
    return "; ".join(parts)


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


def data_digest(entries: Mapping[str, str]) -> str:
    """One hash of a split's per-id fingerprints ({image_id: 'size:digest:labels...'})."""
    blob = json.dumps(sorted(entries.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def data_changes(old: Mapping[str, str], new: Mapping[str, str], limit: int = 5) -> str:
    """'3 ids changed (a, b, c), 1 added (d), 2 removed (e, f)' between two per-id fingerprint maps."""
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    parts = []
    for what, ids in (("changed", changed), ("added", added), ("removed", removed)):
        if ids:
            shown = ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")
            parts.append(f"{len(ids)} id(s) {what} ({shown})")
    return ", ".join(parts)


class StageDir:
    """The folder ``<work_dir>/<stage>/`` of one stage and its manifest.

    Typical use in a stage::

        sd = StageDir(work_dir, "make_cam", config_hash, inputs={"train_cls": fp}, config=values, data=per_id)
        if sd.begin(force=force):
            return sd.manifest            # complete and identical: nothing to do
        ... write per-item files with atomic_path(sd.path / "cams" / f"{id}.npz") ...
        sd.finish(items=len(ids), metrics={...})

    ``data`` maps each dataset role the stage reads ('data', or 'data:<role>' for a second one) to its per-id
    fingerprints (wsss/data/fingerprint.py); their digests (manifest field ``data``) join the fingerprint, so an
    edited label or a replaced image changes the stage's identity, while the split's name and the path do not.
    """

    def __init__(self, work_dir: str | Path, stage: str, cfg_hash: str,
                 inputs: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None,
                 data: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.stage = stage
        self.path = self.work_dir / stage
        self.cfg_hash = cfg_hash
        self.data = {str(k): dict(v) for k, v in (data or {}).items()}
        assert all(k.startswith("data") for k in self.data), "data roles are named 'data' or 'data:<role>'"
        self.data_cache: dict[str, list] = {}  # {path: [size, mtime_ns, digest]}, stored to skip re-reading
        self.inputs = dict(inputs or {})
        self.data_digests = {role: data_digest(entries) for role, entries in self.data.items()}
        self.config = dict(config or {})
        self.fingerprint = fingerprint(stage, cfg_hash, {**self.inputs, **self.data_digests})
        self.manifest: dict | None = None

    @classmethod
    def from_inputs(cls, work_dir: str | Path, stage: str, cfg_hash: str, input_stages: Iterable[str],
                    config: Mapping[str, Any] | None = None,
                    data: Mapping[str, Mapping[str, str]] | None = None) -> "StageDir":
        """Build a StageDir whose inputs are the (complete) stages named in ``input_stages``."""
        inputs = {s: require_complete(work_dir, s)["fingerprint"] for s in input_stages}
        return cls(work_dir, stage, cfg_hash, inputs, config, data)

    @property
    def status(self) -> str:
        m = read_manifest(self.path)
        return "missing" if m is None else str(m.get("status"))

    def _old_data(self) -> dict[str, dict[str, str]]:
        p = self.path / DATA_FINGERPRINT
        try:
            return dict(json.loads(p.read_text()).get("data", {}))
        except (OSError, ValueError):
            return {}

    def _mismatch(self, m: dict) -> str:
        """What differs between the folder's manifest and this run: config values, input stages, data ids."""
        parts = []
        if m.get("config_hash") != self.cfg_hash:
            diff = config_diff(m.get("config"), self.config)
            parts.append(f"config {diff}" if diff else f"config hash {m.get('config_hash')} != {self.cfg_hash}")
        old_in, new_in = {**m.get("inputs", {}), **m.get("data", {})}, {**self.inputs, **self.data_digests}
        old_data = None
        for k in sorted(set(old_in) | set(new_in)):
            if old_in.get(k) == new_in.get(k):
                continue
            if k.startswith("data"):
                old_data = self._old_data() if old_data is None else old_data
                changes = data_changes(old_data.get(k, {}), self.data.get(k, {}))
                parts.append(f"{k}: {changes or 'changed'}")
            else:
                parts.append(f"input '{k}' {old_in.get(k)} != {new_in.get(k)}")
        return "; ".join(parts) or "fingerprint differs"

    def begin(self, force: bool | str = False) -> bool:
        """Lock and claim the folder. True means it is complete with this exact identity (skip the stage).

        ``force``: False refuses a folder of another identity; "changed" (``run_pipeline --force``) replaces a
        folder of another identity and keeps an identical one; True (a stage tool's ``--force``: the one stage
        named) re-makes the folder in any case. A folder in which no artifact was ever written (a run that
        failed at start-up) is taken over without ``--force``. A running (interrupted) folder of the same
        identity is resumed: stale temp files are removed. A folder locked by a live process is never touched.
        """
        acquire_lock(self.path)
        try:
            return self._begin(force)
        except BaseException:
            release_lock(self.path)
            raise

    def _begin(self, force: bool | str) -> bool:
        m = read_manifest(self.path)
        if m is not None and m.get("fingerprint") != self.fingerprint:
            what = self._mismatch(m)
            files = artifact_files(self.path)
            if not files:
                log.info("%s: taking over the folder of an earlier run that wrote no artifact (%s)", self.path, what)
            elif not force:
                raise StageMismatchError(
                    f"{self.path}: holds artifacts of a different run ({what}); "
                    f"pass --force to overwrite or use another --work-dir")
            else:
                log.warning("%s: --force: removing %d artifact file(s) of a different run (%s)", self.path,
                            len(files), what)
            clear_stage_dir(self.path)
            m = None
        if m is not None and force is True:
            log.warning("%s: --force: removing %d artifact file(s) to re-make the stage", self.path,
                        len(artifact_files(self.path)))
            clear_stage_dir(self.path)
            m = None
        if m is not None and m.get("status") == "complete":
            log.info("%s: already complete (fingerprint %s), nothing to do", self.path, self.fingerprint)
            self.manifest = m
            release_lock(self.path)
            return True
        self.path.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(self.path)
        if m is not None:
            log.info("%s: resuming interrupted stage (%d stale temp files removed)", self.path, removed)
        if self.data:
            write_json_atomic(self.path / DATA_FINGERPRINT, {"data": self.data, "cache": self.data_cache})
        self.manifest = {
            **({"data": self.data_digests} if self.data_digests else {}),
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
        """Mark the stage complete, recording item counts, key metrics and anything else worth keeping;
        releases the folder's lock."""
        assert self.manifest is not None, "begin() first"
        self.manifest.update(extra)
        self.manifest["status"] = "complete"
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if items is not None:
            self.manifest["items"] = int(items)
        if metrics:
            self.manifest["metrics"] = dict(metrics)
        write_json_atomic(self.path / MANIFEST, self.manifest)
        release_lock(self.path)
        return self.manifest


def missing_items(ids: Iterable[str], path_of: "callable[[str], Path]") -> list[str]:
    """The ids whose output file does not exist yet (per-item resume)."""
    return [i for i in ids if not path_of(i).exists()]
