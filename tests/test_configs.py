"""Every config under configs/ loads offline, its _base_ files exist, and its pipeline is a chain: each stage's
inputs are written by an earlier stage of the same pipeline, for the same split, into the folder the entry names.

No model is built and nothing is downloaded: only the stages' config readers (``inputs``, ``stage_name``, the
section validators) run, which is exactly what a typo or a missing dependency breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from wsss.config import Config, load_config
from wsss.pipeline import parse_pipeline

from conftest import REPO

CONFIG_DIR = REPO / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.py") if "_base_" not in p.parts)
ALL_FILES = sorted(CONFIG_DIR.rglob("*.py"))


def _bases(path: Path) -> list[Path]:
    """The files a config's ``_base_`` names (a string or a list of strings), resolved like mmengine does."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            value = ast.literal_eval(node.value)
            names = [value] if isinstance(value, str) else list(value)
            return [(path.parent / n).resolve() for n in names]
    return []


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_base_file_exists(path: Path) -> None:
    for base in _bases(path):
        assert base.is_file(), f"{path.relative_to(REPO)}: _base_ {base} does not exist"


def _split_read(module: Any, cfg: Config) -> str | None:
    """The split a stage runs on (None when it reads no per-image artifact of another stage)."""
    name = module.__name__.split(".")[-1]
    data = cfg.get("data") or {}
    default = data.get("cam_split") or data.get("train_split")
    if name == "make_cam":
        return module.cam_split(cfg)
    if name == "make_pseudo":
        return module.split_of(cfg)
    if name in ("propagate", "train_aff"):
        return (module.section(cfg).get("split") or default)
    if name == "clip_cam":
        return module.section(cfg).get("split") or default
    if name == "crf":
        return default
    if name == "train_seg":
        return module.train_split(cfg)
    return None


def _validate_sections(module: Any, cfg: Config) -> None:
    """Run the stage's own section checks (unknown keys, bad values) without building anything."""
    checks = [fn for fn in ("settings", "section", "model_config") if hasattr(module, fn)]
    for fn in checks:
        getattr(module, fn)(cfg)
    if not checks and hasattr(module, "_SECTION_KEYS"):  # crf, make_pseudo
        from wsss.engine.stage import section_of
        section_of(cfg, module.SECTION, module._SECTION_KEYS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_loads_and_its_pipeline_is_a_chain(path: Path) -> None:
    cfg = load_config(path)
    if not cfg.get("pipeline"):
        return
    produced: dict[str, str | None] = {}  # stage folder -> split it wrote
    for entry in parse_pipeline(cfg):
        module = entry.load()
        stage_cfg = entry.config(cfg)
        _validate_sections(module, stage_cfg)
        own = module.stage_name(stage_cfg) if hasattr(module, "stage_name") else module.STAGE
        assert own == entry.name, (f"{path.name}: entry '{entry.name}' would write into '{own}' "
                                   f"(set the section's name in the entry's cfg)")
        split = _split_read(module, stage_cfg)
        model = module.section(stage_cfg)["model"] if module.__name__ == "stages.propagate" else None
        for src in module.inputs(stage_cfg):
            assert src in produced, f"{path.name}: '{entry.name}' reads '{src}', which no earlier stage writes"
            if src == model or split is None or produced[src] is None:
                continue  # a trained model applies to any split; training stages write no per-image files
            assert produced[src] == split, (f"{path.name}: '{entry.name}' runs on '{split}' but reads "
                                            f"'{src}', written for '{produced[src]}'")
        produced[entry.name] = split


# The full chains a VOC / COCO user starts from: each ends in eval_seg next to its fully supervised bound.
FULL_CHAINS = ["voc/irn_r50.py", "voc/toco_vit_base.py", "voc/clip_es_deeplab.py", "coco/irn_r50.py",
               "coco/clip_es_deeplab.py"]


@pytest.mark.parametrize("name", FULL_CHAINS)
def test_full_chains_end_in_eval_seg_with_their_bound(name: str) -> None:
    cfg = load_config(CONFIG_DIR / name)
    entries = parse_pipeline(cfg)
    names = [e.name for e in entries]
    assert names[-1] == "eval_seg" and "eval_seg_gt" in names and "train_seg_gt" in names
    gt = next(e for e in entries if e.name == "train_seg_gt").config(cfg)
    assert gt.train_seg.masks == "gt"
    final = entries[-1].config(cfg)
    assert final.eval_seg.get("upper_bound", "eval_seg_gt") == "eval_seg_gt"


def test_irn_chains_read_the_random_walk_with_background_025() -> None:
    """The pseudo masks of an IRN chain come from the walk (never the seeds by default), at IRN's 0.25."""
    for name, walk in (("voc/irn_r50.py", "propagate_train_aug"), ("coco/irn_r50.py", "propagate")):
        cfg = load_config(CONFIG_DIR / name)
        entries = {e.name: e for e in parse_pipeline(cfg)}
        pseudo = entries["make_pseudo"].config(cfg).pseudo
        assert pseudo.input == walk and pseudo.bg_threshold == 0.25
        assert pseudo.conf_fg is None and pseudo.conf_bg is None
        assert entries[walk].config(cfg).propagate.method == "rw"
    voc = load_config(CONFIG_DIR / "voc/irn_r50.py")
    entries = {e.name: e for e in parse_pipeline(voc)}
    assert entries["make_pseudo_train"].config(voc).pseudo.input == "propagate_train"
    assert entries["make_cam_train"].config(voc).cam.split == "train"
    assert entries["train_seg"].config(voc).train_seg.split == "train_aug"


def test_pseudo_input_must_be_named(tmp_path: Path) -> None:
    """configs/_base_/pseudo.py has no default input: a chain that forgets it fails in one line."""
    from stages import make_pseudo
    from wsss.errors import WSSSError

    cfg_path = tmp_path / "c.py"
    cfg_path.write_text(f"_base_ = [{str(CONFIG_DIR / '_base_/default_runtime.py')!r}, "
                        f"{str(CONFIG_DIR / '_base_/pseudo.py')!r}]\n")
    with pytest.raises(WSSSError, match="needs 'input'"):
        make_pseudo.inputs(load_config(cfg_path))
