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
from wsss.pipeline_state import StageResult, format_summary, quality_of  # noqa: F401 (re-exported)

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


def known_sections() -> set[str] | None:
    """Every top-level config section some stage module reads (its ``CONFIG_KEYS`` and schema sections); None
    when a stage module cannot be imported here (an optional dependency is missing): its sections are unknown,
    so no section can be called a typo."""
    import pkgutil

    import stages

    out: set[str] = set()
    for info in pkgutil.iter_modules(stages.__path__):
        try:
            module = importlib.import_module(f"stages.{info.name}")
        except ImportError as e:
            log.debug("stage module %s not importable (%s): top-level sections not checked", info.name, e)
            return None
        out.update(getattr(module, "CONFIG_KEYS", ()))
        out.update(s.section for s in getattr(module, "SCHEMAS", ()))
    return out


def validate_stage(module: ModuleType, cfg: Config) -> None:
    """Check a stage's config sections before any work: its ``validate(cfg)`` when it has one, else its
    ``SCHEMAS``; then its input and folder names (which read the section too). Errors are one line."""
    if hasattr(module, "validate"):
        module.validate(cfg)
    else:
        for schema in getattr(module, "SCHEMAS", ()):
            schema.resolve(cfg.get(schema.section))
    if hasattr(module, "inputs"):
        module.inputs(cfg)
    if hasattr(module, "stage_name"):
        module.stage_name(cfg)


def validate_config(cfg: Config, modules: Sequence[tuple[ModuleType, Config]]) -> None:
    """Refuse unknown top-level sections (with a did-you-mean), then validate each (module, its config)."""
    from wsss.schema import check_top_level

    known = known_sections()
    if known is not None:
        check_top_level(cfg, known)
    for module, stage_cfg in modules:
        validate_stage(module, stage_cfg)


def run_pipeline(cfg: Config, start: str | None = None, until: str | None = None, resume: bool = False,
                 force: bool | str = False, redo: Sequence[str] = ()) -> list[StageResult]:
    """Run the selected stages in order. A failing stage stops the chain (later ones are 'not run').

    Every selected stage's config is validated before the first one runs. ``force`` re-makes only the stages
    whose identity changed (config values, inputs, data); ``redo`` names stages to re-make even when unchanged.
    A stage that does not apply to the data (:class:`StageSkipped`, e.g. training on ground truth without
    masks) is reported as 'n/a' with its reason, and so is every later stage that reads it.
    A synthetic dataset declared with ``data.generate`` is made first when it does not exist yet.
    """
    from wsss.artifacts import release_locks
    from wsss.errors import StageSkipped

    all_entries = parse_pipeline(cfg)
    entries = select(all_entries, start, until)
    unknown = sorted(set(redo) - {e.name for e in all_entries})
    if unknown:
        raise WSSSError(f"--redo names stage(s) {unknown} that are not in this pipeline "
                        f"({', '.join(e.name for e in all_entries)})")
    loaded = [(entry, entry.load(), entry.config(cfg)) for entry in entries]
    validate_config(cfg, [(m, c) for _, m, c in loaded])
    if dist.is_main():
        ensure_synthetic(cfg.get("data"), force=bool(force))
    dist.barrier()
    results: list[StageResult] = []
    not_applicable: dict[str, str] = {}
    for k, (entry, module, stage_cfg) in enumerate(loaded):
        before = read_manifest(f"{cfg.work_dir}/{entry.name}")
        t0 = time.time()
        needs = [s for s in module.inputs(stage_cfg) if s in not_applicable] if hasattr(module, "inputs") else []
        if needs:
            reason = f"needs '{needs[0]}', which does not apply"
            log.info("== stage %d/%d: %s: n/a (%s)", k + 1, len(entries), entry.name, reason)
            not_applicable[entry.name] = reason
            results.append(StageResult(entry.name, "n/a", 0.0, reason))
            continue
        log.info("== stage %d/%d: %s", k + 1, len(entries), entry.name)
        stage_force: bool | str = True if entry.name in redo else ("changed" if force else False)
        try:
            manifest = module.run(stage_cfg, resume=resume, force=stage_force)
        except StageSkipped as e:
            log.warning("%s", e)
            not_applicable[entry.name] = str(e).split(": ", 1)[-1]
            results.append(StageResult(entry.name, "n/a", time.time() - t0, not_applicable[entry.name]))
            continue
        except BaseException:
            release_locks()
            results.append(StageResult(entry.name, "failed", time.time() - t0))
            results.extend(StageResult(e.name, "not run") for e, _, _ in loaded[k + 1:])
            log.error("stage %s failed\n%s", entry.name, format_summary(results))
            raise
        skipped = (before is not None and before.get("status") == "complete"
                   and (manifest or {}).get("finished") == before.get("finished"))
        results.append(StageResult(entry.name, "skipped" if skipped else "ran", time.time() - t0,
                                   quality_of(manifest)))
    if dist.is_main() and not dist.is_distributed():
        from wsss.pipeline_state import record
        record(cfg, [e.name for e in entries], results)
    return results
