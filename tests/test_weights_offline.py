"""timm pretrained weights on a machine without internet: one line naming the weights and the fix, at once.

The network is never used here: the hub request is mocked (or offline mode is set), and a mocked download
function fails the test if anything tries to fetch weights after the check said the hub is unreachable.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import timm
import torch

from wsss.errors import WSSSError
from wsss.models import weights
from wsss.models.affinity_net import build_affinity_net
from wsss.models.backbones import create_backbone
from wsss.models.seg import build_segmentor

from conftest import REPO, subprocess_env


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """No weights cached, the hub unreachable; returns the timeouts of the (single) reachability requests."""
    calls: list[float] = []

    def unreachable(request, timeout=None):
        calls.append(timeout)
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted after the hub was found unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "cached_pretrained_file", lambda name: None)
    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_download)
    monkeypatch.setattr("timm.models._hub.hf_hub_download", no_download)
    return calls


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_default_seg_r101_fails_in_one_request_with_the_fix(offline: list[float]) -> None:
    cfg = dict(type="deeplabv3plus", backbone="resnet101", pretrained=True)  # seg_deeplabv3plus_r101.py
    with pytest.raises(WSSSError) as e:
        build_segmentor(cfg, 21)
    msg = _one_line(e)
    assert msg.startswith("seg_model: timm weights 'resnet101'")
    assert "timm/resnet101." in msg  # the Hugging Face repo the default tag lives in
    assert "seg_model.weights=/path/to/resnet101.pth" in msg and "seg_model.pretrained=False" in msg
    assert "unreachable" in msg
    assert offline == [weights.HUB_TIMEOUT]  # one request, short timeout, no retries


def test_toco_tag_and_affinity_backbone_name_their_sections(offline: list[float]) -> None:
    with pytest.raises(WSSSError) as e:  # configs/voc/toco_vit_base.py
        create_backbone("vit_base_patch16_224", pretrained="orig_in21k_ft_in1k")
    assert "cls_model: timm weights 'vit_base_patch16_224.orig_in21k_ft_in1k'" in _one_line(e)
    with pytest.raises(WSSSError) as e:  # configs/_base_/irn.py
        build_affinity_net("resnet50", pretrained="tv_in1k")
    assert "aff_model.weights=" in _one_line(e)
    assert len(offline) == 2


def test_offline_mode_fails_without_any_request(offline: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WSSSError, match="HF_HUB_OFFLINE is set"):
        create_backbone("resnet18", pretrained=True)
    assert offline == []


def test_unknown_tag_is_named(offline: list[float]) -> None:
    with pytest.raises(WSSSError, match="no pretrained weights 'resnet18.nonexistent_tag'"):
        create_backbone("resnet18", pretrained="nonexistent_tag")


def test_download_error_after_a_reachable_hub_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(weights, "cached_pretrained_file", lambda name: None)
    monkeypatch.setattr(weights, "hub_unreachable", lambda name: None)

    def failing(name, pretrained=False, **kw):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub.\n"
                                      "Please check your connection and try again.")

    monkeypatch.setattr(timm, "create_model", failing)
    with pytest.raises(WSSSError) as e:
        build_affinity_net("resnet18", pretrained=True)
    msg = _one_line(e)
    assert "could not download timm weights 'resnet18'" in msg and "LocalEntryNotFoundError" in msg


def test_cached_weights_load_without_touching_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file already in the cache is loaded as is: the model's tensors are the file's, and no request is made."""
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "pytorch_model.bin"
    torch.save(reference, path)
    monkeypatch.setattr(weights, "cached_pretrained_file", lambda name: str(path))

    def no_request(*a, **k):
        raise AssertionError("network request with cached weights")

    monkeypatch.setattr("urllib.request.urlopen", no_request)
    monkeypatch.setattr("timm.models._hub.hf_hub_download", no_request)
    backbone = create_backbone("resnet18", pretrained=True)
    assert torch.equal(backbone.model.conv1.weight, reference["conv1.weight"])
    assert torch.equal(backbone.model.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])


def test_cache_lookup_finds_a_hub_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cached_pretrained_file asks the Hugging Face cache for the repo timm would download from."""
    seen = []

    def lookup(repo, filename, revision=None):
        seen.append((repo, filename))
        return str(tmp_path / filename) if filename == "pytorch_model.bin" else None

    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lookup)
    assert weights.cached_pretrained_file("resnet18.a1_in1k") == str(tmp_path / "pytorch_model.bin")
    assert seen[0] == ("timm/resnet18.a1_in1k", "model.safetensors")


def test_local_safetensors_weights_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict()
    save_file(sd, str(tmp_path / "model.safetensors"))
    backbone = create_backbone("resnet18", weights=tmp_path / "model.safetensors")
    assert torch.equal(backbone.model.conv1.weight, sd["conv1.weight"])


def test_stage_tool_prints_one_line_offline(tmp_path: Path) -> None:
    """The user's view: train_seg with the default R101 weights on an offline node ends in one line, exit 2."""
    from wsss.data.synthetic import generate_synthetic

    root = tmp_path / "data"
    generate_synthetic(root, num_train=2, num_val=0, seed=0, size=32)
    cfg = tmp_path / "c.py"
    cfg.write_text(f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, "
                   f"{str(REPO / 'configs/_base_/datasets/synthetic.py')!r}, "
                   f"{str(REPO / 'configs/_base_/models/seg_deeplabv3plus_r101.py')!r}, "
                   f"{str(REPO / 'configs/_base_/schedules/seg_synthetic.py')!r}]\n"
                   f"data = dict(root={str(root)!r})\ntrain_seg = dict(masks='gt')\n")
    out = subprocess.run([sys.executable, str(REPO / "tools" / "train_seg.py"), str(cfg), "--work-dir",
                          str(tmp_path / "work")], capture_output=True, text=True, timeout=300,
                         env=subprocess_env(HF_HUB_OFFLINE="1"))
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert "seg_model: timm weights 'resnet101'" in errors[0] and "seg_model.weights=" in errors[0]


def test_clip_tag_offline_is_one_line_without_download(offline: list[float]) -> None:
    """configs/voc/clip_es.py's 'openai' ViT-B-16 on a node without internet: one request, one line."""
    from wsss.models.clip_loader import load_clip

    with pytest.raises(WSSSError) as e:
        load_clip("ViT-B-16", "openai", torch.device("cpu"))
    msg = _one_line(e)
    assert "clip_cam: 'openai' weights for ViT-B-16" in msg and "clip_cam.pretrained=" in msg
    assert offline == [weights.HUB_TIMEOUT]


def test_clip_tag_in_cache_loads_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached open_clip file is loaded directly (with the tag's normalisation), no request made."""
    import open_clip
    from wsss.models.clip_loader import load_clip

    tiny = dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=2, width=32, patch_size=16, head_width=16),
                text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-16", pretrained=None, **tiny).state_dict()
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(ref, path)
    asked = []

    def lookup(repo, filename, cache_dir=None, revision=None):
        asked.append((repo, filename))
        return str(path) if filename == "open_clip_pytorch_model.bin" else None

    def no_request(*a, **k):
        raise AssertionError("network request with cached weights")

    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lookup)
    monkeypatch.setattr("urllib.request.urlopen", no_request)
    model = load_clip("ViT-B-16", "openai", torch.device("cpu"), model_cfg=tiny)
    assert asked[0] == ("timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors")
    key = "visual.conv1.weight"
    assert torch.equal(model.model.state_dict()[key], ref[key])
    assert model.mean == tuple(open_clip.get_pretrained_cfg("ViT-B-16", "openai")["mean"])
