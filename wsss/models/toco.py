"""ToCo: a ViT classifier whose CAMs are trained with Token Contrast (Ru et al., CVPR 2023).

A timm ViT gives two sets of patch tokens: the final ones (after the last block and norm) and those of an
intermediate block (``aux_layer``), which keep more diversity. Each set has a bias-free 1x1 classifier on
globally max-pooled tokens, so each yields logits and a CAM (the classifier weights applied per token):
the *final* CAM (the seed) and the *auxiliary* CAM. Training adds to the two classification losses

* PTC: the auxiliary CAM (refined online with PAR) gives per-token labels, their pairwise relations
  supervise the |cosine| similarity of the final patch tokens (against over-smoothing), and
* CTC: local crops cut outside the confident foreground of the auxiliary CAM pass through the ViT; their
  projected class tokens are contrasted with the global views' class tokens projected by a momentum
  (EMA) copy of the projection head, background-dominated crops acting as negatives.

With ``seg_head=dict(...)`` the model is ToCo's single-stage network: a LargeFOV decoder on the final patch
tokens learns, from ``seg_head.start_iter`` on, the PAR-refined two-threshold pseudo labels of the final CAM
(balanced cross-entropy + a dense-CRF energy regulariser, wsss.refine.seg_losses); ``seg_logits`` gives its
predictions, which stage ``seg_cam`` writes in the CAM format.

Used by the classifier stage as ``cls_model = dict(type='toco', ...)`` (configs/_base_/models/toco_vit.py):
``forward`` -> logits, ``losses`` -> dict of losses, ``cam`` -> [B, C-1, h, w], ``param_groups``. ``losses``
also takes ToCo's stacked views ``[B, 3, 3, H, W]`` (train_cls.augmentation='toco', ``accepts_views``).
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsss.errors import WSSSError
from wsss.models.backbones import create_backbone
from wsss.models.registry import CLASSIFIERS
from wsss.models.seg_heads import LargeFOVHead
from wsss.refine.seg_losses import balanced_seg_loss, dense_energy_loss
from wsss.refine.token_contrast import ctc_loss, ptc_loss, relation_from_labels
from wsss.refine.toco_pseudo import (cams_to_labels, normalize_cams, par_refined_labels, pool_labels_to_grid,
                                     sample_local_crops, uncertainty_map)

__all__ = ["ToCoViT", "ProjectionHead"]

log = logging.getLogger(__name__)

DEFAULT_PAR = dict(dilations=(1, 2, 4, 8, 12, 24), num_iter=10, w1=0.3, w2=0.01)
# ToCo's segmentation branch (scripts/dist_train_voc_seg_neg.py): LargeFOV decoder, on after 2000 iterations,
# w_seg 0.1, w_reg 0.05, DenseEnergyLoss(weight=1e-7, sigma_rgb=15, sigma_xy=100, scale_factor=0.5), lr 10x.
SEG_HEAD_DEFAULTS: dict[str, Any] = dict(channels=512, dilation=5, start_iter=2000, weight=0.1, reg_weight=0.05,
                                         reg=dict(weight=1e-7, sigma_rgb=15.0, sigma_xy=100.0, scale_factor=0.5),
                                         lr_mult=10.0, use_par=True)
_REG_KEYS = ("weight", "sigma_rgb", "sigma_xy", "scale_factor")


class ProjectionHead(nn.Module):
    """DINO-style projection of class tokens: MLP -> L2 normalise -> linear layer with unit-norm rows.

    x: [N, in_dim] -> [N, out_dim]. The last layer is a weight-normalised linear map with its gain fixed to 1
    (each output is a cosine between the bottleneck feature and a learned direction), which keeps the
    projection bounded.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(max(0, num_layers - 1)):
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.last, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last, dim=1))


