"""Time and peak memory of the wsss affinity ops: kernels vs the formulations the reference repos use.

    python benchmarks/bench_affinity.py                   # GPU if present: VOC sizes (512^2, K=21, 10 iters;
                                                          #   random walk 128^2, radius 5, 21 channels, t=256)
    python benchmarks/bench_affinity.py --device cpu --quick        # small CPU run (C++ twin vs reference)
    python benchmarks/bench_affinity.py --device cpu --size 128 --rw-size 32
    python benchmarks/bench_affinity.py --classes 21 81 --json out.json   # PAR at K=21 and K=81 in one run

Rows per op: the reference formulation (PAR: ToCo/AFA's unfold, which builds the [B, K, N, H, W]
neighbourhood every iteration; random walk: IRN's dense hw x hw transition matrix raised to the t-th power),
our pure-PyTorch random walk (shifted copies, the torch fallback), and the kernel ('cuda' on GPU, the C++ twin
'cpp' on CPU). Columns: median wall time of --repeats runs after one warm-up (and the process CPU time, all
threads: on a shared machine the steadier number); peak memory above the inputs
(GPU: torch.cuda.max_memory_allocated; CPU: peak RSS growth of a fresh subprocess running the op once, read
from /proc after resetting the high-water mark: an estimate that includes allocator slack); the bandwidth
floor = bytes every iteration must at least move / measured copy bandwidth.

Floor bytes (float32): PAR: the image once + per iteration the masks read and written (2 K H W);
random walk: per step x read and written (2 C h w) plus the E h w affinities. Both ignore the neighbour
re-reads, which a kernel can only serve from cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.ops import load_extension, par, par_reference, radius_offsets, random_walk  # noqa: E402
from wsss.ops import random_walk_dense, random_walk_reference  # noqa: E402

MiB = 2 ** 20


@dataclass
class Case:
    op: str  # "par" or "random_walk"
    backend: str  # "reference", "torch-shift", "cuda", "cpp"
    label: str
    size: str
    floor_bytes: int
    classes: int = 21  # PAR mask channels K of this row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small sizes and one repeat (smoke run)")
    p.add_argument("--size", type=int, default=None, help="PAR image side (GPU default 512, CPU 128)")
    p.add_argument("--classes", type=int, nargs="+", default=[21], help="PAR mask channels K (several: one "
                   "pair of rows each, e.g. 21 81)")
    p.add_argument("--iters", type=int, default=10, help="PAR iterations")
    p.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4, 8, 12, 24])
    p.add_argument("--rw-size", type=int, default=None, help="random-walk grid side (GPU default 128, CPU 32)")
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--channels", type=int, default=21, help="random-walk channels incl. background")
    p.add_argument("--steps", type=int, default=256, help="random-walk steps t (IRN: 256)")
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default GPU 5, CPU 3)")
    p.add_argument("--threads", type=int, default=None, help="torch / OpenMP CPU threads (default: torch's)")
    p.add_argument("--skip-dense", action="store_true", help="skip IRN's dense random walk (O((hw)^2) memory)")
    p.add_argument("--json", default=None, help="also write the rows (and target checks on GPU) to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: CPU memory probe
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    if args.quick:
        args.size = args.size or (256 if gpu else 64)
        args.rw_size = args.rw_size or (64 if gpu else 24)
        args.steps = min(args.steps, 64)
        args.repeats = args.repeats or 1
    args.size = args.size or (512 if gpu else 128)
    args.rw_size = args.rw_size or (128 if gpu else 32)
    args.repeats = args.repeats or (5 if gpu else 3)
    return args


def make_inputs(args: argparse.Namespace, case: Case) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if case.op == "par":
        s = args.size
        image = torch.rand(1, 3, s, s, generator=g)
        masks = torch.softmax(torch.randn(1, case.classes, s, s, generator=g) * 3, dim=1)
        return image.to(args.device), masks.to(args.device)
    s = args.rw_size
    e = len(radius_offsets(args.radius))
    x = torch.softmax(torch.randn(1, args.channels, s, s, generator=g) * 3, dim=1)
    aff = torch.rand(1, e, s, s, generator=g)
    return x.to(args.device), aff.to(args.device)


def make_fn(args: argparse.Namespace, case: Case, inputs: tuple[torch.Tensor, ...]) -> Callable[[], torch.Tensor]:
    dil = tuple(args.dilations)
    if case.op == "par":
        image, masks = inputs
        if case.backend == "reference":
            return lambda: par_reference(image, masks, dil, args.iters)
        return lambda: par(image, masks, dil, args.iters, backend=case.backend)
    x, aff = inputs
    offs = radius_offsets(args.radius)
    if case.backend == "reference":
        return lambda: random_walk_dense(x, aff, offs, args.beta, args.steps)
    if case.backend == "torch-shift":
        return lambda: random_walk_reference(x, aff, offs, args.beta, args.steps)
    return lambda: random_walk(x, aff, offs, args.beta, args.steps, backend=case.backend)


def cases(args: argparse.Namespace) -> list[Case]:
    kernel = "cuda" if args.device == "cuda" else "cpp"
    s, n_it = args.size, args.iters
    g, c, t = args.rw_size, args.channels, args.steps
    e = len(radius_offsets(args.radius))
    rw_floor = 4 * t * (2 * c + e) * g * g
    rw_size = f"{g}x{g}, r={args.radius} (E={e}), C={c}, t={t}"
    out = []
    for k in args.classes:
        par_floor = 4 * (3 * s * s + n_it * 2 * k * s * s)
        par_size = f"{s}x{s}, K={k}, {n_it} it, {len(args.dilations)} dil"
        out += [Case("par", "reference", "torch unfold (ToCo/AFA)", par_size, par_floor, k),
                Case("par", kernel, f"{kernel} kernel", par_size, par_floor, k)]
    if not args.skip_dense:
        out.append(Case("random_walk", "reference", "torch dense T^t (IRN)", rw_size, rw_floor))
    out += [Case("random_walk", "torch-shift", "torch shifted (fallback)", rw_size, rw_floor),
            Case("random_walk", kernel, f"{kernel} kernel", rw_size, rw_floor)]
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a large device-to-device (or RAM-to-RAM) copy: read + write counted."""
    n = (256 if device == "cuda" else 64) * MiB // 4
    a = torch.rand(n, device=device)
    b = torch.empty_like(a)
    times = []
    for _ in range(6):
        sync(device)
        start = time.perf_counter()
        b.copy_(a)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * a.numel() * 4 / statistics.median(times[1:])


