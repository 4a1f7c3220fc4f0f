"""Loading mmengine configs with command-line overrides, and hashing the parts a stage reads.

Stages declare which top-level config keys they read; the hash of exactly those keys goes into the stage
manifest, so changing an unrelated key (say the segmentation learning rate) does not invalidate CAMs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from mmengine.config import Config, DictAction

__all__ = ["Config", "DictAction", "load_config", "config_hash", "to_plain"]


def load_config(path: str | Path, cfg_options: dict[str, Any] | None = None,
                work_dir: str | Path | None = None) -> Config:
    """Read an mmengine python config, apply ``--cfg-options`` overrides and an optional work dir."""
    path = Path(path)
    if not path.is_file():
        from wsss.errors import InputError
        raise InputError(path, "config file not found")
    try:
        cfg = Config.fromfile(str(path))
    except (SyntaxError, FileNotFoundError) as e:
        raise config_file_error(path, e) from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    if not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    cfg.setdefault("seed", 0)
    return cfg


def _bases(path: Path, tree: Any) -> list[tuple[Path, int]]:
    """The ``_base_`` files a parsed config names, resolved against its folder, with their line numbers."""
    import ast

    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            for name in [value] if isinstance(value, str) else list(value):
                out.append(((path.parent / str(name)).resolve(), node.lineno))
    return out


def config_file_error(path: Path, exc: BaseException) -> Exception:
    """A one-line error naming the config file and line behind mmengine's syntax error or missing file.

    mmengine reports a syntax error in a ``_base_`` file as '<unknown>' line N and a missing base only by its
    path; this walks the config and its bases to say which file (and which line of which file) is at fault.
    """
    import ast

    from wsss.errors import ConfigError

    seen: set[Path] = set()

    def walk(p: Path) -> Exception | None:
        if p in seen:
            return None
        seen.add(p)
        try:
            source = p.read_text()
        except OSError as e:
            return ConfigError(f"{p}: cannot read config ({e.strerror})")
        try:
            tree = ast.parse(source, filename=str(p))
        except SyntaxError as e:
            return ConfigError(f"{p}:{e.lineno}: syntax error in config: {e.msg}"
                               + (f" ({e.text.strip()})" if e.text else ""))
        for base, line in _bases(p, tree):
            if not base.is_file():
                return ConfigError(f"{p}:{line}: _base_ file {base} not found")
            err = walk(base)
            if err is not None:
                return err
        return None

    found = walk(Path(path).resolve())
    return found or ConfigError(f"{path}: cannot load config ({type(exc).__name__}: {exc})")


def to_plain(value: Any) -> Any:
    """Convert ConfigDicts, tuples and paths into JSON-able plain python, keys sorted for hashing."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_hash(cfg: Config | dict, keys: Iterable[str]) -> str:
    """sha256 (first 16 hex chars) of the given top-level keys of ``cfg``; missing keys hash as None."""
    subset = {k: to_plain(cfg.get(k, None)) for k in sorted(keys)}
    blob = json.dumps(subset, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``k=v`` strings the way ``--cfg-options`` does (used by tests and the pipeline runner)."""
    if not pairs:
        return {}
    import argparse
    ns = argparse.Namespace()
    DictAction(option_strings=[], dest="o")(None, ns, list(pairs))
    return dict(ns.o)
