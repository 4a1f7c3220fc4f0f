"""Multi-scale + flip CAM inference, batched: every image of a same-size group, flipped and not, goes through
the network in one forward pass per scale, and the maps are fused at the original resolution on the device.

The reference repositories (IRN, P-NOC) loop over images and, per image, over scales with a batch of two
(image + flip). That leaves a GPU mostly idle at VOC sizes; batching same-size images (VOC has few distinct
sizes) and only the classes an image is labelled with makes the same computation several times faster
without changing what is computed. Fusion follows IRN: the sum over scales and flips of the upsampled ReLU
CAMs, then each class map divided by its maximum (+1e-5).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CamFn = Callable[[torch.Tensor], torch.Tensor]


def normalise_images(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 (any device) -> [B, 3, H, W] float32 ImageNet-normalised, as the classifiers expect."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Input size at ``scale`` (rounded, at least 1 pixel each side)."""
    return max(1, int(round(size[0] * scale))), max(1, int(round(size[1] * scale)))


def upsample_cam(cam: torch.Tensor, input_size: tuple[int, int], out_size: tuple[int, int]) -> torch.Tensor:
    """Bring feature-resolution maps of a scaled input back to the original image size.

    cam: [N, K, h, w] computed on an input of ``input_size`` (H_s, W_s); returns [N, K, H, W] float32.
    Each feature cell covers ``stride`` input pixels from the top-left (conv padding puts the remainder at
    the bottom/right), so the map is upsampled to ``h * stride`` (in original pixels) and cropped, as IRN's
    ``strided_up_size`` does, rather than stretched onto the image.
    """
    h, w = cam.shape[-2:]
    (hs, ws), (H, W) = input_size, out_size
    stride = 2 ** round(math.log2(max(hs / h, ws / w, 1.0)))
    th, tw = round(h * stride * H / hs), round(w * stride * W / ws)
    cam = cam.float()
    if th >= H and tw >= W:
        return F.interpolate(cam, size=(th, tw), mode="bilinear", align_corners=False)[..., :H, :W]
    return F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False)


def multiscale_cam(cam_fn: CamFn, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = True,
                   classes: torch.Tensor | None = None, amp: bool = False) -> torch.Tensor:
    """Fused (not yet normalised) CAMs of a batch of same-size images.

    Args:
        cam_fn: ``model.cam``: [N, 3, h, w] normalised -> [N, K, h', w'] non-negative.
        images: [B, 3, H, W] normalised.
        scales: input scales; one forward pass per scale holds all B images (and their flips).
        flip: add horizontally flipped copies (their maps are flipped back before summing).
        classes: optional int64 [K'] class-channel indices to keep (0-based logit indices); fusion and the
            returned maps only cover these channels, which saves memory and time when K is large (COCO).
        amp: run the network under CUDA autocast (float16); fusion stays float32.
    Returns: [B, K or K', H, W] float32, the sum over scales and flips.
    """
    b, _, H, W = images.shape
    out = None
    for s in scales:
        size = scaled_size((H, W), s)
        x = images if size == (H, W) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)], dim=0)
        with torch.autocast(device_type=images.device.type, dtype=torch.float16,
                            enabled=amp and images.device.type == "cuda"):
            cam = cam_fn(x)
        if classes is not None:
            cam = cam.index_select(1, classes)
        up = upsample_cam(cam, size, (H, W))
        if flip:
            up = up[:b] + up[b:].flip(-1)
        out = up if out is None else out + up
    assert out is not None, "scales must not be empty"
    return out


def normalise_cams(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each class map by its maximum (+eps): [..., K, H, W] -> same shape, values in [0, 1)."""
    peak = cams.flatten(-2).amax(dim=-1)[..., None, None]
    return cams / (peak + eps)


def naive_multiscale_cam(cam_fn: CamFn, image: torch.Tensor, scales: Sequence[float] = (1.0,),
                         flip: bool = True) -> torch.Tensor:
    """The reference repositories' loop, kept for the benchmark and as a parity check: one image, one scale
    (image + flip) per forward pass, float32, all classes. image: [1, 3, H, W] -> [K, H, W] fused sum."""
    _, _, H, W = image.shape
    total = None
    for s in scales:
        size = scaled_size((H, W), s)
        x = F.interpolate(image, size=size, mode="bilinear", align_corners=False) if size != (H, W) else image
        if flip:
            x = torch.cat([x, x.flip(-1)], dim=0)
        up = upsample_cam(cam_fn(x), size, (H, W))
        m = up[0] + up[1].flip(-1) if flip else up[0]
        total = m if total is None else total + m
    assert total is not None, "scales must not be empty"
    return total
