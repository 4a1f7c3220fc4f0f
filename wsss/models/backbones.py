"""Any timm model as a dense feature extractor: images in, a [B, C, h, w] feature map out.

CNNs (ResNet, EfficientNet, ...) give their last stage; ViTs give their patch tokens laid back on the patch
grid (prefix tokens removed), built with ``dynamic_img_size`` so multi-scale inference can feed any size.

Input convention: images normalised with the ImageNet mean/std (what ``wsss.data.transforms`` produces for
every stage). Backbones pretrained with other statistics (timm's ``tf_efficientnet_lite*`` and most ViTs use
mean = std = 0.5) re-normalise internally with a fixed affine map, so the rest of wsss never has to know.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn as nn

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.errors import WSSSError
from wsss.models.weights import create_timm_model, load_backbone_weights, timm_name

log = logging.getLogger(__name__)

# timm families whose forward_features returns [B, N, C] tokens with prefix tokens first
_VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")


class Backbone(nn.Module):
    """A timm model returning dense features.

    Attributes: ``model`` (the timm module, so its state-dict keys are timm's under ``model.``),
    ``out_channels`` (C), ``is_vit``, ``arch`` (the timm name).
    """

    def __init__(self, model: nn.Module, arch: str) -> None:
        super().__init__()
        self.model = model
        self.arch = arch
        self.out_channels = int(model.num_features)
        self.is_vit = hasattr(model, "patch_embed") and hasattr(model, "blocks")
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", IMAGENET_STD), dtype=torch.float32).view(1, 3, 1, 1)
        in_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        in_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        # x_backbone = (x * in_std + in_mean - mean) / std = x * gain + offset
        self.renormalise = not (torch.allclose(mean, in_mean) and torch.allclose(std, in_std))
        self.register_buffer("gain", in_std / std, persistent=False)
        self.register_buffer("offset", (in_mean - mean) / std, persistent=False)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain.to(x.dtype) + self.offset.to(x.dtype) if self.renormalise else x

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        ph, pw = self.model.patch_embed.patch_size
        h, w = x.shape[-2:]
        if getattr(self.model.patch_embed, "dynamic_img_pad", False):
            return math.ceil(h / ph), math.ceil(w / pw)
        return h // ph, w // pw

    def _tokens_to_map(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = tokens[:, self.model.num_prefix_tokens:]
        b, n, c = patches.shape
        return patches.transpose(1, 2).reshape(b, c, grid[0], grid[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] ImageNet-normalised -> features [B, C, h, w] (h ~ H / stride)."""
        x = self._input(x)
        if self.is_vit:
            grid = self._grid(x)
            return self._tokens_to_map(self.model.forward_features(x), grid)
        return self.model.forward_features(x)

    def units(self) -> list[nn.Module]:
        """The backbone's trainable units in forward order, for ``cls_model.unfreeze_last``.

        EfficientNet / MobileNet / ViT: every block of ``blocks`` (stages flattened), then the modules after
        them (``conv_head`` + ``bn2``, or ``norm``) as one last unit. ResNet-style: every block of
        ``layer1..layer4``. So ``unfreeze_last=1`` is the head conv of an EfficientNet, 2 adds its last block.
        """
        m = self.model
        units: list[nn.Module] = []
        if hasattr(m, "blocks"):
            for stage in m.blocks:
                units += list(stage) if isinstance(stage, nn.Sequential) else [stage]
            tail = [getattr(m, n) for n in ("conv_head", "bn2", "norm")
                    if isinstance(getattr(m, n, None), nn.Module) and not isinstance(getattr(m, n), nn.Identity)
                    and any(True for _ in getattr(m, n).parameters())]
            if tail:
                units.append(nn.ModuleList(tail))
        elif all(hasattr(m, f"layer{k}") for k in range(1, 5)):
            for k in range(1, 5):
                units += list(getattr(m, f"layer{k}"))
        else:
            raise WSSSError(f"backbone '{self.arch}': no known block structure for unfreeze_last")
        return units

    # --- ViT split forward, for Grad-CAM on the class token ---------------------------------------------
    def vit_tokens_before_last_block(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """ViT only: tokens [B, N, C] entering the last block, and the patch grid (h, w)."""
        if not self.is_vit:
            raise WSSSError(f"backbone '{self.arch}' is not a ViT")
        m = self.model
        x = self._input(x)
        grid = self._grid(x)
        t = m.patch_embed(x)
        t = m._pos_embed(t)
        t = m.patch_drop(t)
        t = m.norm_pre(t)
        for blk in m.blocks[:-1]:
            t = blk(t)
        return t, grid

    def vit_last_block(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT only: the last block and final norm, [B, N, C] -> [B, N, C]."""
        return self.model.norm(self.model.blocks[-1](tokens))

    def tokens_to_map(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[B, N, C] tokens (prefix tokens first) -> [B, C, h, w] patch map."""
        return self._tokens_to_map(tokens, grid)


def create_backbone(arch: str, pretrained: bool | str = False, weights: str | Path | None = None,
                    output_stride: int | None = None, drop_path_rate: float = 0.0, section: str = "cls_model",
                    **timm_kwargs) -> Backbone:
    """Build ``arch`` from timm without its head and load its weights.

    Args:
        arch: any timm model name (``resnet50``, ``vit_base_patch16_224``, ``tf_efficientnet_lite0``, ...).
        pretrained: False, True (timm's default pretrained tag) or a tag string (``'a1_in1k'``).
        weights: None, a local ``.pth`` (timm layout or wsss checkpoint) or ``'efficientnet-lite{n}-package'``
            (see :mod:`wsss.models.weights`); loaded after creation, so it overrides ``pretrained``.
        output_stride: CNNs only: 8 or 16 replace the last strides by dilation (denser CAMs, as IRN does).
        drop_path_rate: stochastic depth (ViTs, EfficientNets).
        section: the config section named in a weights error (``cls_model``).
        timm_kwargs: passed to ``timm.create_model``.
    """
    import timm

    name, use_pretrained = timm_name(arch, pretrained)
    if weights is not None and use_pretrained:
        log.info("backbone %s: local weights %s replace timm's pretrained weights", arch, weights)
        use_pretrained = False
    kwargs = dict(num_classes=0, **timm_kwargs)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    base = name.split(".")[0]
    if not timm.is_model(base):
        raise WSSSError(f"unknown timm backbone '{arch}'")
    is_vit = timm.models.model_entrypoint(base).__module__ in _VIT_MODULES
    if is_vit:
        kwargs.setdefault("dynamic_img_size", True)
        kwargs.setdefault("dynamic_img_pad", True)
        if output_stride not in (None, 16):
            raise WSSSError(f"output_stride={output_stride} does not apply to ViT backbone '{arch}'")
    else:
        kwargs["global_pool"] = ""
        if output_stride is not None:
            kwargs["output_stride"] = int(output_stride)
    try:
        model = create_timm_model(name, pretrained=use_pretrained, section=section, **kwargs)
    except TypeError as e:
        raise WSSSError(f"backbone '{arch}' does not accept these options {sorted(kwargs)}: {e}") from e
    except OSError as e:  # no network / not in the cache (huggingface_hub and urllib errors are OSErrors)
        if not use_pretrained:
            raise
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise WSSSError(f"backbone '{arch}': pretrained weights '{name}' could not be loaded ({type(e).__name__}: "
                        f"{first}); offline, put them in the Hugging Face cache (HF_HOME) or pass a local .pth "
                        f"as weights=...") from e
    if weights is not None:
        load_backbone_weights(model, name, weights)
    return Backbone(model, name)