def _resolve_par(par_cfg: Mapping[str, Any] | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """PAR from ``wsss.ops`` bound to the configured settings: ``refine(images, probs) -> probs``."""
    settings = dict(DEFAULT_PAR)
    settings.update(dict(par_cfg or {}))
    settings["dilations"] = tuple(int(d) for d in settings["dilations"])
    from wsss.ops import par  # imported late: the op may build a CUDA extension on first use

    return functools.partial(par, **settings)


def _seg_settings(seg_head: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``cls_model.seg_head`` with defaults filled in (None = no segmentation branch); typos are refused."""
    if seg_head is None or seg_head is False:
        return None
    given = dict(seg_head)
    unknown = sorted(set(given) - set(SEG_HEAD_DEFAULTS))
    if unknown:
        raise WSSSError(f"cls_model.seg_head: unknown keys {unknown}; known: {sorted(SEG_HEAD_DEFAULTS)}")
    reg = dict(given.pop("reg", None) or {})
    bad = sorted(set(reg) - set(_REG_KEYS))
    if bad:
        raise WSSSError(f"cls_model.seg_head.reg: unknown keys {bad}; known: {list(_REG_KEYS)}")
    out = {**SEG_HEAD_DEFAULTS, **given, "reg": {**SEG_HEAD_DEFAULTS["reg"], **reg}}
    if int(out["start_iter"]) < 0 or float(out["weight"]) < 0 or float(out["reg_weight"]) < 0:
        raise WSSSError(f"cls_model.seg_head: start_iter, weight and reg_weight must be >= 0, got {given}")
    return out


@CLASSIFIERS.register_module(name="toco")
class ToCoViT(nn.Module):
    """ViT classifier with final + auxiliary CAMs and the PTC / CTC token contrast losses.

    Args (all come from the ``cls_model`` config section; see configs/_base_/models/toco_vit.py):
        num_classes: number of foreground classes (C-1); logit j is class j+1.
        backbone: timm ViT name; ``backbone_kwargs`` override its architecture (tests: tiny depth/width).
        pretrained / weights: timm pretrained weights (``True`` or a tag; timm resamples the position
            embeddings to ``img_size``), or a local checkpoint (``weights``, see wsss.models.weights; its
            position embeddings must match ``img_size``).
        img_size: the training crop side; other sizes work (``dynamic_img_size``).
        aux_layer: block whose tokens feed the auxiliary classifier (python index into the blocks,
            ToCo: -3, i.e. block 10 of 12 for ViT-B).
        pooling: 'gmp' (ToCo) or 'gap' over patch tokens before the 1x1 classifiers.
        cam_source: 'final' (ToCo's seed), 'aux' or 'mean' (mean of the max-normalised two).
        bg_thresholds: (low, high) on the normalised auxiliary CAM: <= low confident background,
            > high confident foreground, uncertain in between (ToCo: 0.25, 0.7).
        use_par / par / par_down_scale: online PAR refinement of the auxiliary CAM before the token labels
            (``par`` holds the kwargs of ``wsss.ops.par``), run at 1/par_down_scale resolution.
        pseudo_scales / pseudo_flip: scales (and horizontal flip) of the no-grad auxiliary CAM pass
            (ToCo: 1.0, 0.5, 1.5 with flip).
        token_min_fraction: a token gets a label only when that label covers this fraction of its patch.
        cls_aux_weight / ptc_weight / ctc_weight: loss weights (ToCo: 1.0 / 0.2 / 0.5).
        ptc_start_iter / ctc_start_iter: iterations before which PTC / CTC are off (ToCo: 0).
        num_global_views: 1 (the batch itself) or 2 (plus its horizontal flip, ToCo uses two global views).
        num_local_crops / local_crop_size: CTC local crops per image and their side in pixels (ToCo: 8, 96).
        negative_max_fraction: a crop with at most this fraction of non-background pixels is a negative.
        proj_dim / proj_hidden_dim / proj_bottleneck_dim: projection head sizes (ToCo: 1024 / 2048 / 256).
        momentum: EMA momentum of the teacher projection head (ToCo: 0.9).
        temperature: CTC temperature on cosine similarities (ToCo: 0.5).
        drop_path_rate: stochastic depth of the ViT.
        head_lr_mult: learning-rate multiplier of the new heads over the backbone (ToCo: 10).
        seg_head: None (off) or ToCo's segmentation branch, keys of ``SEG_HEAD_DEFAULTS``: ``channels`` /
            ``dilation`` of the LargeFOV decoder, ``start_iter`` (ToCo 2000; before it the branch is not
            computed), ``weight`` (w_seg 0.1) of the balanced CE, ``reg_weight`` (w_reg 0.05) of the dense
            energy whose settings are ``reg`` (weight, sigma_rgb, sigma_xy, scale_factor), ``lr_mult`` (10),
            ``use_par`` (PAR before the thresholds, ToCo: True; independent of ``use_par`` for PTC, which
            ToCo's script does without PAR).
    """

    accepts_views = True  # losses() takes the stacked views of train_cls.augmentation='toco'

    def __init__(self, num_classes: int, backbone: str = "vit_base_patch16_224", pretrained: bool | str = False,
                 weights: str | None = None, img_size: int = 448, backbone_kwargs: Mapping[str, Any] | None = None,
                 aux_layer: int = -3, pooling: str = "gmp", cam_source: str = "final",
                 bg_thresholds: Sequence[float] = (0.25, 0.7), use_par: bool = True,
                 par: Mapping[str, Any] | None = None, par_down_scale: int = 2,
                 pseudo_scales: Sequence[float] = (1.0, 0.5, 1.5), pseudo_flip: bool = True,
                 token_min_fraction: float = 0.5, cls_aux_weight: float = 1.0, ptc_weight: float = 0.2,
                 ctc_weight: float = 0.5, ptc_start_iter: int = 0, ctc_start_iter: int = 0,
                 num_global_views: int = 2, num_local_crops: int = 8, local_crop_size: int = 96,
                 negative_max_fraction: float = 0.2, proj_dim: int = 1024, proj_hidden_dim: int = 2048,
                 proj_bottleneck_dim: int = 256, momentum: float = 0.9, temperature: float = 0.5,
                 drop_path_rate: float = 0.0, head_lr_mult: float = 10.0, ignore_index: int = 255,
                 seg_head: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if pooling not in ("gmp", "gap"):
            raise WSSSError(f"cls_model.pooling must be 'gmp' or 'gap', got '{pooling}'")
        if cam_source not in ("final", "aux", "mean"):
            raise WSSSError(f"cls_model.cam_source must be 'final', 'aux' or 'mean', got '{cam_source}'")
        low, high = (float(t) for t in bg_thresholds)
        if not 0.0 <= low < high <= 1.0:
            raise WSSSError(f"cls_model.bg_thresholds must be (low, high) with 0 <= low < high <= 1, "
                            f"got {bg_thresholds}")
        if num_global_views not in (1, 2):
            raise WSSSError(f"cls_model.num_global_views must be 1 or 2, got {num_global_views}")

        self.backbone = create_backbone(backbone, pretrained=pretrained, weights=weights,
                                        drop_path_rate=drop_path_rate, img_size=img_size,
                                        **dict(backbone_kwargs or {}))
        if not self.backbone.is_vit:
            raise WSSSError(f"cls_model type 'toco' needs a ViT backbone, got '{backbone}'")
        depth = len(self.encoder.blocks)
        self.aux_index = aux_layer if aux_layer >= 0 else depth + aux_layer
        if not 0 <= self.aux_index < depth:
            raise WSSSError(f"cls_model.aux_layer={aux_layer} is outside the {depth} blocks of {backbone}")
        dim = self.encoder.embed_dim

        self.num_classes_fg = int(num_classes)
        self.classifier = nn.Conv2d(dim, self.num_classes_fg, kernel_size=1, bias=False)
        self.aux_classifier = nn.Conv2d(dim, self.num_classes_fg, kernel_size=1, bias=False)
        self.proj_head = ProjectionHead(dim, proj_dim, proj_hidden_dim, proj_bottleneck_dim)
        self.proj_head_teacher = copy.deepcopy(self.proj_head)
        for p in self.proj_head_teacher.parameters():
            p.requires_grad_(False)

        self.pooling = pooling
        self.cam_source = cam_source
        self.low, self.high = low, high
        self.use_par = bool(use_par)
        self.par_cfg = dict(par or {})
        self.par_down_scale = int(par_down_scale)
        self.pseudo_scales = tuple(float(s) for s in pseudo_scales)
        self.pseudo_flip = bool(pseudo_flip)
        self.token_min_fraction = float(token_min_fraction)
        self.cls_aux_weight = float(cls_aux_weight)
        self.ptc_weight = float(ptc_weight)
        self.ctc_weight = float(ctc_weight)
        self.ptc_start_iter = int(ptc_start_iter)
        self.ctc_start_iter = int(ctc_start_iter)
        self.num_global_views = int(num_global_views)
        self.num_local_crops = int(num_local_crops)
        self.local_crop_size = int(local_crop_size)
        self.negative_max_fraction = float(negative_max_fraction)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.head_lr_mult = float(head_lr_mult)
        self.ignore_index = int(ignore_index)
        self._refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self.seg_cfg = _seg_settings(seg_head)
        self.seg_head = None
        if self.seg_cfg is not None:
            self.seg_head = LargeFOVHead(dim, self.num_classes_fg + 1, int(self.seg_cfg["channels"]),
                                         int(self.seg_cfg["dilation"]))
        log.debug("toco: %s, aux classifier on block %d of %d, PAR %s, %d local crops of %d px", backbone,
                  self.aux_index + 1, depth, "on" if self.use_par else "off", self.num_local_crops,
                  self.local_crop_size)

    # ------------------------------------------------------------------ features, logits, CAMs
    @property
    def encoder(self) -> nn.Module:
        """The timm ViT inside ``backbone`` (its state-dict keys live under ``backbone.model.``)."""
        return self.backbone.model

    def _vit_input(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised images -> the normalisation the ViT was pretrained with."""
        return self.backbone._input(images)  # noqa: SLF001 (Backbone has no public name for it)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """ViT tokens of ``images`` [B, 3, H, W] (normalised).

        Returns ``cls`` [B, D] (final, normed), ``patches`` [B, D, h, w] (final, normed), ``aux_cls`` [B, D]
        and ``aux_patches`` [B, D, h, w] (output of block ``aux_layer``, as ToCo: before any norm).
        """
        b, _, height, width = images.shape
        final, inter = self.encoder.forward_intermediates(self._vit_input(images), indices=[self.aux_index],
                                                          return_prefix_tokens=True, output_fmt="NLC")
        aux_patches, aux_prefix = inter[0]
        h, w = self.encoder.patch_embed.dynamic_feat_size((height, width))
        npre = self.encoder.num_prefix_tokens
        to_map = lambda t: t.transpose(1, 2).reshape(b, -1, h, w)  # noqa: E731
        return dict(cls=final[:, 0], patches=to_map(final[:, npre:]), aux_cls=aux_prefix[:, 0],
                    aux_patches=to_map(aux_patches))

    def _logits(self, patches: torch.Tensor, head: nn.Conv2d) -> torch.Tensor:
        """Pooled tokens through a 1x1 classifier: [B, D, h, w] -> [B, C-1]."""
        pooled = F.adaptive_max_pool2d(patches, 1) if self.pooling == "gmp" else F.adaptive_avg_pool2d(patches, 1)
        return head(pooled).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Final-layer logits [B, C-1] of normalised images [B, 3, H, W]."""
        return self._logits(self.encode(images)["patches"], self.classifier)

    def cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final CAM, auxiliary CAM), each [B, C-1, h, w] >= 0 at patch resolution."""
        feats = self.encode(images)
        final = F.relu(F.conv2d(feats["patches"], self.classifier.weight))
        aux = F.relu(F.conv2d(feats["aux_patches"], self.aux_classifier.weight))
        return final, aux

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """CAM [B, C-1, h, w] >= 0 at patch resolution, from ``cam_source`` ('final', 'aux' or 'mean')."""
        final, aux = self.cams(images)
        if self.cam_source == "final":
            return final
        if self.cam_source == "aux":
            return aux
        scale = lambda c: c / (c.amax(dim=(2, 3), keepdim=True) + 1e-5)  # noqa: E731
        return 0.5 * (scale(final) + scale(aux))

    @torch.no_grad()
    def pseudo_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final CAM, auxiliary CAM) for the online pseudo labels: each [B, C-1, H, W] in [0, 1] at input
        size, summed over ``pseudo_scales`` (max over each flip pair), then min-max normalised per map
        (ToCo's multi_scale_cam2). No gradient."""
        b, _, h, w = images.shape
        totals = [images.new_zeros((b, self.num_classes_fg, h, w)) for _ in range(2)]
        for s in self.pseudo_scales:
            x = images if s == 1.0 else F.interpolate(images, size=(max(1, round(s * h)), max(1, round(s * w))),
                                                      mode="bilinear", align_corners=False)
            if self.pseudo_flip:
                x = torch.cat([x, x.flip(-1)], dim=0)
            for total, cam in zip(totals, self.cams(x)):
                cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)
                if self.pseudo_flip:
                    cam = torch.maximum(cam[:b], cam[b:].flip(-1))
                total += cam
        return normalize_cams(totals[0]), normalize_cams(totals[1])

    def pseudo_aux_cam(self, images: torch.Tensor) -> torch.Tensor:
        """The auxiliary half of :meth:`pseudo_cams`: [B, C-1, H, W] in [0, 1]."""
        return self.pseudo_cams(images)[1]

    def seg_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Segmentation-branch logits [B, C, h, w] (channel 0 background) at patch resolution."""
        if self.seg_head is None:
            raise WSSSError("cls_model.seg_head is not set: this ToCo model has no segmentation branch")
        return self.seg_head(self.encode(images)["patches"])

    # ------------------------------------------------------------------ training
    def _par(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self._refine is None:
            self._refine = _resolve_par(self.par_cfg)
        return self._refine

    def token_labels(self, images: torch.Tensor, aux_cam: torch.Tensor, labels: torch.Tensor,
                     grid: tuple[int, int]) -> torch.Tensor:
        """Per-token pseudo labels [B, h, w] long (0 bg, j class j, ignore_index unknown) from the
        normalised auxiliary CAM [B, C-1, H, W], PAR-refined when ``use_par``."""
        if self.use_par:
            pixel = par_refined_labels(images, aux_cam, labels, self.low, self.high, self._par(),
                                       down_scale=self.par_down_scale, ignore_index=self.ignore_index)
            return pool_labels_to_grid(pixel, grid, self.num_classes_fg + 1, self.ignore_index,
                                       self.token_min_fraction)
        small = F.interpolate(aux_cam, size=grid, mode="bilinear", align_corners=False)
        return cams_to_labels(small, labels, self.low, self.high, self.ignore_index)

    @torch.no_grad()
    def _ema_update(self) -> None:
        """Teacher projection head <- momentum * teacher + (1 - momentum) * student."""
        for p_t, p_s in zip(self.proj_head_teacher.parameters(), self.proj_head.parameters()):
            p_t.mul_(self.momentum).add_(p_s.detach(), alpha=1.0 - self.momentum)

    def _ctc(self, images: torch.Tensor, feats: dict[str, torch.Tensor], aux_cam: torch.Tensor,
             labels: torch.Tensor, second: torch.Tensor | None = None,
             local_source: torch.Tensor | None = None) -> torch.Tensor:
        """CTC over the global views (the batch and ``second``, default its flip) and local crops cut from
        ``local_source`` (default the batch; same geometry as the batch, so the aux CAM places them)."""
        b = images.shape[0]
        global_cls = [feats["cls"]]
        if self.num_global_views == 2:
            other = images.flip(-1) if second is None else second
            global_cls.append(self.encoder.forward_features(self._vit_input(other))[:, 0])
        roi = uncertainty_map(aux_cam, labels, self.low, self.high)
        crops, crop_pos = sample_local_crops(images if local_source is None else local_source, roi,
                                             self.num_local_crops, self.local_crop_size,
                                             negative_max_fraction=self.negative_max_fraction)
        local_cls = self.encoder.forward_features(self._vit_input(crops.flatten(0, 1)))[:, 0]
        local_cls = local_cls.reshape(b, self.num_local_crops, -1)
        self._ema_update()
        global_stack = torch.stack(global_cls, dim=1)  # [B, G, D]
        teacher = self.proj_head_teacher(global_stack.detach())
        student = self.proj_head(torch.cat([global_stack, local_cls], dim=1))
        positive = torch.cat([torch.ones((b, len(global_cls)), dtype=torch.bool, device=images.device),
                              crop_pos], dim=1)
        return ctc_loss(student, teacher, positive, self.temperature)

    def losses(self, images: torch.Tensor, labels: torch.Tensor, iteration: int) -> dict[str, torch.Tensor]:
        """All ToCo losses of one batch.

        images: [B, 3, H, W] normalised, or ToCo's views [B, 3, 3, H, W] (main input, second global view,
        local-crop source; wsss.data.transforms.MultiViewTransform); labels: [B, C-1] multi-hot float;
        iteration: 0-based training step (PTC / CTC / the seg branch switch on at their start iterations).
        Returns scalars 'loss' (weighted total), 'cls', 'cls_aux', 'ptc', 'ctc' and, with a seg head, 'seg'
        and 'reg' (unweighted; 0 while off).
        """
        second = local_source = None
        if images.dim() == 5:
            if images.shape[1] != 3:
                raise WSSSError(f"toco: stacked views must be [B, 3, 3, H, W], got {tuple(images.shape)}")
            images, second, local_source = images[:, 0], images[:, 1], images[:, 2]
        labels = labels.to(images.dtype)
        use_ptc = self.ptc_weight > 0 and iteration >= self.ptc_start_iter
        use_ctc = self.ctc_weight > 0 and iteration >= self.ctc_start_iter
        use_seg = self.seg_head is not None and iteration >= int(self.seg_cfg["start_iter"])
        final_cam = aux_cam = None
        if use_ptc or use_ctc or use_seg:
            final_cam, aux_cam = self.pseudo_cams(images)

        feats = self.encode(images)
        logits = self._logits(feats["patches"], self.classifier).float()  # float32 losses under autocast
        logits_aux = self._logits(feats["aux_patches"], self.aux_classifier).float()
        cls = F.multilabel_soft_margin_loss(logits, labels.float())
        cls_aux = F.multilabel_soft_margin_loss(logits_aux, labels.float())
        zero = cls.new_zeros(())
        ptc = zero
        if use_ptc:
            grid = tuple(feats["patches"].shape[2:])
            with torch.no_grad():
                relation = relation_from_labels(self.token_labels(images, aux_cam, labels, grid),
                                                self.ignore_index)
            ptc = ptc_loss(feats["patches"], relation)
        ctc = self._ctc(images, feats, aux_cam, labels, second, local_source) if use_ctc else zero
        total = cls + self.cls_aux_weight * cls_aux + self.ptc_weight * ptc + self.ctc_weight * ctc
        out = dict(loss=total, cls=cls, cls_aux=cls_aux, ptc=ptc, ctc=ctc)
        if self.seg_head is not None:
            seg = reg = zero
            if use_seg:
                seg, reg = self._seg_losses(images, feats["patches"], final_cam, labels)
            out["loss"] = total + float(self.seg_cfg["weight"]) * seg + float(self.seg_cfg["reg_weight"]) * reg
            out.update(seg=seg, reg=reg)
        return out

    def seg_pseudo_labels(self, images: torch.Tensor, final_cam: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """The seg branch's targets [B, H, W] long: the normalised final CAM [B, C-1, H, W] split by
        ``bg_thresholds`` after PAR (``seg_head.use_par``; ToCo's refine_cams_with_bkg_v2; 0 bg, ignore_index
        in the band)."""
        with torch.no_grad():
            if self.seg_cfg["use_par"]:
                return par_refined_labels(images, final_cam, labels, self.low, self.high, self._par(),
                                          down_scale=self.par_down_scale, ignore_index=self.ignore_index)
            return cams_to_labels(final_cam, labels, self.low, self.high, self.ignore_index)

    def _seg_losses(self, images: torch.Tensor, patches: torch.Tensor, final_cam: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(balanced CE, dense energy) of the decoder on the final tokens against the pseudo labels."""
        target = self.seg_pseudo_labels(images, final_cam, labels)
        logits = F.interpolate(self.seg_head(patches).float(), size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
        seg = balanced_seg_loss(logits, target, self.ignore_index)
        reg_cfg = self.seg_cfg["reg"]
        if float(self.seg_cfg["reg_weight"]) == 0.0:
            return seg, seg.new_zeros(())
        mean = images.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = images.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        rgb = ((images.float() * std + mean) * 255.0).detach()
        reg = dense_energy_loss(rgb, torch.softmax(logits, dim=1), target, sigma_rgb=float(reg_cfg["sigma_rgb"]),
                                sigma_xy=float(reg_cfg["sigma_xy"]), scale_factor=float(reg_cfg["scale_factor"]),
                                weight=float(reg_cfg["weight"]), ignore_index=self.ignore_index)
        return seg, reg

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone at ``lr``; the new heads (both classifiers, the projection head) at ``lr * head_lr_mult``
        (ToCo: 10x). The EMA teacher head has no gradient and is left out."""
        heads = [p for m in (self.classifier, self.aux_classifier, self.proj_head) for p in m.parameters()]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        groups = [{"params": backbone, "lr": lr, "name": "backbone"},
                  {"params": heads, "lr": lr * self.head_lr_mult, "name": "heads"}]
        if self.seg_head is not None:
            groups.append({"params": list(self.seg_head.parameters()), "lr": lr * float(self.seg_cfg["lr_mult"]),
                           "name": "seg_head"})
        return groups
