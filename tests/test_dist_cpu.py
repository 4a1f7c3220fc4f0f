"""torchrun with 2 CPU processes (gloo): train_cls under DDP, then make_cam sharded by rank; every CAM is
written exactly once and equals the single-process CAM of the same weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from wsss.cam.io import load_cam
from wsss.data.synthetic import generate_synthetic

from conftest import REPO, subprocess_env

CONFIG = REPO / "configs" / "synthetic" / "cam_resnet18.py"


def _run(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(launcher + args, capture_output=True, text=True, timeout=300,
                          env=subprocess_env(WSSS_DIST_BACKEND="gloo"))


def test_torchrun_two_cpu_ranks_train_cls_and_make_cam(tmp_path: Path):
    root = tmp_path / "synthetic"
    generate_synthetic(root, num_train=10, num_val=2, seed=3, size=48)
    opts = [f"data.root={root}", "cls_model.backbone=test_resnet", "train_cls.iters=3", "train_cls.batch_size=2",
            "train_cls.crop_size=32", "train_cls.num_workers=0", "train_cls.ckpt_interval=3",
            "cam.scales=[1.0,0.5]", "cam.batch_size=1", "cam.num_workers=0", "cam.evaluate=False"]
    work = tmp_path / "ddp"
    out = _run([str(REPO / "tools" / "train_cls.py"), str(CONFIG), "--work-dir", str(work),
                "--cfg-options", *opts], nproc=2)
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((work / "train_cls" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 2
    out = _run([str(REPO / "tools" / "make_cam.py"), str(CONFIG), "--work-dir", str(work),
                "--cfg-options", *opts], nproc=2)
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((work / "make_cam" / "manifest.json").read_text())
    assert manifest["computed_per_rank"] == [5, 5]  # disjoint shards, each image computed once
    cams = sorted((work / "make_cam" / "cams").iterdir())
    assert len(cams) == 10 and all(not p.name.startswith(".") for p in cams)

    # the same weights, one process (this one, single-threaded like the ranks)
    from stages.make_cam import run
    from wsss.config import load_config, parse_overrides

    single = tmp_path / "single"
    torch.set_num_threads(1)
    run(load_config(CONFIG, parse_overrides(opts + [f"cam.checkpoint={work / 'train_cls' / 'final.pth'}"]), single))
    for p in cams:
        k1, c1 = load_cam(p)
        k2, c2 = load_cam(single / "make_cam" / "cams" / p.name)
        assert np.array_equal(k1, k2) and np.array_equal(c1, c2), p.name
