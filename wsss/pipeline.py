"""Running the chain of stages a config declares, skipping complete ones, with a summary table.

A config lists its chain as ``pipeline = ['train_cls', 'make_cam', ...]``. An entry may also be a dict
``dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt')))``
so the same stage module can run twice with different settings (e.g. the fully supervised upper bound, or PAR
and random walk side by side). Each stage module exposes ``STAGE``, ``CONFIG_KEYS``, ``inputs(cfg)`` and
``run(cfg, resume, force)``; the runner knows nothing else about them.
"""

from __future__ import annotations

import copy
import importlib
import logging
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Sequence

from wsss import dist
from wsss.artifacts import read_manifest
from wsss.config import Config
from wsss.errors import WSSSError
from wsss.eval.bound import format_ratio

log = logging.getLogger(__name__)


@dataclass
class StageEntry:
    """One step of a pipeline: the stage module, the folder name it writes, config overrides."""

    module: str
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(f"stages.{self.module}")
        except ModuleNotFoundError as e:
            if e.name == f"stages.{self.module}":
                raise WSSSError(f"pipeline names unknown stage module '{self.module}' (no stages/{self.module}.py)")
            raise

    def config(self, cfg: Config) -> Config:
        """The config this stage sees: the pipeline config with the entry's overrides merged in."""
        if not self.overrides:
            return cfg
        stage_cfg = copy.deepcopy(cfg)
        stage_cfg.merge_from_dict(self.overrides)
        return stage_cfg


@dataclass
class StageResult:
    name: str
    status: str  # ran / skipped / failed / not run
    seconds: float = 0.0
    quality: str = ""


def parse_pipeline(cfg: Config) -> list[StageEntry]:
    """The ordered stage entries of ``cfg.pipeline``."""
    raw = cfg.get("pipeline")
    if not raw:
        raise WSSSError("config has no 'pipeline' list of stages")
    entries = []
    for item in raw:
        if isinstance(item, str):
            entries.append(StageEntry(item, item))
        else:
            item = dict(item)
            module = item["module"]
            entries.append(StageEntry(module, item.get("name", module), dict(item.get("cfg", {}))))
    names = [e.name for e in entries]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise WSSSError(f"pipeline runs stage folder(s) {sorted(dupes)} twice; give each entry its own name")
    return entries


def select(entries: Sequence[StageEntry], start: str | None, until: str | None) -> list[StageEntry]:
    """The entries from ``start`` to ``until`` inclusive (by stage folder name)."""
    names = [e.name for e in entries]
    for s in (start, until):
        if s is not None and s not in names:
            raise WSSSError(f"stage '{s}' is not in this pipeline ({', '.join(names)})")
    i = names.index(start) if start else 0
    j = names.index(until) + 1 if until else len(entries)
    return list(entries[i:j])


def quality_of(manifest: dict | None) -> str:
    """A short quality figure from a stage manifest's metrics (mIoU where there is one)."""
    metrics = (manifest or {}).get("metrics") or {}
    parts = []
    for key, label in (("miou", "mIoU"), ("miou_ms", "ms mIoU"), ("oracle_miou", "oracle"), ("map", "mAP")):
        v = metrics.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {100 * v:.1f}")
    # eval_seg records a ratio only to a converged bound (wsss.eval.bound), else the text "bound not converged"
    ratio = metrics.get("ratio_to_full")
    if isinstance(ratio, (int, float)):
        parts.append(format_ratio(float(ratio), " of full"))
    elif isinstance(ratio, str):
        parts.append(ratio)
    return ", ".join(parts)


def ensure_synthetic(data_cfg: Any, force: bool = False) -> bool:
    """Generate the synthetic dataset a config describes in ``data.generate`` unless it is already there.

    Returns True when it generated. A dataset at ``data.root`` made with other parameters is refused (the
    stages downstream would silently train on other images) unless ``force``.
    """
    gen = data_cfg.get("generate") if data_cfg else None
    if data_cfg is None or data_cfg.get("type") != "synthetic" or not gen:
        return False
    from pathlib import Path
    import json
    from tqdm import tqdm
    from wsss.data.synthetic import META_FILE, generate_synthetic

    gen = dict(gen)
    root = Path(str(data_cfg["root"]))
    meta_path = root / META_FILE
    if meta_path.is_file():
        params = json.loads(meta_path.read_text()).get("params", {})
        differing = sorted(k for k, v in gen.items() if params.get(k) != v)
        if not differing:
            log.info("synthetic dataset in %s is complete with the configured parameters", root)
            return False
        if not force:
            raise WSSSError(f"{root}: synthetic dataset was made with other parameters ({', '.join(differing)}); "
                            f"pass --force to regenerate or set data.root elsewhere")
    log.info("generating the synthetic dataset in %s (%s)", root, gen)
    generate_synthetic(root, progress=lambda jobs: tqdm(jobs, desc="synthetic", unit="img"), **gen)
    return True


def run_pipeline(cfg: Config, start: str | None = None, until: str | None = None, resume: bool = False,
                 force: bool = False) -> list[StageResult]:
    """Run the selected stages in order. A failing stage stops the chain (later ones are 'not run').

    A synthetic dataset declared with ``data.generate`` is made first when it does not exist yet.
    """
    entries = select(parse_pipeline(cfg), start, until)
    if dist.is_main():
        ensure_synthetic(cfg.get("data"), force=force)
    dist.barrier()
    results: list[StageResult] = []
    for k, entry in enumerate(entries):
        module = entry.load()
        stage_cfg = entry.config(cfg)
        before = read_manifest(f"{cfg.work_dir}/{entry.name}")
        t0 = time.time()
        log.info("== stage %d/%d: %s", k + 1, len(entries), entry.name)
        try:
            manifest = module.run(stage_cfg, resume=resume, force=force)
        except BaseException:
            results.append(StageResult(entry.name, "failed", time.time() - t0))
            results.extend(StageResult(e.name, "not run") for e in entries[k + 1:])
            log.error("stage %s failed\n%s", entry.name, format_summary(results))
            raise
        skipped = (before is not None and before.get("status") == "complete"
                   and (manifest or {}).get("finished") == before.get("finished"))
        results.append(StageResult(entry.name, "skipped" if skipped else "ran", time.time() - t0,
                                   quality_of(manifest)))
    return results


def format_summary(results: Sequence[StageResult]) -> str:
    """A fixed-width table: stage, status, seconds, quality figure."""
    lines = [f"{'stage':<18}{'status':<9}{'time':>9}  quality", "-" * 60]
    for r in results:
        t = f"{r.seconds:8.1f}s" if r.status in ("ran", "skipped", "failed") else f"{'-':>9}"
        lines.append(f"{r.name:<18}{r.status:<9}{t}  {r.quality}")
    return "\n".join(lines)
