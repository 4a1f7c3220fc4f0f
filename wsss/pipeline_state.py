"""What a pipeline run leaves for the next one: the summary table, and a record that lets a re-run with nothing
to do answer in a fraction of a second.

Why: a re-run of a complete chain used to take 10-17 s before saying "skipped" for every stage, all of it spent
importing torch, timm and every stage module. After a run in which every selected stage ended complete, the
runner writes ``<work_dir>/pipeline_state.json``: a hash of the whole resolved config and the selection, every
stage's fingerprint, and the size and mtime of every file under the data paths. When all of that is unchanged, and
no stage folder is locked or changed since, nothing can differ: the summary is printed from the manifests without
importing torch. Anything else (a changed value, a touched file, ``--force``, torchrun) takes the full path,
which checks the real identities. This module imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from wsss.artifacts import LOCK, read_manifest, write_json_atomic
from wsss.config import to_plain

STATE_FILE = "pipeline_state.json"


@dataclass
class StageResult:
    name: str
    status: str  # ran / skipped (complete already) / n/a (does not apply to the data) / failed / not run
    seconds: float = 0.0
    quality: str = ""


def quality_of(manifest: dict | None) -> str:
    """A short quality figure from a stage manifest's metrics (mIoU where there is one)."""
    metrics = (manifest or {}).get("metrics") or {}
    parts = []
    for key, label in (("miou", "mIoU"), ("miou_ms", "ms mIoU"), ("oracle_miou", "oracle"), ("map", "mAP")):
        v = metrics.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {100 * v:.1f}")
    # eval_seg records a ratio only to a converged bound (wsss.eval.bound), else the text "bound not converged".
    # (Formatted here, as wsss.eval.bound.format_ratio does: importing wsss.eval would pull in torch.)
    ratio = metrics.get("ratio_to_full")
    if isinstance(ratio, (int, float)):
        parts.append(f"{100 * float(ratio):.1f} % of full")
    elif isinstance(ratio, str):
        parts.append(ratio)
    return ", ".join(parts)


def format_summary(results: Sequence[StageResult]) -> str:
    """A fixed-width table: stage, status, seconds, quality figure."""
    lines = [f"{'stage':<18}{'status':<9}{'time':>9}  quality", "-" * 60]
    for r in results:
        t = f"{r.seconds:8.1f}s" if r.status in ("ran", "skipped", "failed") else f"{'-':>9}"
        lines.append(f"{r.name:<18}{r.status:<9}{t}  {r.quality}")
    return "\n".join(lines)


def _pipeline_names(cfg: Any) -> list[str]:
    names = []
    for item in cfg.get("pipeline") or []:
        names.append(item if isinstance(item, str) else str(dict(item).get("name", dict(item)["module"])))
    return names


def selected_names(cfg: Any, start: str | None, until: str | None) -> list[str] | None:
    """The folder names ``run_pipeline`` would run (None when the selection is not valid: the full path says why)."""
    names = _pipeline_names(cfg)
    if not names or any(s is not None and s not in names for s in (start, until)):
        return None
    i = names.index(start) if start else 0
    j = names.index(until) + 1 if until else len(names)
    return names[i:j]


def _data_paths(data: Any) -> list[Path]:
    out = []

    def visit(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)
        elif isinstance(v, str) and v and os.path.exists(v):
            out.append(Path(v).absolute())
    visit(to_plain(data or {}))
    return out


def data_stats(data: Any) -> dict[str, list[int]]:
    """{path: [size, mtime_ns]} of every file named by, or under a folder named by, the ``data`` section."""
    stats: dict[str, list[int]] = {}
    for p in _data_paths(data):
        files: Iterable[Path] = [p] if p.is_file() else (Path(d) / f for d, _, fs in os.walk(p) for f in fs)
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            stats[str(f)] = [st.st_size, st.st_mtime_ns]
    return stats


def _key(cfg: Any, names: Sequence[str]) -> str:
    blob = json.dumps({"config": to_plain(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)),
                       "stages": list(names)}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def record(cfg: Any, names: Sequence[str], results: Sequence[StageResult]) -> None:
    """After a run in which every selected stage ended complete (or does not apply), remember its inputs."""
    if any(r.status not in ("ran", "skipped", "n/a") for r in results):
        return
    work = Path(cfg.work_dir)
    stages = []
    for r in results:
        m = read_manifest(work / r.name) if r.status != "n/a" else None
        if r.status != "n/a" and (m is None or m.get("status") != "complete"):
            return
        stages.append({"name": r.name, "status": r.status, "quality": r.quality,
                       "fingerprint": (m or {}).get("fingerprint"), "finished": (m or {}).get("finished")})
    write_json_atomic(work / STATE_FILE, {"key": _key(cfg, names), "stages": stages,
                                          "files": data_stats(cfg.get("data"))})


def nothing_to_do(cfg: Any, start: str | None, until: str | None) -> list[StageResult] | None:
    """The summary of a re-run that cannot change anything, or None when the full path must decide."""
    names = selected_names(cfg, start, until)
    work = Path(cfg.work_dir)
    try:
        state = json.loads((work / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if names is None or state.get("key") != _key(cfg, names) or [s["name"] for s in state["stages"]] != names:
        return None
    results = []
    for info in state["stages"]:
        name = info["name"]
        if info["status"] == "n/a":
            if (work / name).exists():
                return None
            results.append(StageResult(name, "n/a", 0.0, info["quality"]))
            continue
        m = read_manifest(work / name)
        if (m is None or m.get("status") != "complete" or m.get("fingerprint") != info["fingerprint"]
                or m.get("finished") != info["finished"] or (work / name / LOCK).exists()):
            return None
        results.append(StageResult(name, "skipped", 0.0, quality_of(m)))
    if data_stats(cfg.get("data")) != state.get("files"):
        return None
    return results
