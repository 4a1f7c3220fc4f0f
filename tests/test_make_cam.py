"""make_cam: labelled classes only, values in [0, 1], original size, batched == naive reference, per-image
resume after SIGKILL, CUDA out-of-memory fallback."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.cam.io import load_cam
from wsss.cam.multiscale import multiscale_cam, naive_multiscale_cam, normalise_cams, upsample_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.models.registry import build_classifier

from conftest import REPO, subprocess_env

CONFIG = REPO / "configs" / "synthetic" / "cam_resnet18.py"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic set (some images resized so sizes differ) and random classifier weights."""
    base = tmp_path_factory.mktemp("mc")
    root = base / "synthetic"
    generate_synthetic(root, num_train=12, num_val=2, seed=1, size=64)
    import cv2
    for k, p in enumerate(sorted((root / "JPEGImages").glob("train_*.png"))[:4]):
        img, m = cv2.imread(str(p)), cv2.imread(str(root / "SegmentationClass" / p.name), cv2.IMREAD_UNCHANGED)
        size = (48, 64) if k % 2 else (80, 56)  # (w, h)
        cv2.imwrite(str(p), cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
        from wsss.data.palette import load_mask, save_mask
        save_mask(root / "SegmentationClass" / p.name,
                  cv2.resize(load_mask(root / "SegmentationClass" / p.name), size, interpolation=cv2.INTER_NEAREST))
        del m
    torch.manual_seed(0)
    model = build_classifier(dict(type="cam_classifier", backbone="test_resnet", output_stride=16), 6)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
    ckpt = base / "weights.pth"
    torch.save(model.state_dict(), ckpt)
    return root, ckpt


def _opts(root: Path, ckpt: Path, **extra) -> dict:
    return {"data.root": str(root), "cls_model.backbone": "test_resnet", "cam.checkpoint": str(ckpt),
            "cam.scales": [1.0, 0.5, 1.5], "cam.batch_size": 3, "cam.num_workers": 0, **extra}


def _cli(opts: dict) -> list[str]:
    out = []
    for k, v in opts.items():
        out.append(f"{k}={v}".replace(" ", "") if isinstance(v, list) else f"{k}={v}")
    return out


def test_make_cam_writes_labelled_classes_in_unit_range_at_original_size(setup, tmp_path):
    from stages.make_cam import run

    root, ckpt = setup
    cfg = load_config(CONFIG, _opts(root, ckpt), tmp_path / "w")
    manifest = run(cfg)
    ds = build_dataset(cfg.data, "train")
    assert manifest["status"] == "complete" and manifest["items"] == len(ds.ids)
    sizes = set()
    for i in ds.ids:
        keys, cams = load_cam(tmp_path / "w" / "make_cam" / "cams" / f"{i}.npz")
        assert keys.tolist() == sorted(ds.labels[i])
        assert cams.shape[1:] == ds.image(i).shape[:2]
        assert cams.min() >= 0.0 and cams.max() <= 1.0
        peaks = cams.reshape(len(keys), -1).max(1)
        assert np.all((peaks > 0.99) | (peaks == 0))  # each class normalised by its own maximum
        sizes.add(cams.shape[1:])
    assert len(sizes) == 3  # the size groups really differ
    assert "miou" in manifest["metrics"] and "oracle_miou" in manifest["metrics"]
    assert (tmp_path / "w" / "make_cam" / "metrics.json").is_file()


def test_batched_multiscale_equals_the_naive_per_image_loop():
    torch.manual_seed(0)
    model = build_classifier(dict(type="cam_classifier", backbone="test_resnet", output_stride=16), 4).eval()
    images = torch.randn(3, 3, 50, 70)
    scales = [1.0, 0.5, 1.5]
    with torch.no_grad():
        batched = multiscale_cam(model.cam, images, scales, flip=True)
        naive = torch.stack([naive_multiscale_cam(model.cam, images[b:b + 1], scales, True) for b in range(3)])
        sub = multiscale_cam(model.cam, images, scales, flip=True, classes=torch.tensor([3, 1]))
    assert batched.shape == (3, 4, 50, 70)
    torch.testing.assert_close(batched, naive, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sub, batched[:, [3, 1]])
    n = normalise_cams(batched)
    assert n.amax(dim=(2, 3)).max() <= 1.0 and n.min() >= 0


def test_flip_is_undone_before_fusing():
    """A CAM function that only fires on the left half of its input: with flip, the fused map is symmetric."""
    def left_half(x: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(x.shape[0], 1, x.shape[2] // 2, x.shape[3] // 2)
        m[..., : m.shape[-1] // 2] = 1.0
        return m

    fused = multiscale_cam(left_half, torch.zeros(1, 3, 32, 32), [1.0], flip=True)[0, 0]
    torch.testing.assert_close(fused, fused.flip(-1))
    single = multiscale_cam(left_half, torch.zeros(1, 3, 32, 32), [1.0], flip=False)[0, 0]
    assert single[:, :8].min() == 1.0 and single[:, 24:].max() == 0.0


def test_upsample_cam_keeps_cells_aligned_with_their_pixels():
    # 40 px at stride 16 -> 3 cells covering [0,16), [16,32), [32,48): the last cell is mostly padding
    cam = torch.tensor([[[[0.0, 0.0, 1.0]]]]).expand(1, 1, 3, 3).contiguous()
    up = upsample_cam(cam, (40, 40), (40, 40))[0, 0]
    assert up.shape == (40, 40)
    assert up[0, :16].max() < 0.05 and up[0, 39] > 0.9  # stretching would put 1.0 from pixel ~27 on
    torch.testing.assert_close(upsample_cam(cam, (20, 20), (40, 40)).shape, torch.Size([1, 1, 40, 40]))


def test_resume_after_sigkill_completes_to_the_same_cams(setup, tmp_path, caplog):
    from stages.make_cam import run

    root, ckpt = setup
    opts = _opts(root, ckpt, **{"cam.batch_size": 1})
    ref = load_config(CONFIG, opts, tmp_path / "ref")
    run(ref)
    work = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "tools" / "make_cam.py"), str(CONFIG), "--work-dir", str(work),
           "--cfg-options", *_cli(opts)]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env=subprocess_env(WSSS_TEST_KILL_AFTER_IMAGES="5"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    cams = work / "make_cam" / "cams"
    done = sorted(p for p in cams.glob("*.npz") if not p.name.startswith("."))  # temps are not artifacts
    assert 4 <= len(done) <= 5
    for p in done:  # every file that exists is complete
        load_cam(p)
    with caplog.at_level(logging.INFO):
        manifest = run(load_config(CONFIG, opts, work))  # the re-run, in this process
    assert "resuming" in caplog.text
    assert manifest["status"] == "complete" and sum(manifest["computed_per_rank"]) == 12 - len(done)
    assert not [p for p in cams.iterdir() if p.name.startswith(".")]  # no temp files left behind
    names = sorted(p.name for p in cams.glob("*.npz"))
    assert names == sorted(p.name for p in (tmp_path / "ref" / "make_cam" / "cams").glob("*.npz"))
    for n in names:
        k1, c1 = load_cam(cams / n)
        k2, c2 = load_cam(tmp_path / "ref" / "make_cam" / "cams" / n)
        assert np.array_equal(k1, k2) and np.array_equal(c1, c2), n


def test_out_of_memory_on_a_batch_retries_images_one_by_one(caplog):
    from stages.make_cam import _process

    torch.manual_seed(0)
    model = build_classifier(dict(type="cam_classifier", backbone="test_resnet", output_stride=16), 4).eval()

    class Tight(torch.nn.Module):
        """Pretends the device holds at most one image (and its flip) per forward pass."""

        def cam(self, x):
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return model.cam(x)

    batch = np.random.default_rng(0).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    labels = [[1], [2, 4], []]
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        got = _process(Tight(), ["a", "b", "c"], batch, labels, [1.0, 0.5], True, False, torch.device("cpu"))
        ref = _process(model, ["a", "b", "c"], batch, labels, [1.0, 0.5], True, False, torch.device("cpu"))
    assert "out of cpu memory on a batch of 3" in caplog.text
    assert [g[0] for g in got] == ["a", "b", "c"] and [g[1] for g in got] == labels
    for (_, _, x), (_, _, y) in zip(got, ref):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=1e-5)
    assert got[2][2].shape == (0, 40, 56)


# ------------------------------------------------------------------------------------------------------------
# Big images (issue 20.4): a memory estimate before each batch, cam.max_side, one clear line.

def _with_big_image(setup, tmp_path) -> tuple[Path, Path, str]:
    import shutil

    import cv2
    root, ckpt = setup
    big_root = tmp_path / "data"
    shutil.copytree(root, big_root)
    p = sorted((big_root / "JPEGImages").glob("train_*.png"))[-1]
    cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (640, 480), interpolation=cv2.INTER_LINEAR))
    mask = big_root / "SegmentationClass" / p.name
    from wsss.data.palette import load_mask, save_mask
    save_mask(mask, cv2.resize(load_mask(mask), (640, 480), interpolation=cv2.INTER_NEAREST))
    return big_root, ckpt, p.stem


