"""Class activation maps from a classifier: plain CAM from the classifier weights, and Grad-CAM.

Plain CAM (Zhou et al. 2016) needs a classifier that is linear on globally average-pooled features: then the
class-``k`` logit is exactly the spatial mean of the map ``sum_c W[k, c] * f[c]`` plus the bias, and that map
*is* the evidence for class k at each location. Grad-CAM (Selvaraju et al. 2017) weights feature channels by
the spatially averaged gradient of the logit instead, which also works when the logit does not come from
pooled features (e.g. a ViT's class token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cam(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Classifier-weighted features before the ReLU.

    features: [B, C, h, w]; weight: [K, C] (or a 1x1 conv weight [K, C, 1, 1]) -> [B, K, h, w], same dtype.
    Its spatial mean equals the GAP classifier's logits minus the bias.
    """
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    return F.conv2d(features, weight.to(features.dtype))


def cam_from_weights(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Plain CAM: ReLU of :func:`linear_cam`, [B, K, h, w] non-negative."""
    return torch.relu(linear_cam(features, weight))


def grad_cam(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of every class.

    features: [B, C, h, w], part of the autograd graph that produced ``logits`` [B, K] (requires grad).
    Returns [B, K, h, w] float32 non-negative: ReLU(sum_c mean_hw(d logit_k / d f_c) * f_c), detached.
    Samples must be independent in the forward pass (BatchNorm in eval mode), since the gradient of the
    batch-summed logit is used to get all samples' gradients in one backward per class.
    """
    if not features.requires_grad:
        raise ValueError("grad_cam needs features that require grad (run under torch.enable_grad, not inference_mode)")
    k = logits.shape[1]
    maps = []
    for j in range(k):
        (g,) = torch.autograd.grad(logits[:, j].sum(), features, retain_graph=j < k - 1)
        alpha = g.float().mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        maps.append(torch.relu((alpha * features.detach().float()).sum(dim=1)))
    return torch.stack(maps, dim=1)
