"""Speed of make_cam's batched multi-scale + flip CAMs against the reference repos' per-image, per-scale loop.

Same model, same images, same scales: the naive loop (IRN / P-NOC style) runs one forward pass per image and
scale (the image and its flip, float32, all classes); the batched path groups same-size images and runs one
forward pass per scale for the whole group, fusing only the labelled classes, optionally under float16
autocast on CUDA. Both include upload, upsampling, fusion, normalisation and the copy back to the host, and
exclude reading and writing files. One timed run each, after one warm-up batch.

    python benchmarks/bench_cam.py                      # GPU: resnet50 (OS16), 64 images of 500x375, 4 scales
    python benchmarks/bench_cam.py --small              # CPU-sized: resnet18, 8 images of 160x120
    python benchmarks/bench_cam.py --backbone resnet101 --num-images 128 --batch-size 16 --no-amp
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsss.cam.multiscale import multiscale_cam, naive_multiscale_cam, normalise_cams, normalise_images  # noqa: E402
from wsss.models.registry import build_classifier  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_images(n: int, sizes: list[tuple[int, int]], num_classes: int, seed: int = 0
                ) -> list[tuple[np.ndarray, list[int]]]:
    """n random-texture uint8 images [H, W, 3] cycling through ``sizes`` (w, h), each with 1-3 labels."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        w, h = sizes[k % len(sizes)]
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        labels = sorted(rng.choice(np.arange(1, num_classes + 1), size=int(rng.integers(1, 4)), replace=False).tolist())
        out.append((img, labels))
    return out


def run_naive(model, data, scales, device) -> float:
    """Per image: per scale one forward of (image, flip), float32, all classes. Returns seconds."""
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        for img, labels in data:
            x = normalise_images(torch.from_numpy(img)[None].to(device))
            cams = naive_multiscale_cam(model.cam, x, scales, flip=True)
            keep = torch.tensor([c - 1 for c in labels], device=device)
            _ = normalise_cams(cams.index_select(0, keep)).cpu().numpy()
    _sync(device)
    return time.perf_counter() - t


def run_batched(model, data, scales, device, batch_size: int, amp: bool) -> float:
    """make_cam's path: same-size groups of ``batch_size``, one forward per scale per group. Returns seconds."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for k, (img, _) in enumerate(data):
        by_size.setdefault(img.shape, []).append(k)
    groups = [ks[i:i + batch_size] for ks in by_size.values() for i in range(0, len(ks), batch_size)]
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        for g in groups:
            batch = torch.from_numpy(np.stack([data[k][0] for k in g])).to(device, non_blocking=True)
            labels = [data[k][1] for k in g]
            keep = sorted({c - 1 for lab in labels for c in lab})
            idx = torch.tensor(keep, device=device)
            fused = normalise_cams(multiscale_cam(model.cam, normalise_images(batch), scales, True, idx, amp))
            pos = {c: j for j, c in enumerate(keep)}
            for b, lab in enumerate(labels):
                _ = fused[b, [pos[c - 1] for c in lab]].cpu().numpy()
    _sync(device)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="CPU-sized run: resnet18, 8 images of 160x120")
    p.add_argument("--backbone", default=None, help="timm backbone (default resnet50; resnet18 with --small)")
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8, help="images per group in the batched path")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5, 2.0])
    p.add_argument("--num-classes", type=int, default=20)
    p.add_argument("--no-amp", action="store_true", help="batched path in float32 too")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    backbone = args.backbone or ("resnet18" if args.small else "resnet50")
    n = args.num_images or (8 if args.small else 64)
    # VOC's two most common sizes, landscape and portrait (scaled down by 1/3 with --small)
    sizes = [(160, 120), (120, 160)] if args.small else [(500, 375), (375, 500)]
    model = build_classifier(dict(type="cam_classifier", backbone=backbone, pretrained=False, output_stride=16),
                             args.num_classes).to(device).eval()
    data = make_images(n, sizes, args.num_classes)
    amp = device.type == "cuda" and not args.no_amp

    run_batched(model, data[: min(len(data), args.batch_size)], args.scales, device, args.batch_size, amp)  # warm-up
    run_naive(model, data[:1], args.scales, device)
    t_naive = run_naive(model, data, args.scales, device)
    t_fp32 = run_batched(model, data, args.scales, device, args.batch_size, amp=False)
    t_amp = run_batched(model, data, args.scales, device, args.batch_size, amp=True) if amp else None

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"make_cam speed: {backbone} OS16, {n} images {sizes[0][0]}x{sizes[0][1]} / {sizes[1][0]}x{sizes[1][1]}, "
          f"scales {args.scales} + flip, {args.num_classes} classes, on {name}")
    rows = [("naive per-image per-scale loop (fp32)", t_naive),
            (f"batched, {args.batch_size} images/group (fp32)", t_fp32)]
    if t_amp is not None:
        rows.append((f"batched, {args.batch_size} images/group (fp16 autocast)", t_amp))
    print(f"{'path':<48}{'seconds':>10}{'images/s':>12}{'speed-up':>10}")
    for label, t in rows:
        print(f"{label:<48}{t:>10.2f}{n / t:>12.2f}{t_naive / t:>9.2f}x")
    best = min(t for _, t in rows[1:])
    print(f"ratio batched/naive (images/s): {t_naive / best:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
