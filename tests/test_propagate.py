"""CAM propagation: random walk and PAR as pure functions, and the propagate stage end to end with resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, subprocess_env
from wsss.artifacts import TMP_MARK, StageDir, read_manifest
from wsss.cam.io import load_cam, save_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.models.affinity_net import build_affinity_net
from wsss.ops import radius_offsets
from wsss.refine.propagation import (background_channel, cams_to_grid, image_affinity, normalise_global,
                                     normalise_per_class, par_cams, random_walk_cams)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread, like the subprocesses (conftest.subprocess_env): on a busy 2-core machine extra
    threads only contend, and the bit-exact comparisons need the same thread count on both sides."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def region_affinity(regions: torch.Tensor, offsets) -> torch.Tensor:
    """[E, h, w]: 1 for pairs inside one region, 0 across regions (a perfect affinity)."""
    h, w = regions.shape
    out = torch.zeros(len(offsets), h, w)
    for e, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                ty, tx = y + dy, x + dx
                if 0 <= ty < h and 0 <= tx < w and regions[y, x] == regions[ty, tx]:
                    out[e, y, x] = 1.0
    return out


def two_regions(h: int = 8, w: int = 8) -> torch.Tensor:
    r = torch.zeros(h, w, dtype=torch.long)
    r[:, w // 2:] = 1
    return r


def test_random_walk_fills_the_seeded_region_and_stops_at_its_boundary():
    regions = two_regions()
    offsets = radius_offsets(3)
    aff = region_affinity(regions, offsets)
    cams = torch.zeros(1, 8, 8)
    cams[0, 3, 1] = 1.0  # a single confident pixel in the left region
    out = random_walk_cams(cams, aff, offsets, stride=1, beta=1.0, t=300)
    assert out.shape == (1, 8, 8)
    # the walk averages inside the left region (-> constant) and never crosses: after max-normalisation
    # the left half is 1, the right half 0.
    torch.testing.assert_close(out[0, :, :4], torch.ones(8, 4), atol=1e-3, rtol=0)
    assert (out[0, :, 4:] == 0).all()


def test_random_walk_with_background_channel_gives_share_against_background():
    regions = two_regions()
    offsets = radius_offsets(3)
    aff = region_affinity(regions, offsets)
    cams = torch.zeros(1, 8, 8)
    cams[0, :, :4] = 0.6          # class evidence on the left, none on the right
    out = random_walk_cams(cams, aff, offsets, stride=1, beta=1.0, t=50, bg="power", bg_power=1.0)
    # left: fg 0.6, bg (1 - 0.6) = 0.4 stay constant -> share 0.6; right: fg 0, bg 1 -> 0
    torch.testing.assert_close(out[0, :, :4], torch.full((8, 4), 0.6), atol=1e-3, rtol=0)
    torch.testing.assert_close(out[0, :, 4:], torch.zeros(8, 4), atol=1e-4, rtol=0)


def test_global_and_per_class_normalisation_on_a_two_class_toy():
    """Two classes on two disconnected regions: class A (left) 0.8, class B (right) 0.16. Constants inside a
    region are a fixed point of the walk, so the walked maps are the inputs, and the two normalisations are
    checked by hand: global divides both by 0.8 (A 1.0, B 0.2); per class divides each by its own max (A 1, B 1).
    At IRN's background threshold 0.25 class B is background after global and foreground after per_class."""
    regions = two_regions()
    offsets = radius_offsets(3)
    aff = region_affinity(regions, offsets)
    cams = torch.zeros(2, 8, 8)
    cams[0, :, :4] = 0.8
    cams[1, :, 4:] = 0.16
    glob = random_walk_cams(cams, aff, offsets, stride=1, beta=1.0, t=40, normalise="global")
    per = random_walk_cams(cams, aff, offsets, stride=1, beta=1.0, t=40, normalise="per_class")
    want_glob = torch.zeros(2, 8, 8)
    want_glob[0, :, :4], want_glob[1, :, 4:] = 1.0, 0.2
    want_per = torch.zeros(2, 8, 8)
    want_per[0, :, :4], want_per[1, :, 4:] = 1.0, 1.0
    torch.testing.assert_close(glob, want_glob, atol=1e-5, rtol=0)
    torch.testing.assert_close(per, want_per, atol=1e-5, rtol=0)
    decide = lambda x: torch.cat([torch.full((1, 8, 8), 0.25), x]).argmax(0)  # 0 = background  # noqa: E731
    assert (decide(glob)[:, 4:] == 0).all() and (decide(per)[:, 4:] == 2).all()
    # the pure functions on a hand-made 2x1x2 map
    x = torch.tensor([[[2.0, 1.0]], [[0.5, 0.0]]])
    torch.testing.assert_close(normalise_global(x), torch.tensor([[[1.0, 0.5]], [[0.25, 0.0]]]))
    torch.testing.assert_close(normalise_per_class(x), torch.tensor([[[1.0, 0.5]], [[1.0, 0.0]]]))
    torch.testing.assert_close(normalise_global(torch.zeros(2, 1, 2)), torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="normalise must be one of"):
        random_walk_cams(cams, aff, offsets, stride=1, normalise="peak")