def test_image_too_big_for_free_memory_is_one_line_before_running_it(setup, tmp_path, monkeypatch):
    import stages.make_cam as make_cam
    from wsss.errors import WSSSError

    root, ckpt, big = _with_big_image(setup, tmp_path)
    # Free memory between what a batch of small images needs and what the 640x480 one at scale 1.5 + flip needs.
    small, large = _estimate(3, 80, 80), _estimate(1, 480, 640)
    assert small < large
    free = int((small + large) / 2 / make_cam.USABLE_SHARE)
    monkeypatch.setattr(make_cam, "available_bytes", lambda device: free)
    cfg = load_config(CONFIG, _opts(root, ckpt), tmp_path / "w")
    with pytest.raises(WSSSError, match=rf"image '{big}' \(640x480\) needs about .* set cam.max_side"):
        make_cam.run(cfg)
    assert not list((tmp_path / "w" / "make_cam").rglob("*.npz"))  # refused before any CAM was computed
    # With a max side the same image runs (shrunk for inference), and its CAMs are stored at full size.
    cfg = load_config(CONFIG, _opts(root, ckpt, **{"cam.max_side": 128}), tmp_path / "w")
    manifest = make_cam.run(cfg)
    keys, cams = load_cam(tmp_path / "w" / "make_cam" / "cams" / f"{big}.npz")
    assert cams.shape[1:] == (480, 640) and cams.max() <= 1.0
    assert manifest["max_side"] == 128 and manifest["resized_for_inference"] == 1


