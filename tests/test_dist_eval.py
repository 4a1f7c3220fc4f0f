"""Scoring under torchrun: every rank scores its shard and the confusion matrices / threshold histograms are
summed, so the metrics of 2 gloo ranks equal those of one process exactly (train_aff's seed quality, propagate, crf,
make_pseudo, eval_seg).
Also: CRF workers per rank and the process-group timeout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wsss.artifacts import StageDir
from wsss.cam.io import save_cam
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic

from conftest import REPO, subprocess_env

BASE = REPO / "configs" / "_base_"
STAGES = ["propagate_par", "crf", "make_pseudo", "eval_seg"]


def _config(path: Path, root: Path) -> Path:
    bases = ["default_runtime.py", "datasets/synthetic.py", "affinity.py", "crf.py", "pseudo.py",
             "schedules/seg_synthetic.py"]
    path.write_text(
        "_base_ = [" + ", ".join(repr(str(BASE / b)) for b in bases) + "]\n"
        f"data = dict(root={str(root)!r})\n"
        "propagate = dict(method='par', name='propagate_par', par=dict(dilations=[1, 2], num_iter=3, w1=0.3, "
        "w2=0.01, scale=1.0))\n"
        "crf = dict(input='propagate_par', bg_threshold=0.3, n_iter=2, num_workers=1)\n"
        "pseudo = dict(input='propagate_par', conf_fg=0.5, conf_bg=0.2, num_workers=1)\n"
        "seg_model = dict(type='deeplabv3plus', backbone='resnet18', pretrained=False, weights=None, "
        "head_channels=8)\n"
        "train_seg = dict(iters=2, batch_size=2, crop_size=32, ckpt_interval=2, log_interval=1, num_workers=0)\n"
        "eval_seg = dict(scales=[1.0, 0.75], flip=True)\n"
        "aff_model = dict(backbone='resnet18', feature_stride=4, proj_dim=8, embed_dim=8)\n"
        "train_aff = dict(iters=1, batch_size=2, crop_size=32, radius=2, num_workers=0, ckpt_interval=1, "
        "log_interval=1)\n"
        "pipeline = ['train_aff', dict(module='propagate', name='propagate_par'), 'crf', 'make_pseudo', "
        "'train_seg', 'eval_seg']\n")
    return path


def _fake_cams(work: Path, root: Path) -> None:
    """A complete make_cam folder: noisy ground-truth CAMs (no classifier needed)."""
    ds = build_dataset(dict(type="synthetic", root=str(root)), "train")
    rng = np.random.default_rng(0)
    sd = StageDir(work, "make_cam", "handmade")
    sd.begin()
    for i in ds.ids:
        gt = ds.mask(i)
        keys = list(ds.labels[i])
        cams = np.stack([(gt == k).astype(np.float32) * 0.8 for k in keys]) if keys else np.zeros((0,) + gt.shape)
        cams = np.clip(cams + rng.uniform(0, 0.45, cams.shape), 0, 1).astype(np.float32)
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams)
    sd.finish(items=len(ds.ids))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("dist_eval")
    root = tmp / "data"
    generate_synthetic(root, num_train=9, num_val=5, seed=4, size=40)
    cfg = _config(tmp / "cfg.py", root)
    single = tmp / "single"
    _fake_cams(single, root)
    out = subprocess.run([sys.executable, str(REPO / "tools" / "run_pipeline.py"), str(cfg), "--work-dir",
                          str(single)], capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert out.returncode == 0, out.stderr[-3000:]
    sharded = tmp / "sharded"  # same CAMs and the same trained network; every scoring stage runs on 2 ranks
    for stage in ("make_cam", "train_seg"):
        shutil.copytree(single / stage, sharded / stage)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    out = subprocess.run(launcher + [str(REPO / "tools" / "run_pipeline.py"), str(cfg), "--work-dir", str(sharded)],
                         capture_output=True, text=True, timeout=600,
                         env=subprocess_env(WSSS_DIST_BACKEND="gloo", WSSS_DIST_TIMEOUT_MIN="5"))
    assert out.returncode == 0, out.stderr[-3000:]
    return single, sharded


def test_sharded_scoring_equals_single_process(runs: tuple[Path, Path]) -> None:
    single, sharded = runs
    for stage in STAGES:
        a = json.loads((single / stage / "metrics.json").read_text())
        b = json.loads((sharded / stage / "metrics.json").read_text())
        assert a == b, stage
        assert json.loads((sharded / stage / "manifest.json").read_text())["metrics"] == \
            json.loads((single / stage / "manifest.json").read_text())["metrics"]
    seeds = [{k: v for k, v in json.loads((w / "train_aff" / "metrics.json").read_text()).items()
              if k.startswith("seed_")} for w in (single, sharded)]
    assert seeds[0] == seeds[1] and seeds[0]["seed_fg_accuracy"] is not None  # seed quality: shards summed
    seg = json.loads((sharded / "eval_seg" / "metrics.json").read_text())
    assert seg["images"] == 5 and 0 <= seg["miou"] <= 1 and "ms" in seg
    pseudo = json.loads((sharded / "make_pseudo" / "metrics.json").read_text())
    assert pseudo["images"] == 9  # both shards counted once
    train_seg = json.loads((sharded / "train_seg" / "manifest.json").read_text())
    assert train_seg["finished"] == json.loads((single / "train_seg" / "manifest.json").read_text())["finished"]


def test_workers_per_rank_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss.engine.pool import resolve_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_workers(0) == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_workers(0) == 4 and resolve_workers(None) == 4 and resolve_workers(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert resolve_workers(0) == 1


def test_timeout_from_env_then_config_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss import dist

    monkeypatch.delenv("WSSS_DIST_TIMEOUT_MIN", raising=False)
    assert dist.timeout_minutes(None) == dist.DEFAULT_TIMEOUT_MIN == 60
    assert dist.timeout_minutes(120) == 120
    monkeypatch.setenv("WSSS_DIST_TIMEOUT_MIN", "7.5")
    assert dist.timeout_minutes(120) == 7.5
