"""make_cam's memory estimate (wsss/cam/memory.py) against the measured peak RSS of the same CAM computation.

    python benchmarks/bench_cam_memory.py [--backbone resnet18] [--sizes 256x256 512x384 1024x768]
                                          [--scales 1.0 0.5 1.5] [--no-flip] [--classes 2]

Each row runs one image through make_cam's own function (``stages.make_cam.fused_cams``: multi-scale + flip
forward passes, fusion, normalisation) in a fresh subprocess on the CPU and reports the process's peak RSS
increase over its state just before the call (``ru_maxrss``), next to the estimate make_cam plans batches with.
The estimate must stay above the measurement (it decides whether a batch is split or an image refused before
the kernel's OOM killer decides instead). Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

CHILD = r'''
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from stages.make_cam import fused_cams
from wsss.cam.memory import ActivationProbe
from wsss.models.registry import build_classifier
backbone, h, w, scales, flip, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), \
    sys.argv[5] == "1", int(sys.argv[6])
model = build_classifier(dict(type="cam_classifier", backbone=backbone, pretrained=False, weights=None), 20).eval()
probe = ActivationProbe(model.cam, list(model.modules()), torch.device("cpu"))
est = probe.estimate(1, h, w, scales, flip, k)
image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, h, w, 3), dtype=np.uint8))
with torch.no_grad():  # warm-up on a small image: allocator and kernels, not the image's memory
    fused_cams(model, image[:, :32, :32].contiguous(), [list(range(1, k + 1))], scales, flip, False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    fused_cams(model, image, [list(range(1, k + 1))], scales, flip, False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": est, "measured": peak - base, "bpp": probe.bytes_per_pixel}))
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--sizes", nargs="+", default=["256x256", "512x384", "1024x768"])
    p.add_argument("--scales", nargs="+", type=float, default=[1.0, 0.5, 1.5])
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--classes", type=int, default=2)
    a = p.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; python {platform.python_version()}; "
          f"date {time.strftime('%Y-%m-%d')}; backbone {a.backbone}, scales {a.scales}, flip {not a.no_flip}, "
          f"{a.classes} classes\n")
    print("| image (w x h) | estimate | measured peak RSS increase | estimate / measured |")
    print("|---|---|---|---|")
    for size in a.sizes:
        w, h = (int(v) for v in size.split("x"))
        out = subprocess.run([sys.executable, "-c", CHILD, a.backbone, str(h), str(w), json.dumps(a.scales),
                              "0" if a.no_flip else "1", str(a.classes)], capture_output=True, text=True)
        if out.returncode:
            print(f"| {w} x {h} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        mb = 1 << 20
        print(f"| {w} x {h} | {r['estimate'] / mb:.0f} MB | {r['measured'] / mb:.0f} MB | "
              f"{r['estimate'] / max(1, r['measured']):.2f} |")


if __name__ == "__main__":
    main()