def time_and_gpu_peak(args: argparse.Namespace,
                      fn: Callable[[], torch.Tensor]) -> tuple[float, float, float | None]:
    """Median wall time, median process CPU time (all threads) and, on GPU, peak memory above the inputs."""
    with torch.no_grad():
        fn()  # warm-up (and extension build)
        peak = None
        if args.device == "cuda":
            sync("cuda")
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            sync("cuda")
            peak = float(torch.cuda.max_memory_allocated() - base)
        wall, cpu = [], []
        for _ in range(args.repeats):
            sync(args.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync(args.device)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), peak


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def cpu_peak_child(args: argparse.Namespace) -> None:
    """Child process: run one case once and print its peak RSS growth above the inputs (bytes).

    Linux only: resets the high-water mark (``/proc/self/clear_refs`` = 5) after the inputs exist and reads
    VmHWM - VmRSS after the run, so import-time peaks do not count.
    """
    spec = json.loads(args.child)
    case = Case(**spec)
    inputs = make_inputs(args, case)
    if case.backend in ("cpp", "cuda"):
        load_extension()
    fn = make_fn(args, case, inputs)
    with torch.no_grad():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
        fn()
        peak = _status_kib("VmHWM")
    print(json.dumps({"peak": max(0, peak - base) * 1024}))


def cpu_peak(argv: list[str], case: Case) -> float | None:
    cmd = [sys.executable, __file__, *argv, "--child", json.dumps(case.__dict__)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"memory probe failed for {case.label}: {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        cpu_peak_child(args)
        return
    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    bw = copy_bandwidth(device)
    print(f"device: {name}; measured copy bandwidth {bw / 1e9:.1f} GB/s; median of {args.repeats} run(s)\n")
    results = []
    for case in cases(args):
        inputs = make_inputs(args, case)
        seconds, cpu_seconds, peak = time_and_gpu_peak(args, make_fn(args, case, inputs))
        if device == "cpu":
            peak = cpu_peak(argv, case)
        results.append((case, seconds, cpu_seconds, peak))
        del inputs
        if device == "cuda":
            torch.cuda.empty_cache()
    mem_note = "peak mem (MiB)" if device == "cuda" else "peak RSS growth (MiB, est.)"
    print(f"| op | size | backend | time (ms) | CPU time (ms) | {mem_note} | floor bytes (MiB) | floor (ms) "
          f"| x floor | speed-up vs ref | mem vs ref |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref = {(c.op, c.size): (s, m) for c, s, _, m in results if c.backend == "reference"}
    rows = []
    for case, seconds, cpu_seconds, peak in results:
        floor_s = case.floor_bytes / bw
        ref_s, ref_m = ref.get((case.op, case.size), (None, None))
        speed = f"{ref_s / seconds:.1f}x" if ref_s else "-"
        mem_ratio = f"{ref_m / peak:.1f}x less" if ref_m and peak else "-"
        mem = f"{peak / MiB:.1f}" if peak is not None else "n/a"
        print(f"| {case.op} | {case.size} | {case.label} | {seconds * 1e3:.2f} | {cpu_seconds * 1e3:.0f} | {mem} | "
              f"{case.floor_bytes / MiB:.0f} | {floor_s * 1e3:.3f} | {seconds / floor_s:.1f} | {speed} | {mem_ratio} |")
        rows.append(dict(op=case.op, size=case.size, backend=case.backend, label=case.label, ms=seconds * 1e3,
                         cpu_ms=cpu_seconds * 1e3, peak_mib=None if peak is None else peak / MiB,
                         floor_ms=floor_s * 1e3, speedup_vs_ref=ref_s / seconds if ref_s else None,
                         mem_vs_ref=ref_m / peak if ref_m and peak else None))
    targets = []
    if device == "cuda":
        print("\ntargets (GPU): kernel >= 5x faster and >= 5x less peak memory than the reference, "
              "<= 3x the bandwidth floor")
        for case, seconds, _, peak in results:
            if case.backend != "cuda" or (case.op, case.size) not in ref:
                continue
            ref_s, ref_m = ref[(case.op, case.size)]
            checks = {"5x faster": ref_s / seconds >= 5, "5x less memory": bool(peak) and ref_m / peak >= 5,
                      "3x floor": seconds <= 3 * case.floor_bytes / bw}
            print(f"- {case.op} ({case.size}): " + ", ".join(f"{k}: {'PASS' if v else 'FAIL'}"
                                                          for k, v in checks.items()))
            targets.append(dict(op=case.op, size=case.size, **{k: bool(v) for k, v in checks.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=name, copy_bandwidth_gbs=bw / 1e9, repeats=args.repeats,
                                                   rows=rows, targets=targets), indent=1))

if __name__ == "__main__":
    main()
