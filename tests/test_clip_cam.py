"""CLIP CAMs: the re-computed blocks match open_clip's, Grad-CAM matches a hook-based reference, the
attention affinity on hand-made inputs, shapes / range / labelled-only outputs, background prompts matter,
batching does not change results, checkpoint loading, and the stage resumes after SIGKILL.

Everything runs on a tiny randomly initialised open_clip ViT (no download). A test with real weights runs only
when WSSS_CLIP_CHECKPOINT names a local checkpoint (optionally WSSS_CLIP_MODEL, default ViT-B-16).
"""

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
import torch.nn.functional as F

from conftest import REPO, subprocess_env
from wsss.artifacts import read_manifest
from wsss.cam.io import load_cam
from wsss.config import load_config
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.errors import InputError, WSSSError
from wsss.models.clip_loader import load_clip
from wsss.refine.clip_cam import (ClipCamSettings, affinity_from_attention, block_forward, box_mask,
                                  build_text_bank, clip_cams, embed_tokens, encode_prompts, forward_blocks,
                                  input_size_for, interpolate_pos_embed, preprocess, refine_with_attention,
                                  softmax_gradcam)
from wsss.refine.clip_prompts import class_prompt_names, resolve_background, resolve_templates

TINY = dict(embed_dim=32,
            vision_cfg=dict(image_size=64, layers=3, width=64, patch_size=16, head_width=32),
            text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=1))
NAMES = ["background", "cat", "dog", "person", "train"]
CONFIG = REPO / "configs" / "synthetic" / "clip_cam.py"


@pytest.fixture(scope="module")
def clip():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_clip("ViT-B-16", None, "cpu", TINY)


@pytest.fixture(scope="module")
def banks(clip):
    tpl = resolve_templates("clip_es")
    with_bg = build_text_bank(clip, NAMES, tpl, resolve_background("voc"))
    no_bg = build_text_bank(clip, NAMES, tpl, resolve_background(None))
    return with_bg, no_bg


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (37, 81, 3), dtype=np.uint8)]


# ----------------------------------------------------------------------------------------------- building blocks

def test_recomputed_blocks_and_tower_match_open_clip(clip) -> None:
    visual = clip.visual
    x = torch.randn(2, 3, 64, 64)
    tokens = embed_tokens(visual, x)
    for blk in visual.transformer.resblocks:
        out, attn = block_forward(blk, tokens)
        torch.testing.assert_close(out, blk(tokens), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, tokens.shape[1]))
        tokens = out
    ours = visual.ln_post(tokens)[:, 0] @ visual.proj  # the standard CLS pooling of open_clip
    torch.testing.assert_close(ours, visual(x), atol=1e-5, rtol=1e-5)


def test_positional_embedding_interpolation() -> None:
    pos = torch.randn(1 + 4 * 4, 8)
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    const = torch.ones(1 + 4 * 4, 8) * 3.0
    out = interpolate_pos_embed(const, (4, 4), (6, 9))
    assert out.shape == (1 + 6 * 9, 8)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))  # bicubic keeps a constant field constant


def test_input_size_rounds_up_to_patch_multiples() -> None:
    assert input_size_for(375, 500, 16) == (384, 512)  # CLIP-ES: original size, rounded up
    assert input_size_for(375, 500, 16, scale=0.5) == (192, 256)
    assert input_size_for(375, 500, 16, input_size=448) == (448, 608)  # short side 448, 597.3 -> 608
    assert input_size_for(375, 500, 16, input_size=(224, 224), scale=2.0) == (448, 448)
    assert input_size_for(5, 5, 16, scale=0.5) == (16, 16)


