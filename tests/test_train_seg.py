"""Stage train_seg on a tiny synthetic set: the loss goes down, pseudo masks of a named stage are read, the
ground-truth upper bound gets its own folder, and a run killed mid-way resumes to bit-identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from stages import train_seg
from wsss.artifacts import StageDir, read_manifest
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.palette import save_mask
from wsss.data.synthetic import generate_synthetic
from wsss.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, num_train=8, num_val=2, seed=3, size=32)
    return root


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the same reduction order as the OMP_NUM_THREADS=1 subprocess (bit-exact resume), and
    tiny convolutions run far faster single-threaded on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_config(path: Path, data_root: Path, work_dir: Path, **train: Any) -> Path:
    sections = dict(
        work_dir=str(work_dir), seed=7, device="cpu",
        data=dict(type="synthetic", root=str(data_root), train_split="train", val_split="val", cam_split="train"),
        seg_model=dict(type="deeplabv3plus", backbone="test_resnet", pretrained=False, head_channels=16),
        train_seg=dict(dict(masks="gt", iters=8, batch_size=2, crop_size=32, scale_range=(0.75, 1.25), lr=0.01,
                            ckpt_interval=2, log_interval=2, num_workers=0), **train),
    )
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in sections.items()))
    return path


def test_a_few_iterations_lower_the_loss(tmp_path: Path, data_root: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.py", data_root, tmp_path / "wd", iters=16, batch_size=4,
                                   log_interval=4, lr=0.02))
    manifest = train_seg.run(cfg)
    assert manifest["status"] == "complete" and manifest["stage"] == "train_seg"
    curve = json.loads((tmp_path / "wd" / "train_seg" / "metrics.json").read_text())["loss_curve"]
    assert [it for it, _ in curve] == [4, 8, 12, 16]
    assert curve[-1][1] < 0.8 * curve[0][1], curve
    final = torch.load(tmp_path / "wd" / "train_seg" / "final.pth", weights_only=False)
    assert final["num_classes"] == 7 and final["class_names"][0] == "background"
    assert final["seg_model"]["backbone"] == "test_resnet"
    # a second run of the complete stage is a no-op
    assert train_seg.run(cfg)["finished"] == manifest["finished"]


def test_trains_on_the_pseudo_masks_of_the_named_stage(tmp_path: Path, data_root: Path) -> None:
    wd = tmp_path / "wd"
    cfg = load_config(write_config(tmp_path / "c.py", data_root, wd, masks="make_pseudo", iters=2))
    ds = build_dataset(cfg.data, "train")
    pseudo = StageDir(wd, "make_pseudo", "fake")
    pseudo.begin()
    for i in ds.ids[:-1]:
        m = ds.mask(i).copy()
        m[:4] = 255  # undecided pixels are ignored by the loss
        save_mask(pseudo.path / "masks" / f"{i}.png", m)
    pseudo.finish(items=len(ds.ids) - 1)
    with pytest.raises(InputError, match=rf"{ds.ids[-1]}\.png: pseudo mask missing \(1 of 8"):
        train_seg.run(cfg)
    save_mask(pseudo.path / "masks" / f"{ds.ids[-1]}.png", np.full((32, 32), 255, np.uint8))
    assert train_seg.inputs(cfg) == ["make_pseudo"]
    manifest = train_seg.run(cfg)
    assert manifest["inputs"] == {"make_pseudo": read_manifest(pseudo.path)["fingerprint"]}
    assert (wd / "train_seg" / "final.pth").is_file()


def test_upper_bound_trains_on_ground_truth_in_its_own_folder(tmp_path: Path, data_root: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.py", data_root, tmp_path / "wd", name="train_seg_gt", iters=2))
    assert train_seg.stage_name(cfg) == "train_seg_gt" and train_seg.inputs(cfg) == []
    manifest = train_seg.run(cfg)
    assert manifest["stage"] == "train_seg_gt" and manifest["inputs"] == {}
    assert (tmp_path / "wd" / "train_seg_gt" / "final.pth").is_file()
    assert not (tmp_path / "wd" / "train_seg").exists()


def test_all_ignore_batch_gives_zero_loss_not_nan() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = train_seg.seg_loss(logits, torch.full((2, 4, 4), 255, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_resume_after_kill_reproduces_the_uninterrupted_weights(tmp_path: Path, data_root: Path) -> None:
    iters = 16
    killed_wd, full_wd = tmp_path / "killed", tmp_path / "full"
    opts = dict(iters=iters, num_workers=1, log_interval=3)  # logs between checkpoints: partial windows resume too
    cfg_killed = write_config(tmp_path / "k.py", data_root, killed_wd, **opts)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "train_seg.py"), str(cfg_killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed_wd / "train_seg" / "last.pth"
    deadline = time.time() + 60
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the subprocess never wrote last.pth"
    assert read_manifest(killed_wd / "train_seg")["status"] == "running"
    assert not (killed_wd / "train_seg" / "final.pth").exists()
    stopped_at = torch.load(last, weights_only=False)["iteration"]
    assert 0 < stopped_at < iters

    resumed = train_seg.run(load_config(cfg_killed), resume=True)
    full = train_seg.run(load_config(write_config(tmp_path / "f.py", data_root, full_wd, **opts)))
    assert resumed["status"] == full["status"] == "complete"
    a = torch.load(killed_wd / "train_seg" / "final.pth", weights_only=False)["model"]
    b = torch.load(full_wd / "train_seg" / "final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ca = json.loads((killed_wd / "train_seg" / "metrics.json").read_text())["loss_curve"]
    cb = json.loads((full_wd / "train_seg" / "metrics.json").read_text())["loss_curve"]
    assert ca == cb


def test_val_curve_changes_no_weight_and_no_hash(tmp_path: Path, data_root: Path) -> None:
    # eval_points: val mIoU after 2, 4, 6, 8 of 8 iterations; the weights equal a run without the curve, and the
    # complete stage is a no-op whichever eval_points a re-run asks for (not part of the artifact identity)
    assert train_seg.eval_iterations(8, 4) == [2, 4, 6, 8] and train_seg.eval_iterations(300, 4) == [75, 150,
                                                                                                      225, 300]
    assert train_seg.eval_iterations(8, 0) == [] and train_seg.eval_iterations(3, 4) == [1, 2, 3]
    with_curve = load_config(write_config(tmp_path / "a.py", data_root, tmp_path / "a", eval_points=4))
    plain = load_config(write_config(tmp_path / "b.py", data_root, tmp_path / "b"))
    m_a, m_b = train_seg.run(with_curve), train_seg.run(plain)
    assert m_a["config_hash"] == m_b["config_hash"]
    wa = torch.load(tmp_path / "a" / "train_seg" / "final.pth", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "train_seg" / "final.pth", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    curve = json.loads((tmp_path / "a" / "train_seg" / "curve.json").read_text())
    assert [p["iter"] for p in curve["points"]] == [2, 4, 6, 8]
    assert [p["fraction"] for p in curve["points"]] == [0.25, 0.5, 0.75, 1.0]
    # the last point is the final network's single-scale val mIoU, recomputed independently here
    from stages.eval_seg import load_segmentor
    from wsss.eval.bound import curve_converged

    model, _ = load_segmentor(tmp_path / "a" / "train_seg" / "final.pth", torch.device("cpu"))
    summary = train_seg.val_summary(model, build_dataset(with_curve.data, "val"), torch.device("cpu"))
    assert curve["points"][-1]["miou"] == pytest.approx(summary["miou"])
    assert curve["converged"] == curve_converged([p["miou"] for p in curve["points"]])
    assert not (tmp_path / "b" / "train_seg" / "curve.json").exists()
    assert train_seg.run(load_config(write_config(tmp_path / "a2.py", data_root, tmp_path / "a",
                                                  eval_points=2)))["finished"] == m_a["finished"]
