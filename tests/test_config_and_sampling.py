"""Config hashing, --cfg-options overrides and the resumable sampler/schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsss.config import config_hash, load_config, parse_overrides
from wsss.engine.sampling import ResumableBatchSampler
from wsss.engine.schedule import lr_factor
from wsss.errors import InputError


def _write_cfg(tmp_path: Path) -> Path:
    (tmp_path / "_base_").mkdir()
    (tmp_path / "_base_" / "data.py").write_text("data = dict(type='synthetic', root='x', train_split='train')\n")
    cfg = tmp_path / "exp.py"
    cfg.write_text("_base_ = ['_base_/data.py']\ncam = dict(scales=[1.0, 0.5], flip=True)\nseg = dict(lr=0.01)\n")
    return cfg


def test_overrides_and_inheritance(tmp_path: Path) -> None:
    cfg = load_config(_write_cfg(tmp_path), parse_overrides(["cam.flip=False", "data.root=y"]))
    assert cfg.data.type == "synthetic" and cfg.data.root == "y" and cfg.cam.flip is False
    assert cfg.work_dir == str(Path("work_dirs") / "exp") and cfg.seed == 0


def test_hash_covers_only_the_keys_a_stage_reads(tmp_path: Path) -> None:
    path = _write_cfg(tmp_path)
    a = load_config(path)
    b = load_config(path, parse_overrides(["seg.lr=0.1"]))
    c = load_config(path, parse_overrides(["cam.scales=[1.0]"]))
    assert config_hash(a, ["data", "cam"]) == config_hash(b, ["data", "cam"])
    assert config_hash(a, ["data", "cam"]) != config_hash(c, ["data", "cam"])
    assert config_hash(a, ["seg"]) != config_hash(b, ["seg"])


def test_missing_config_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.py: config file not found"):
        load_config(tmp_path / "nope.py")


def test_sampler_resumes_at_any_iteration() -> None:
    full = list(ResumableBatchSampler(n=11, batch_size=3, max_iters=10, seed=4))
    assert len(full) == 10 and all(len(b) == 3 for b in full)
    for start in (1, 3, 7):
        assert list(ResumableBatchSampler(11, 3, 10, seed=4, start_iter=start)) == full[start:]
    # 11 // 3 = 3 batches per epoch; each epoch draws distinct indices
    epoch0 = [i for b in full[:3] for (e, i) in b]
    assert len(set(epoch0)) == 9 and {e for b in full[3:6] for (e, _) in b} == {1}
    assert full != list(ResumableBatchSampler(11, 3, 10, seed=5))


def test_poly_and_cosine_factors() -> None:
    assert lr_factor(0, 100) == pytest.approx(1.0)
    assert lr_factor(50, 100, "poly", power=0.9) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(5, 100, "poly", warmup_iters=10) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