def test_batch_over_the_memory_estimate_is_split_not_killed(setup, tmp_path, monkeypatch, caplog):
    import stages.make_cam as make_cam

    root, ckpt = setup
    ref = load_config(CONFIG, _opts(root, ckpt), tmp_path / "ref")
    make_cam.run(ref)
    # Room for about one image at a time: the batches of 3 are split, and the CAMs are the same.
    monkeypatch.setattr(make_cam, "available_bytes", lambda device: int(_estimate(1, 80, 80) / 0.7) + 1)
    cfg = load_config(CONFIG, _opts(root, ckpt), tmp_path / "split")
    with caplog.at_level(logging.WARNING):
        make_cam.run(cfg)
    assert "running them in smaller batches" in caplog.text
    for p in sorted((tmp_path / "ref" / "make_cam" / "cams").glob("*.npz")):
        k1, c1 = load_cam(p)
        k2, c2 = load_cam(tmp_path / "split" / "make_cam" / "cams" / p.name)
        assert np.array_equal(k1, k2) and np.allclose(c1, c2, atol=2e-3)


def _estimate(batch: int, h: int, w: int) -> int:
    """make_cam's estimate for ``batch`` images of h x w with all 5 classes at the tests' scales and flip
    (80x80 bounds every image of the fixture)."""
    from wsss.cam.memory import ActivationProbe

    model = build_classifier(dict(type="cam_classifier", backbone="test_resnet", output_stride=16), 6)
    probe = ActivationProbe(model.cam, list(model.modules()), torch.device("cpu"))
    return max(probe.estimate(batch, h, w, [1.0, 0.5, 1.5], True, 5), 1)


def test_changed_bg_threshold_rescores_without_recomputing_cams(setup, tmp_path):
    """cam.bg_threshold only sets the report: a complete stage keeps its CAMs and re-scores them (issue 20.6)."""
    import stages.make_cam as make_cam
    from wsss.eval.cam_eval import evaluate_cam_dir

    root, ckpt = setup
    first = make_cam.run(load_config(CONFIG, _opts(root, ckpt, **{"cam.bg_threshold": 0.15}), tmp_path))
    cams = sorted((tmp_path / "make_cam" / "cams").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cams]
    again = make_cam.run(load_config(CONFIG, _opts(root, ckpt, **{"cam.bg_threshold": 0.6}), tmp_path))
    assert again["finished"] == first["finished"] and [p.stat().st_mtime_ns for p in cams] == stamps
    ds = build_dataset(load_config(CONFIG, _opts(root, ckpt), tmp_path).data, "train")
    want = evaluate_cam_dir(tmp_path / "make_cam" / "cams", ds, bg_threshold=0.6)
    assert again["metrics"]["bg_threshold"] == 0.6 and again["metrics"]["miou"] == pytest.approx(want["miou"])
    assert again["metrics"]["miou"] != first["metrics"]["miou"]
    assert json.loads((tmp_path / "make_cam" / "manifest.json").read_text())["metrics"]["bg_threshold"] == 0.6