def test_background_channel_modes():
    cams = torch.tensor([[[0.0, 0.5], [1.0, 0.04]]])
    torch.testing.assert_close(background_channel(cams, "power", power=2.0),
                               torch.tensor([[1.0, 0.25], [0.0, 0.9216]]))
    torch.testing.assert_close(background_channel(cams, "threshold", threshold=0.05),
                               torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert background_channel(cams, "none") is None


def test_cams_to_grid_averages_in_image_pixels_only():
    cams = torch.arange(10, dtype=torch.float32).reshape(1, 2, 5)  # 5 wide: last cell has one column
    grid = cams_to_grid(cams, 2)
    torch.testing.assert_close(grid, torch.tensor([[[3.0, 5.0, 6.5]]]))


def test_random_walk_upsamples_to_the_image_size():
    offsets = radius_offsets(2)
    cams = torch.rand(2, 30, 21)
    aff = torch.rand(len(offsets), 8, 6)  # ceil(30/4), ceil(21/4)
    out = random_walk_cams(cams, aff, offsets, stride=4, beta=2.0, t=4)
    assert out.shape == (2, 30, 21) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out.flatten(1).max(1).values, torch.ones(2))
    with pytest.raises(ValueError, match="grid"):
        random_walk_cams(cams, torch.rand(len(offsets), 7, 6), offsets, stride=4)


def test_par_keeps_mass_on_the_seeded_colour():
    image = np.zeros((24, 24, 3), np.uint8)
    image[:, :12] = (200, 40, 40)
    image[:, 12:] = (40, 40, 200)
    cams = torch.zeros(1, 24, 24)
    cams[0, 8:16, 4:8] = 1.0   # inside the red half
    out = par_cams(image, cams, dilations=(1, 2), num_iter=10)
    assert out.shape == (1, 24, 24) and out.max() == pytest.approx(1.0)
    left, right = out[0, :, :12], out[0, :, 12:]
    assert left.mean() > 5 * right.mean()
    assert (left > 0.05).float().mean() > (cams[0, :, :12] > 0).float().mean()  # it spread inside the red half


# ------------------------------------------------------------------------------------------------------------
# The stage on 3 synthetic images with hand-made CAMs and a tiny untrained affinity net.

def make_inputs(work: Path, ds, model_seed: int = 0) -> None:
    """A complete 'make_cam' stage (blurred ground truth as CAMs) and 'train_aff' stage (untrained tiny net)."""
    import cv2

    sd = StageDir(work, "make_cam", "handmade")
    sd.begin()
    for i in ds.ids:
        mask = ds.mask(i)
        keys = list(ds.labels[i])
        cams = np.stack([cv2.GaussianBlur((mask == k).astype(np.float32), (0, 0), 3.0) for k in keys])
        cams = cams / cams.max(axis=(1, 2), keepdims=True)
        save_cam(sd.path / "cams" / f"{i}.npz", keys, cams)
    sd.finish(items=len(ds.ids))
    sd = StageDir(work, "train_aff", "handmade")
    sd.begin()
    mcfg = dict(backbone="resnet18", pretrained=False, weights=None, feature_stride=4, max_stride=32, proj_dim=8,
                embed_dim=8)
    torch.manual_seed(model_seed)
    net = build_affinity_net(**mcfg)
    torch.save({"model": net.state_dict(), "aff_model": mcfg, "radius": 3, "iteration": 0}, sd.path / "final.pth")
    sd.finish(items=len(ds.ids))


