"""The train_aff stage: seeds from CAMs, a few training iterations, bit-exact resume after SIGKILL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, subprocess_env
from wsss.artifacts import StageDir, read_manifest
from wsss.cam.io import load_cam, save_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.palette import load_mask
from wsss.data.synthetic import generate_synthetic
from wsss.errors import WSSSError
from wsss.refine.affinity_labels import seed_labels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread, like the subprocesses (conftest.subprocess_env): on a busy 2-core machine extra
    threads only contend, and the bit-exact comparisons need the same thread count on both sides."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_cam_stage(work: Path, ds) -> None:
    """A complete 'make_cam' stage whose CAMs are blurred ground truth (strong inside, weak at the borders)."""
    import cv2

    sd = StageDir(work, "make_cam", "handmade")
    sd.begin()
    for i in ds.ids:
        mask = ds.mask(i)
        keys = list(ds.labels[i])
        cams = np.stack([cv2.GaussianBlur((mask == k).astype(np.float32), (0, 0), 2.0) for k in keys])
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams / cams.max(axis=(1, 2), keepdims=True))
    sd.finish(items=len(ds.ids))


def write_config(path: Path, data_root: Path, work: Path, **train_aff) -> Path:
    sec = dict(crop_size=32, scale_range=(0.8, 1.2), iters=4, batch_size=2, lr=0.01, radius=3, num_workers=0,
               ckpt_interval=2, log_interval=1)
    sec.update(train_aff)
    items = ", ".join(f"{k}={v!r}" for k, v in sec.items())
    path.write_text(
        f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, "
        f"{str(REPO / 'configs/_base_/affinity.py')!r}]\n"
        f"data = dict(type='synthetic', root={str(data_root)!r}, train_split='train', val_split='val', "
        f"cam_split='train')\n"
        f"work_dir = {str(work)!r}\n"
        f"device = 'cpu'\n"
        f"aff_model = dict(backbone='resnet18', embed_dim=8, proj_dim=8)\n"
        f"train_aff = dict({items})\n")
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, num_train=6, num_val=0, seed=2, size=40)
    return root


def final_weights(work: Path) -> dict[str, torch.Tensor]:
    return torch.load(work / "train_aff" / "final.pth", map_location="cpu", weights_only=False)["model"]


def test_train_aff_writes_seeds_and_weights(tiny_data, tmp_path):
    from stages import train_aff

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "cfg.py", tiny_data, work, iters=2))
    ds = build_dataset(cfg.data, "train")
    make_cam_stage(work, ds)
    m = train_aff.run(cfg)
    assert m["status"] == "complete" and m["inputs"] == {"make_cam": read_manifest(work / "make_cam")["fingerprint"]}
    for i in ds.ids:  # seeds are the ignore-band labels of the CAMs
        keys, cams = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        np.testing.assert_array_equal(load_mask(work / "train_aff" / "seeds" / f"{i}.png"),
                                      seed_labels(keys, cams, 0.30, 0.05))
    metrics = m["metrics"]
    assert metrics["iters"] == 2 and np.isfinite(metrics["loss_last"])
    # seed quality recomputed here from the seed files and the ground truth
    seeds = np.stack([load_mask(work / "train_aff" / "seeds" / f"{i}.png") for i in ds.ids])
    gt = np.stack([ds.mask(i) for i in ds.ids])
    fg, bg = (seeds != 0) & (seeds != 255), seeds == 0
    assert metrics["seed_coverage"] == pytest.approx((seeds != 255).mean(), abs=1e-6)
    assert metrics["seed_fg_accuracy"] == pytest.approx((seeds[fg] == gt[fg]).mean(), abs=1e-6)
    assert metrics["seed_bg_accuracy"] == pytest.approx((gt[bg] == 0).mean(), abs=1e-6)
    state = torch.load(work / "train_aff" / "final.pth", map_location="cpu", weights_only=False)
    assert state["aff_model"]["backbone"] == "resnet18" and state["iteration"] == 2


def test_train_aff_config_errors(tiny_data, tmp_path):
    from stages import train_aff

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "a.py", tiny_data, work, crop_size=40))
    with pytest.raises(WSSSError, match="multiple of"):
        train_aff.run(cfg)
    cfg = load_config(write_config(tmp_path / "b.py", tiny_data, work, crop_sise=32))
    with pytest.raises(WSSSError, match="crop_sise"):
        train_aff.run(cfg)


def test_train_aff_resumes_bit_exact_after_kill(tiny_data, tmp_path):
    from stages import train_aff

    # uninterrupted: 4 iterations
    clean = tmp_path / "clean"
    cfg = load_config(write_config(tmp_path / "clean.py", tiny_data, clean))
    ds = build_dataset(cfg.data, "train")
    make_cam_stage(clean, ds)
    train_aff.run(cfg)

    # killed with SIGKILL right after iteration 2 (its checkpoint is written), then resumed
    killed = tmp_path / "killed"
    cfg_path = write_config(tmp_path / "killed.py", tiny_data, killed)
    make_cam_stage(killed, ds)
    env = subprocess_env(WSSS_TEST_KILL_AT_ITER="2", OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_aff.py"), str(cfg_path)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert read_manifest(killed / "train_aff")["status"] == "running"
    assert not (killed / "train_aff" / "final.pth").exists()
    last = torch.load(killed / "train_aff" / "last.pth", map_location="cpu", weights_only=False)
    assert last["iteration"] == 2

    # A plain re-run refuses and keeps the checkpoint (it used to train from scratch over it).
    before = (killed / "train_aff" / "last.pth").read_bytes()
    with pytest.raises(WSSSError, match="interrupted run stopped at iteration 2; pass --resume"):
        train_aff.run(load_config(cfg_path))
    assert (killed / "train_aff" / "last.pth").read_bytes() == before

    m = train_aff.run(load_config(cfg_path), resume=True)
    assert m["status"] == "complete" and m["metrics"]["iters"] == 4
    a, b = final_weights(clean), final_weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_degenerate_seeds_are_warned_about(caplog):
    from stages import train_aff

    sec = {"conf_fg": 0.3, "conf_bg": 0.05}
    with caplog.at_level("WARNING", logger="stages.train_aff"):
        train_aff.warn_if_degenerate("t", {"seed_fg_share": 0.77, "seed_bg_share": 0.01}, sec)
    assert "77 % foreground and 1 % background" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="stages.train_aff"):
        train_aff.warn_if_degenerate("t", {"seed_fg_share": 0.10, "seed_bg_share": 0.39}, sec)
    assert caplog.text == ""


def test_epochs_convert_to_iterations_as_irn_counts_them():
    from stages.train_aff import DEFAULTS, resolve_iters

    irn = {**DEFAULTS, "epochs": 3, "batch_size": 32}
    assert resolve_iters(irn, 10582) == 990          # VOC train_aug: (10582 // 32) * 3
    assert resolve_iters(irn, 10582, world_size=2) == 495  # batch_size is per GPU: (10582 // 64) * 3
    assert resolve_iters({**DEFAULTS, "iters": 7}, 10582) == 7  # epochs=None: iters
    with pytest.raises(WSSSError, match="no full batch"):
        resolve_iters(irn, 20)


def test_frozen_backbone_trains_only_the_heads_with_irn_crf_seeds(tiny_data, tmp_path):
    """freeze_backbone: every backbone tensor (weights and BatchNorm running statistics) leaves training exactly
    as initialised, the new layers move; epochs=2 on 6 images at batch 2 is 6 iterations; CRF seeds use IRN's
    'labels' unary by default."""
    from stages import train_aff
    from wsss.engine.seed import seed_everything
    from wsss.refine.crf import CRFParams

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "cfg.py", tiny_data, work, freeze_backbone=True, epochs=2,
                                   use_crf=True, lr=0.1, head_lr_mult=1.0))
    ds = build_dataset(cfg.data, "train")
    make_cam_stage(work, ds)
    m = train_aff.run(cfg)
    assert m["metrics"]["iters"] == 6
    seed_everything(int(cfg.seed))  # the initialisation _train starts from
    init = train_aff.build_affinity_net(**train_aff.model_config(cfg)).state_dict()
    final = final_weights(work)
    backbone = [k for k in init if k.startswith("backbone.")]
    heads = [k for k in init if not k.startswith("backbone.") and init[k].is_floating_point()]
    assert backbone and heads
    for k in backbone:
        torch.testing.assert_close(final[k], init[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(final[k], init[k]) for k in heads)
    for i in ds.ids:
        keys, cams = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        np.testing.assert_array_equal(load_mask(work / "train_aff" / "seeds" / f"{i}.png"),
                                      seed_labels(keys, cams, 0.30, 0.05, ds.image(i), CRFParams(unary="labels")))