def test_prompts_synonyms_templates_and_averaging(clip) -> None:
    names = class_prompt_names(["background", "person", "tvmonitor", "my_class"], {"tvmonitor": ["tv", "screen"]})
    assert names == [["person with clothes,people,human"], ["tv", "screen"], ["my class"]]
    with pytest.raises(WSSSError):
        resolve_templates(["no placeholder"])
    assert len(resolve_background("voc")) == 25 and "sign" not in resolve_background("coco")
    tpl = ["a {}.", "the {}!"]
    got = encode_prompts(clip, [["x", "y"]], tpl)
    with torch.no_grad():
        sent = F.normalize(clip.model.encode_text(clip.tokenizer(["a x.", "the x!", "a y.", "the y!"])), dim=-1)
    torch.testing.assert_close(got[0], F.normalize(sent.mean(0), dim=-1), atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------- Grad-CAM

def test_softmax_gradcam_matches_hook_reference(clip, banks) -> None:
    """Grad-CAM as pytorch-grad-cam computes it: hook ln_1 of the last block of the *unmodified* tower."""
    bank = banks[0]
    visual = clip.visual
    x = preprocess(_images()[1:2], (64, 64), clip.mean, clip.std)
    labels = [1, 3]
    with torch.no_grad():
        x_last, _, _ = forward_blocks(visual, embed_tokens(visual, x), len(visual.transformer.resblocks) - 1, 99)
    ours = softmax_gradcam(visual, x_last, [labels], bank, softmax_over="labels", pool="cls")[0]

    texts = torch.cat([bank.fg[[k - 1 for k in labels]], bank.bg])
    for j in range(len(labels)):
        store = {}

        def hook(_m, _inp, out):
            out.retain_grad()
            store["a"] = out

        h = visual.transformer.resblocks[-1].ln_1.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                img = F.normalize(visual(x.clone().requires_grad_(True)), dim=-1)
                prob = (bank.logit_scale * img @ texts.t()).softmax(-1)[0, j]
                prob.backward()
        finally:
            h.remove()
        a, g = store["a"][0, 1:].detach(), store["a"].grad[0, 1:]
        cam = torch.relu(a @ g.mean(0))
        cam = cam - cam.min()
        cam = cam / (cam.max() + 1e-7)
        torch.testing.assert_close(ours[j], cam, atol=1e-4, rtol=1e-3)


# ----------------------------------------------------------------------------------------------- refinement

def test_box_mask_is_union_of_component_boxes() -> None:
    cam = np.zeros((6, 8), dtype=np.float32)
    cam[1, 1] = 1.0
    cam[2, 2] = 0.9          # 8-connected to (1, 1): one component, box rows 1-2, cols 1-2
    cam[4, 5:7] = 0.8        # second component, box row 4, cols 5-6
    cam[0, 7] = 0.3          # below 0.4 * max: ignored
    expected = np.zeros_like(cam, dtype=bool)
    expected[1:3, 1:3] = True
    expected[4, 5:7] = True
    np.testing.assert_array_equal(box_mask(cam, 0.4), expected)
    assert not box_mask(np.zeros((3, 3), np.float32)).any()


def test_attention_affinity_hand_cases() -> None:
    n = 6
    uniform = affinity_from_attention(torch.full((n, n), 0.3))
    torch.testing.assert_close(uniform, torch.full((n, n), 1.0 / n))
    eye = affinity_from_attention(torch.eye(n) * 5.0)
    torch.testing.assert_close(eye, torch.eye(n))
    a = torch.rand(n, n) + 0.1
    t = affinity_from_attention(a, sinkhorn_iters=3, power=1)
    torch.testing.assert_close(t, t.t())
    # with identity attention the refinement keeps each map inside its own boxes, then rescales to [0, 1]
    cam = torch.tensor([[0.0, 0.2, 0.0, 0.0, 0.9, 1.0],
                        [0.5, 0.0, 0.0, 0.0, 0.0, 0.0]])
    out = refine_with_attention(cam, torch.eye(n), (2, 3), box_threshold=0.4)
    m0 = torch.from_numpy(box_mask(cam[0].reshape(2, 3).numpy(), 0.4).reshape(-1)).float()
    ref0 = cam[0] * m0
    torch.testing.assert_close(out[0], (ref0 - ref0.min()) / (ref0.max() - ref0.min() + 1e-7))
    assert out[1].argmax() == 0 and out[1].max() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- full maps

@pytest.mark.parametrize("method", ["gradcam", "dense"])
@pytest.mark.parametrize("refine", [True, False])
def test_cams_have_image_size_and_unit_range(clip, banks, method, refine) -> None:
    images = _images()
    keys = [[1, 4], [2], []]
    settings = ClipCamSettings(method=method, refine=refine, scales=(1.0, 0.75), flip=True, refine_layers=2,
                               dense_attn="qq+kk+vv" if refine else "vv", dense_blocks=2, input_size=48)
    out = clip_cams(clip, banks[0], images, keys, settings)
    for im, ks, c in zip(images, keys, out):
        assert c.shape == (len(ks),) + im.shape[:2] and c.dtype == np.float32
        if ks:
            assert c.min() >= 0.0 and np.allclose(c.reshape(len(ks), -1).max(1), 1.0)
            assert np.isfinite(c).all() and c.std() > 0


@pytest.mark.parametrize("method", ["gradcam", "dense"])
def test_background_prompts_change_the_maps(clip, banks, method) -> None:
    images, keys = _images()[:2], [[1, 4], [2, 3]]
    settings = ClipCamSettings(method=method, refine=False)
    with_bg = clip_cams(clip, banks[0], images, keys, settings)
    without = clip_cams(clip, banks[1], images, keys, settings)
    for a, b in zip(with_bg, without):
        assert a.shape == b.shape and np.abs(a - b).max() > 1e-3


def test_batching_does_not_change_maps(clip, banks) -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    keys = [[1], [2, 3], [4]]
    settings = ClipCamSettings(method="gradcam", refine=True, refine_layers=2)
    batched = clip_cams(clip, banks[0], images, keys, settings)
    single = [clip_cams(clip, banks[0], [im], [k], settings)[0] for im, k in zip(images, keys)]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------------------------- loading

@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_load_clip_from_state_dict_and_torchscript_files(clip, tmp_path: Path) -> None:
    sd_path = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), sd_path)
    loaded = load_clip("ViT-B-16", str(sd_path), "cpu", TINY)
    for (k, v), (k2, v2) in zip(clip.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)

    jit_path = tmp_path / "tiny_jit.pt"
    torch.jit.script(clip.model).save(str(jit_path))  # the form of OpenAI's original ViT-B-16.pt
    from_jit = load_clip("ViT-B-16", str(jit_path), "cpu", TINY)
    assert torch.equal(from_jit.visual.conv1.weight, clip.visual.conv1.weight)
    assert type(from_jit.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI weights

    with pytest.raises(InputError, match="not a checkpoint file"):
        load_clip("ViT-B-16", str(tmp_path / "missing.pt"), "cpu", TINY)
    with pytest.raises(WSSSError, match="unknown open_clip model"):
        load_clip("ViT-Z-1", None, "cpu", TINY)


@pytest.mark.skipif(not os.environ.get("WSSS_CLIP_CHECKPOINT"), reason="set WSSS_CLIP_CHECKPOINT to real weights")
def test_real_weights_localise_the_cat() -> None:
    from skimage.data import chelsea

    name = os.environ.get("WSSS_CLIP_MODEL", "ViT-B-16")
    real = load_clip(name, os.environ["WSSS_CLIP_CHECKPOINT"], "cuda" if torch.cuda.is_available() else "cpu")
    from wsss.data.classes import VOC_CLASSES
    bank = build_text_bank(real, VOC_CLASSES, resolve_templates("clip_es"), resolve_background("voc"),
                           device=real.visual.conv1.weight.device)
    image = chelsea()  # 300 x 451, a cat filling the middle of the frame
    x = preprocess([image], (224, 224), real.mean, real.std, real.visual.conv1.weight.device)
    with torch.no_grad():
        img = F.normalize(real.model.encode_image(x).float(), dim=-1)
    assert int((img @ bank.fg.t()).argmax()) + 1 == VOC_CLASSES.index("cat")
    cam = clip_cams(real, bank, [image], [[VOC_CLASSES.index("cat")]], ClipCamSettings(),
                    real.visual.conv1.weight.device)[0][0]
    h, w = cam.shape
    assert cam[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean() > cam.mean()


# ----------------------------------------------------------------------------------------------- the stage

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clipdata") / "synthetic"
    generate_synthetic(root, num_train=16, num_val=2, seed=0, size=64)
    return root


def _overrides(root: Path) -> dict:
    return {"data.root": str(root), "device": "cpu", "clip_cam.batch_size": 1, "clip_cam.num_workers": 0,
            "clip_cam.input_size": 192, "clip_cam.refine_layers": 2}


def _run_stage(root: Path, work: Path, **extra) -> dict:
    from stages.clip_cam import run
    cfg = load_config(CONFIG, {**_overrides(root), **extra}, work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the single-threaded subprocess
    try:
        return run(cfg)
    finally:
        torch.set_num_threads(threads)


def _cams(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {p.stem: load_cam(p) for p in sorted(folder.glob("*.npz")) if not p.name.startswith(".")}


def test_stage_writes_only_labelled_classes_and_resumes_after_kill(synthetic_root: Path, tmp_path: Path) -> None:
    ds = build_dataset({"type": "synthetic", "root": str(synthetic_root)}, "train")
    ref_work = tmp_path / "ref"
    manifest = _run_stage(synthetic_root, ref_work)
    assert manifest["status"] == "complete" and manifest["items"] == len(ds)
    assert "miou" in manifest["metrics"] and (ref_work / "clip_cam" / "metrics.json").is_file()
    ref = _cams(ref_work / "clip_cam" / "cams")
    assert sorted(ref) == sorted(ds.ids)
    for image_id, (keys, cams) in ref.items():
        assert keys.tolist() == sorted(ds.labels[image_id])
        assert cams.shape == (len(keys),) + ds.image(image_id).shape[:2]
        assert cams.min() >= 0.0 and cams.max() <= 1.0
    again = _run_stage(synthetic_root, ref_work)  # complete and identical: a no-op
    assert again["finished"] == manifest["finished"]

    work = tmp_path / "killed"
    args = [sys.executable, str(REPO / "tools" / "clip_cam.py"), str(CONFIG), "--work-dir", str(work),
            "--cfg-options"] + [f"{k}={v}" for k, v in _overrides(synthetic_root).items()]
    proc = subprocess.Popen(args, env=subprocess_env(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cams_dir = work / "clip_cam" / "cams"
    deadline = time.time() + 90
    while len([p for p in cams_dir.glob("*.npz") if not p.name.startswith(".")]) < 3:
        assert proc.poll() is None, f"stage ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "stage never wrote 3 CAM files"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = _cams(cams_dir)  # every file present loads: none is half written
    assert 3 <= len(partial) < len(ds)
    assert read_manifest(work / "clip_cam")["status"] == "running"

    _run_stage(synthetic_root, work)
    assert not [p for p in cams_dir.iterdir() if p.name.startswith(".")]  # stale temps removed
    resumed = _cams(cams_dir)
    assert sorted(resumed) == sorted(ref)
    for image_id, (keys, cams) in ref.items():
        assert np.array_equal(resumed[image_id][0], keys) and np.array_equal(resumed[image_id][1], cams)


def test_stage_rejects_unknown_keys_and_bad_class_names(synthetic_root: Path, tmp_path: Path) -> None:
    with pytest.raises(WSSSError, match="unknown key"):
        _run_stage(synthetic_root, tmp_path / "a", **{"clip_cam.refine_layer": 3})
    with pytest.raises(WSSSError, match="class_names"):
        _run_stage(synthetic_root, tmp_path / "b", **{"clip_cam.class_names": ["a", "b"]})


@pytest.mark.parametrize("name", ["voc/clip_es.py", "coco/clip_es.py", "synthetic/clip_cam.py"])
def test_shipped_configs_validate(name: str) -> None:
    from stages.clip_cam import section, settings_from
    cfg = load_config(REPO / "configs" / name)
    sec = section(cfg)
    settings = settings_from(sec)
    assert settings.method == "gradcam" and settings.refine
    expected = {"voc": 25, "coco": 23, "synthetic": 6}[name.split("/")[0]]
    assert len(resolve_background(sec["background_prompts"])) == expected
    assert resolve_templates(sec["templates"])