def write_config(path: Path, data_root: Path, work: Path, **propagate) -> Path:
    items = ", ".join(f"{k}={v!r}" for k, v in propagate.items())
    path.write_text(
        f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, "
        f"{str(REPO / 'configs/_base_/affinity.py')!r}]\n"
        f"data = dict(type='synthetic', root={str(data_root)!r}, train_split='train', val_split='val', "
        f"cam_split='train')\n"
        f"work_dir = {str(work)!r}\n"
        f"device = 'cpu'\n"
        f"propagate = dict({items})\n")
    return path


@pytest.fixture(scope="module")
def three_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn3")
    generate_synthetic(root, num_train=3, num_val=0, seed=11, size=48)
    return root


def test_propagate_stage_end_to_end_rw_and_par(three_images, tmp_path):
    from stages import propagate

    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "rw.py", three_images, work, radius=3, t=16, flip=True))
    ds = build_dataset(cfg.data, "train")
    assert len(ds) == 3
    make_inputs(work, ds)
    manifest = propagate.run(cfg)
    assert manifest["status"] == "complete" and manifest["items"] == 3
    assert set(manifest["inputs"]) == {"make_cam", "train_aff"}
    assert (work / "propagate" / "metrics.json").is_file() and manifest["metrics"]["miou"] is not None

    # the stage writes exactly what the library functions compute
    model = propagate.load_affinity_model(work, "train_aff", torch.device("cpu"))
    offsets = radius_offsets(3)
    for i in ds.ids:
        keys_in, cams_in = load_cam(work / "make_cam" / "cams" / f"{i}.npz")
        keys, cams = load_cam(work / "propagate" / "cams" / f"{i}.npz")
        np.testing.assert_array_equal(keys, keys_in)
        assert cams.shape == cams_in.shape == (len(keys),) + ds.image(i).shape[:2]
        assert cams.min() >= 0 and cams.max() <= 1
        aff = image_affinity(model, propagate._image_tensor(ds.image(i), torch.device("cpu")), offsets,
                             [1.0], True)
        expected = random_walk_cams(torch.from_numpy(cams_in), aff, offsets, 4, 10.0, 16)
        np.testing.assert_allclose(cams, expected.numpy(), atol=1e-3)

    # PAR in its own folder beside it; it does not need the affinity model
    cfg_par = load_config(write_config(tmp_path / "par.py", three_images, work, method="par",
                                       name="propagate_par", par=dict(dilations=[1, 2], num_iter=5)))
    m2 = propagate.run(cfg_par)
    assert m2["status"] == "complete" and set(m2["inputs"]) == {"make_cam"}
    for i in ds.ids:
        keys, cams = load_cam(work / "propagate_par" / "cams" / f"{i}.npz")
        assert cams.shape[1:] == ds.image(i).shape[:2] and cams.max() <= 1

    # a complete stage with the same config is a no-op
    assert propagate.run(cfg)["finished"] == manifest["finished"]


def finished(folder: Path) -> list[Path]:
    """Output files (a killed writer may also leave a hidden temp file, which is not an output)."""
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


def test_propagate_resumes_after_kill(tmp_path):
    from stages import propagate

    data = tmp_path / "syn"
    generate_synthetic(data, num_train=10, num_val=0, seed=4, size=48)
    runs = {}
    for name in ("killed", "clean"):
        work = tmp_path / name
        cfg_path = write_config(tmp_path / f"{name}.py", data, work, radius=3, t=32, flip=False)
        cfg = load_config(cfg_path)
        ds = build_dataset(cfg.data, "train")
        make_inputs(work, ds)
        runs[name] = (work, cfg_path, cfg)

    work, cfg_path, cfg = runs["killed"]
    out = work / "propagate" / "cams"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "propagate.py"), str(cfg_path)],
                            env=subprocess_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if out.is_dir() and len(finished(out)) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = finished(out)
    assert 2 <= len(done) < len(ds.ids)
    for p in done:  # every file that exists is complete
        load_cam(p)
    assert read_manifest(work / "propagate")["status"] == "running"

    propagate.run(cfg)  # resumes: only the missing images are propagated
    assert not [p for p in out.parent.rglob(f"*{TMP_MARK}*")], "temp files left behind"
    clean_work, _, clean_cfg = runs["clean"]
    propagate.run(clean_cfg)
    for i in ds.ids:
        a_keys, a = load_cam(out / f"{i}.npz")
        b_keys, b = load_cam(clean_work / "propagate" / "cams" / f"{i}.npz")
        np.testing.assert_array_equal(a_keys, b_keys)
        np.testing.assert_array_equal(a, b)
