"""How much memory a CAM forward pass will take, estimated before running it, and how to fit a batch into it.

Why: one 6000x4000 photo at the demo scales reached 23 GB of RAM in make_cam and was killed by the kernel without
a message (on CUDA an out-of-memory error can be caught; on the CPU the OOM killer gives no second chance). So the
need is estimated first, from the network's largest activation per input pixel measured once on a small probe,
and a batch that does not fit is split; an image that does not fit alone is a one-line error that names it and
the fix (``cam.max_side``, fewer scales).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

#: Peak / largest single activation of a no-grad forward pass: a layer's input and output live together, residual
#: and skip branches keep more maps alive, and the allocator holds freed blocks. Calibrated with
#: benchmarks/bench_cam_memory.py (docs/benchmarks.md): at 3.0 the estimate was 0.76-0.92 of the measured peak for
#: EfficientNet-Lite0 / ResNet-50 at scales up to 2.0, so 5.0 keeps it above the measurement for all three
#: backbones measured.
PEAK_FACTOR = 5.0
#: Share of the available memory a batch may plan to use (the rest: fragmentation, the writer, other buffers).
USABLE_SHARE = 0.7


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free bytes, or the kernel's MemAvailable for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not stop anything


class ActivationProbe:
    """Bytes per input pixel of a network's largest activation, measured once with forward hooks.

    ``cam_fn`` is ``model.cam``; ``modules`` the model's modules (hooks go on each). The probe runs one
    [1, 3, size, size] input on ``device``.
    """

    def __init__(self, cam_fn: Callable[[torch.Tensor], torch.Tensor], modules: Sequence[torch.nn.Module],
                 device: torch.device, size: int = 64) -> None:
        largest = [0]

        def hook(_module, _inputs, output) -> None:
            tensors = output if isinstance(output, (tuple, list)) else [output]
            n = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
            largest[0] = max(largest[0], n)

        handles = [m.register_forward_hook(hook) for m in modules]
        try:
            with torch.no_grad():
                out = cam_fn(torch.zeros(1, 3, size, size, device=device))
            largest[0] = max(largest[0], out.numel() * out.element_size())
        finally:
            for h in handles:
                h.remove()
        self.bytes_per_pixel = largest[0] / (size * size)

    def estimate(self, batch: int, height: int, width: int, scales: Sequence[float], flip: bool,
                 num_classes: int) -> int:
        """Peak bytes of :func:`wsss.cam.multiscale.multiscale_cam` on ``batch`` images of ``height x width``:
        the forward pass at the largest scale (flipped copies in the same pass) plus the fused maps kept at the
        original size ([B, K, H, W] float32: the running sum, one upsampled scale, the normalised copy)."""
        top = max(float(s) for s in scales)
        copies = batch * (2 if flip else 1)
        forward = PEAK_FACTOR * self.bytes_per_pixel * copies * math.ceil(height * top) * math.ceil(width * top)
        fused = 3 * 4 * batch * max(1, num_classes) * height * width * (2 if flip else 1)
        return int(forward + fused)


def human_bytes(n: float) -> str:
    """'23.4 GB', '512 MB'."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fit_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The inference size of an image: unchanged, or shrunk (aspect kept) so its longer side is ``max_side``."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    r = max_side / max(height, width)
    return max(1, round(height * r)), max(1, round(width * r))
