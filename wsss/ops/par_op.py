"""``par``: PAR refinement of masks / CAMs with an image-colour local affinity (AFA / ToCo).

One function, three implementations (see :mod:`wsss.ops.backend`): the PyTorch reference
(:mod:`wsss.ops.par_ref`, unfold formulation), the C++ CPU twin and the CUDA kernel (``csrc/par*.{h,cpp,cu}``).
The kernels keep one [B, N, H, W] weight tensor and two [B, K, H, W] buffers instead of the
[B, K, N, H, W] neighbourhood the reference builds at every iteration.
"""

from __future__ import annotations

from typing import Sequence

import torch

from wsss.ops import par_ref
from wsss.ops.backend import checked_backend
from wsss.ops.par_ref import DEFAULT_DILATIONS, par_reference
from wsss.ops.selfcheck import compare_with_reference

__all__ = ["par"]

MAX_DILATIONS = 16  # kParMaxDilations in csrc/par.h
MAX_IMAGE_CHANNELS = 8  # kParMaxImageChannels


def _check(image: torch.Tensor, masks: torch.Tensor, dilations: Sequence[int], num_iter: int, w1: float) -> None:
    if image.dim() != 4 or masks.dim() != 4:
        raise ValueError(f"par: image and masks must be [B, C, H, W] and [B, K, H, W], got "
                         f"{tuple(image.shape)} and {tuple(masks.shape)}")
    if image.shape[0] != masks.shape[0] or image.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"par: image {tuple(image.shape)} and masks {tuple(masks.shape)} differ in batch or "
                         "size; resize the masks to the image first (AFA uses bilinear, align_corners=True)")
    if image.device != masks.device:
        raise ValueError(f"par: image on {image.device}, masks on {masks.device}")
    if not (image.is_floating_point() and masks.is_floating_point()):
        raise ValueError(f"par: image and masks must be floating point, got {image.dtype} and {masks.dtype}")
    if not 1 <= len(dilations) <= MAX_DILATIONS or any(int(d) != d or d < 1 for d in dilations):
        raise ValueError(f"par: dilations must be 1..{MAX_DILATIONS} positive integers, got {tuple(dilations)}")
    if not 1 <= image.shape[1] <= MAX_IMAGE_CHANNELS:
        raise ValueError(f"par: image must have 1..{MAX_IMAGE_CHANNELS} channels, got {image.shape[1]}")
    if int(num_iter) != num_iter or num_iter < 0:
        raise ValueError(f"par: num_iter must be a non-negative integer, got {num_iter!r}")
    if not w1 > 0:
        raise ValueError(f"par: w1 must be > 0, got {w1}")


def par(image: torch.Tensor, masks: torch.Tensor, dilations: Sequence[int] = DEFAULT_DILATIONS,
        num_iter: int = 10, w1: float = 0.3, w2: float = 0.01, backend: str | None = None) -> torch.Tensor:
    """Propagate masks along image-colour affinities (pixel-adaptive refinement).

    image: [B, C, H, W] float, C <= 8 (RGB; normalised or not, only colour differences relative to the local
        std matter). masks: [B, K, H, W] float (CAMs or probabilities, any K) at the image size.
    dilations: neighbourhood rings (8 pixels each, replicate padding at the border); num_iter: propagation
        steps; w1: colour / position temperature; w2: weight of the position term.
    backend: None (``WSSS_OPS`` env var, default auto), 'auto', 'torch', 'cpp' or 'cuda' (wsss.ops.backend).
    Returns [B, K, H, W] in masks.dtype. Each step multiplies a constant mask by 1 + w2, as the original does
    (the weights are a softmax plus w2 times a softmax).

    Kernels compute in float32 (float64 for float64 masks); half inputs are cast and the result cast back.
    Differentiable only through the 'torch' backend (auto picks it when a gradient is needed).
    """
    dilations = tuple(int(d) for d in dilations)
    _check(image, masks, dilations, num_iter, w1)
    needs_grad = torch.is_grad_enabled() and (image.requires_grad or masks.requires_grad)
    choice = checked_backend("par", masks.device, needs_grad, backend, _self_check)
    if choice == "torch":
        return par_reference(image, masks, dilations, int(num_iter), float(w1), float(w2))
    return _par_kernel(image, masks, dilations, int(num_iter), float(w1), float(w2))


def _par_kernel(image: torch.Tensor, masks: torch.Tensor, dilations: tuple[int, ...], num_iter: int, w1: float,
                w2: float) -> torch.Tensor:
    """The compiled path (CUDA kernel for CUDA tensors, C++ twin for CPU ones); checked arguments."""
    acc = torch.float64 if masks.dtype == torch.float64 else torch.float32
    img = image.to(acc).contiguous()
    b, _, h, w = img.shape
    weights = img.new_empty(b, 8 * len(dilations), h, w)
    torch.ops.wsss_ops.par_weights(img, weights, list(dilations), w1, w2)
    x = masks.to(acc, copy=True).contiguous()  # own buffer: the op writes into it
    tmp = torch.empty_like(x)
    torch.ops.wsss_ops.par_propagate(weights, x, tmp, list(dilations), num_iter)
    return x.to(masks.dtype)


#: Self-check input: 2 images of 19 x 27 (dilations 12 and 24 exceed the image: border clamping), 11 classes
#: (one full chunk of 8 channels and a partial one), ToCo's dilations, 3 iterations (odd: the ping-pong buffer).
_CHECK_SHAPE = (2, 11, 19, 27)
_CHECK_ARGS = (DEFAULT_DILATIONS, 3, 0.3, 0.01)


def _check_inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    b, k, h, w = _CHECK_SHAPE
    g = torch.Generator().manual_seed(20261201)
    image = torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    masks = torch.softmax(torch.randn(b, k, h, w, generator=g, dtype=dtype) * 3, dim=1)
    return image.to(device), masks.to(device)


def _self_check(device: torch.device) -> str | None:
    """The compiled PAR against the reference on the fixed input (float32 and float64); None when they agree."""
    problem, _ = compare_with_reference(lambda i, m: _par_kernel(i, m, *_CHECK_ARGS),
                                        lambda i, m: par_ref.par_reference(i, m, *_CHECK_ARGS), _check_inputs, device)
    return problem
