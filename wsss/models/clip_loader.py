"""Building an open_clip model from a name plus weights (a pretrained tag, a local checkpoint, or none).

Why a wrapper: the CLIP CAM code reads the vision tower's blocks directly (ln_1, the attention's in-projection,
out_proj, ln_2, mlp), so it must refuse models whose tower is not open_clip's own VisionTransformer with plain
``ResidualAttentionBlock``s, and it must say in one line what went wrong when weights cannot be found (no
internet, a typo in a path). It also sets QuickGELU from the pretrained tag: OpenAI's weights were trained with
QuickGELU, and open_clip 3.x only *warns* when 'ViT-B-16' + 'openai' is built with plain GELU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from wsss.errors import InputError, WSSSError

log = logging.getLogger(__name__)


@dataclass
class LoadedClip:
    """An open_clip model ready for inference and what is needed to feed it.

    model: open_clip CLIP in eval mode, parameters frozen (requires_grad False), on ``device``.
    tokenizer: callable list[str] -> LongTensor [N, context_length].
    mean, std: per-channel RGB normalisation of the pretrained weights (floats in [0, 1] units).
    """

    model: nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    pretrained: str | None

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def patch_size(self) -> int:
        p = self.model.visual.patch_size
        return int(p[0] if isinstance(p, (tuple, list)) else p)


@contextlib.contextmanager
def _quiet_root_logger(level: int = logging.WARNING):
    """open_clip logs every construction step with ``logging.info`` on the root logger; keep warnings only."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(max(old, level))
    try:
        yield
    finally:
        root.setLevel(old)


def _pretrained_tag_cfg(model_name: str, tag: str) -> dict | None:
    from open_clip.pretrained import get_pretrained_cfg
    cfg = get_pretrained_cfg(model_name, tag)
    return cfg or None


def is_torchscript_file(path: str | Path) -> bool:
    """True for a TorchScript archive (OpenAI's original ``ViT-B-16.pt``), which torch.load(weights_only=True)
    refuses; such files are read with torch.jit.load and only their state dict is kept."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_torchscript_weights(model: nn.Module, path: str) -> None:
    """Copy the tensors of a TorchScript CLIP archive into ``model`` (every model tensor must be present)."""
    sd = torch.jit.load(path, map_location="cpu").state_dict()
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    if missing:
        raise InputError(path, f"TorchScript checkpoint lacks {len(missing)} tensors of this model "
                               f"(first: {missing[0]}); wrong model name?")
    bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise InputError(path, f"TorchScript checkpoint shapes differ from the model at {bad[0]} "
                               f"({tuple(sd[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}); wrong model name?")
    model.load_state_dict({k: sd[k] for k in own}, strict=True)


def check_supported(model: nn.Module, model_name: str) -> None:
    """Raise WSSSError unless the vision tower is a ViT the CLIP CAM code can take apart block by block."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        raise WSSSError(f"clip_cam: model '{model_name}' has a {type(visual).__name__} image tower; "
                        "only open_clip ViTs (e.g. ViT-B-16, ViT-L-14) are supported")
    blocks = visual.transformer.resblocks
    if not all(isinstance(b, ResidualAttentionBlock) and isinstance(b.attn, nn.MultiheadAttention)
               for b in blocks):
        raise WSSSError(f"clip_cam: model '{model_name}' uses custom attention blocks "
                        "(qk-norm / scaled cosine attention); use a plain CLIP ViT")
    if visual.attn_pool is not None:
        raise WSSSError(f"clip_cam: model '{model_name}' pools with attentional pooling (CoCa style); "
                        "use a plain CLIP ViT")


