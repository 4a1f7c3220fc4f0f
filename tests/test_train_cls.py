"""train_cls: the loss goes down, val mAP is logged, and a run killed with SIGKILL resumes to bit-identical
weights on CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wsss.config import load_config, parse_overrides
from wsss.data.synthetic import generate_synthetic

from conftest import REPO, subprocess_env

CONFIG = REPO / "configs" / "synthetic" / "cam_resnet18.py"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    generate_synthetic(root, num_train=16, num_val=8, seed=0, size=64)
    return root


def _options(root: Path, **extra) -> list[str]:
    opts = {"data.root": str(root), "cls_model.backbone": "test_resnet", "train_cls.iters": 8,
            "train_cls.batch_size": 4, "train_cls.crop_size": 48, "train_cls.ckpt_interval": 3,
            "train_cls.log_interval": 2, "train_cls.num_workers": 0, "train_cls.lr": 0.02, **extra}
    return [f"{k}={v}" for k, v in opts.items()]


def _train(root: Path, work: Path, *args: str, env: dict | None = None, **extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tools" / "train_cls.py"), str(CONFIG), "--work-dir", str(work), *args,
           "--cfg-options", *_options(root, **extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(**(env or {})))


def test_loss_decreases_and_val_map_is_written(data_root, tmp_path):
    from stages.train_cls import run

    opts = _options(data_root, **{"train_cls.iters": 24, "train_cls.log_interval": 8, "train_cls.ckpt_interval": 24})
    cfg = load_config(CONFIG, parse_overrides(opts), tmp_path / "w")
    manifest = run(cfg)
    out = tmp_path / "w" / "train_cls"
    metrics = json.loads((out / "metrics.json").read_text())
    hist = metrics["loss_history"]
    assert [h["iter"] for h in hist] == [8, 16, 24]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert 0.0 <= metrics["val_map"] <= 1.0 and metrics["val_images"] == 8
    assert manifest["status"] == "complete" and manifest["metrics"]["val_map"] == metrics["val_map"]
    assert (out / "final.pth").is_file() and (out / "last.pth").is_file()
    # a complete stage with the same config is a no-op
    assert run(cfg)["finished"] == manifest["finished"]


def test_resume_after_sigkill_reaches_the_same_weights(data_root, tmp_path):
    from stages.train_cls import run
    from wsss.errors import WSSSError

    cfg = load_config(CONFIG, parse_overrides(_options(data_root)), tmp_path / "full")
    run(cfg)  # uninterrupted, in this process (one thread, as the subprocesses)
    # killed after iteration 5: last.pth holds iteration 3, iterations 4-5 are lost and redone
    killed = _train(data_root, tmp_path / "resumed", env={"WSSS_TEST_KILL_AT_ITER": "5"})
    assert killed.returncode == -signal.SIGKILL
    last = torch.load(tmp_path / "resumed" / "train_cls" / "last.pth", weights_only=False)
    assert last["iteration"] == 3
    assert not (tmp_path / "resumed" / "train_cls" / "final.pth").exists()
    cfg.work_dir = str(tmp_path / "resumed")
    with pytest.raises(WSSSError, match="--resume"):
        run(cfg)  # an interrupted run is never silently restarted
    resumed = _train(data_root, tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "at iteration 3" in resumed.stderr
    assert "val mAP" in (tmp_path / "resumed" / "train_cls" / "train.log").read_text()
    a = torch.load(tmp_path / "full" / "train_cls" / "final.pth")
    b = torch.load(tmp_path / "resumed" / "train_cls" / "final.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