def _cached_or_reachable(name: str, tag: str, tag_cfg: dict, cache_dir: str | None) -> str:
    """The open_clip weights to load: the cached file of the tag when it is already downloaded (no network
    request at all), else the tag itself after one quick check that the hub answers; on a machine without
    internet a one-line error instead of a minute of retries."""
    from wsss.models.weights import endpoint_unreachable

    hub = str(tag_cfg.get("hf_hub") or "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for fname in names:
            hit = try_to_load_from_cache(repo, fname, cache_dir=cache_dir)
            if isinstance(hit, str) and Path(hit).is_file():
                log.info("CLIP %s '%s' weights from the local cache (%s)", name, tag, hit)
                return hit
    why = endpoint_unreachable(None if hub else tag_cfg.get("url"))
    if why is not None:
        raise WSSSError(f"clip_cam: '{tag}' weights for {name} are not in the local cache and cannot be downloaded "
                        f"({why}); download them where there is internet (the open_clip cache, or OpenAI's "
                        f"ViT-B-16.pt) and set clip_cam.pretrained=/path/to/the/file (see docs/stage_clip_cam.md)")
    return tag


def load_clip(model_name: str = "ViT-B-16", pretrained: str | None = "openai",
              device: str | torch.device = "cpu", model_cfg: Mapping[str, Any] | None = None,
              quick_gelu: bool | None = None, cache_dir: str | None = None) -> LoadedClip:
    """Build ``model_name`` with weights from ``pretrained`` and return it frozen, in eval mode.

    pretrained: an open_clip tag for ``model_name`` ('openai', 'laion2b_s34b_b88k', ...; downloads once into
        open_clip's cache, so it needs internet the first time), a path to a local checkpoint (.pt/.pth/.bin/
        .safetensors; an open_clip state dict or OpenAI's original TorchScript file), or None for random weights
        (tests, timing).
    model_cfg: overrides of the architecture config (``embed_dim``, ``vision_cfg``, ``text_cfg`` dicts replace
        the named model's), e.g. a tiny ViT for tests. Keys are passed to open_clip.create_model.
    quick_gelu: None = as the pretrained tag was trained (True for 'openai'); set True for OpenAI weights
        loaded from a local file.
    """
    import open_clip

    name = model_name.replace("/", "-")
    if name not in open_clip.list_models():
        raise WSSSError(f"clip_cam.model: unknown open_clip model '{model_name}' "
                        f"(e.g. ViT-B-16, ViT-B-32, ViT-L-14; see open_clip.list_models())")
    tag_cfg = None
    if pretrained:
        pretrained = str(pretrained)
        tag_cfg = _pretrained_tag_cfg(name, pretrained)
        if tag_cfg is None:
            path = Path(pretrained).expanduser()
            if not path.is_file():
                tags = open_clip.list_pretrained_tags_by_model(name)
                raise InputError(path, f"not a checkpoint file, nor a pretrained tag of {name} "
                                       f"(tags: {', '.join(tags) or 'none'})")
            pretrained = str(path)
    jit_file = bool(pretrained) and tag_cfg is None and is_torchscript_file(pretrained)
    if quick_gelu is None:
        # OpenAI's TorchScript release is the only TorchScript CLIP in the wild, and it uses QuickGELU.
        quick_gelu = bool(tag_cfg.get("quick_gelu", False)) if tag_cfg else jit_file
    kwargs = dict(model_cfg or {})
    source = None if jit_file else (pretrained or None)
    if tag_cfg is not None:
        source = _cached_or_reachable(name, str(pretrained), tag_cfg, cache_dir)
        if source != pretrained:  # the tag's cached file: keep the tag's normalisation
            kwargs.setdefault("force_preprocess_cfg", {k: tag_cfg[k] for k in
                                                      ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg})
    try:
        with _quiet_root_logger():
            model = open_clip.create_model(name, pretrained=source, device="cpu",
                                           force_quick_gelu=bool(quick_gelu), cache_dir=cache_dir, **kwargs)
        if jit_file:
            _load_torchscript_weights(model, pretrained)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if tag_cfg is not None:
            raise WSSSError(f"clip_cam: could not get '{pretrained}' weights for {name} ({msg}); on a machine "
                            "without internet download them elsewhere and set clip_cam.pretrained to the file "
                            "(see docs/stage_clip_cam.md)") from e
        if pretrained:
            raise InputError(pretrained, f"cannot load as {name} weights ({msg})") from e
        raise WSSSError(f"clip_cam: cannot build {name} ({msg})") from e
    check_supported(model, name)
    model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    pcfg = open_clip.get_model_preprocess_cfg(model)
    mean = tuple(float(v) for v in pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in pcfg.get("std", open_clip.OPENAI_DATASET_STD))
    context_length = getattr(model, "context_length", None)
    with _quiet_root_logger():
        tokenizer = open_clip.get_tokenizer(name, context_length=context_length)
    log.info("CLIP %s (%s weights%s) on %s", name, pretrained or "random", ", QuickGELU" if quick_gelu else "",
             device)
    return LoadedClip(model=model, tokenizer=tokenizer, mean=mean, std=std, name=name,
                      pretrained=os.fspath(pretrained) if pretrained else None)
