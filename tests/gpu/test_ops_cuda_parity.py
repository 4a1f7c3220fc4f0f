"""CUDA kernels of wsss.ops against the PyTorch reference (and the C++ CPU twin), on random inputs of odd
sizes and dilations, float32 and float16. Skipped without CUDA.

Error measure: max |kernel - reference| / max |reference| over the whole output. float32 must stay under
1e-4; float16 inputs are computed in float32 by the kernels, so their error is the half rounding of the
output (checked against the float32 reference of the same half inputs, < 2e-3).
"""

from __future__ import annotations

import pytest
import torch

from wsss.ops import load_extension, par, radius_offsets, random_walk

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

DEV = "cuda"


@pytest.fixture(scope="module", autouse=True)
def cuda_ops() -> None:
    assert load_extension() == "cuda", "the CUDA variant of the extension did not build"


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


PAR_CASES = [
    # (B, C, H, W, K, dilations, num_iter)
    (1, 3, 37, 53, 21, (1, 2, 4, 8, 12, 24), 10),  # ToCo's setting, dilation 24 ~ image size
    (2, 3, 64, 41, 5, (1, 3, 5), 3),  # odd dilations, odd number of iterations
    (1, 3, 17, 19, 1, (7,), 2),  # one class, one dilation
    (3, 1, 9, 130, 10, (1, 2, 33), 1),  # grey image, dilation larger than the height
    (1, 3, 256, 256, 21, (1, 2, 4, 8, 12, 24), 10),  # enough pixels to launch one thread per pixel
]


@pytest.mark.parametrize("case", PAR_CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-d{len(c[5])}-it{c[6]}")
def test_par_cuda_matches_reference_fp32(case):
    b, c, h, w, k, dilations, num_iter = case
    g = torch.Generator(device=DEV).manual_seed(h * w + k)
    image = torch.rand(b, c, h, w, device=DEV, generator=g)
    masks = torch.rand(b, k, h, w, device=DEV, generator=g)
    ref = par(image, masks, dilations, num_iter, backend="torch")
    got = par(image, masks, dilations, num_iter, backend="cuda")
    assert got.dtype == torch.float32 and got.shape == masks.shape
    assert _rel_err(got, ref) < 1e-4


@pytest.mark.parametrize("case", PAR_CASES[:3], ids=lambda c: "x".join(map(str, c[:5])))
def test_par_cuda_matches_reference_fp16(case):
    b, c, h, w, k, dilations, num_iter = case
    g = torch.Generator(device=DEV).manual_seed(7 + h)
    image = torch.rand(b, c, h, w, device=DEV, generator=g).half()
    masks = torch.rand(b, k, h, w, device=DEV, generator=g).half()
    ref = par(image.float(), masks.float(), dilations, num_iter, backend="torch")
    got = par(image, masks, dilations, num_iter, backend="cuda")
    assert got.dtype == torch.float16
    assert _rel_err(got, ref) < 2e-3


def test_par_cuda_matches_cpu_twin_fp64():
    """Same per-pixel code on both sides: float64 results agree to rounding."""
    g = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 23, 29, generator=g, dtype=torch.float64)
    masks = torch.rand(2, 11, 23, 29, generator=g, dtype=torch.float64)
    cpu = par(image, masks, (1, 3, 9), 4, backend="cpp")
    gpu = par(image.to(DEV), masks.to(DEV), (1, 3, 9), 4, backend="cuda").cpu()
    assert _rel_err(gpu, cpu) < 1e-12


RW_CASES = [
    # (B, C, h, w, radius, beta, t)
    (1, 21, 33, 47, 5, 10.0, 256),  # IRN's setting on an odd grid
    (2, 3, 16, 9, 4, 2.5, 7),  # odd step count (result in the ping-pong buffer)
    (1, 10, 5, 70, 6, 10.0, 1),  # radius beyond the grid height
    (1, 21, 128, 128, 5, 10.0, 16),  # IRN's feature grid size
]


@pytest.mark.parametrize("case", RW_CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"-r{c[4]}-t{c[6]}")
def test_random_walk_cuda_matches_reference_fp32(case):
    b, c, h, w, radius, beta, t = case
    offs = radius_offsets(radius)
    g = torch.Generator(device=DEV).manual_seed(h * w + t)
    x = torch.rand(b, c, h, w, device=DEV, generator=g)
    aff = torch.rand(b, len(offs), h, w, device=DEV, generator=g)
    ref = random_walk(x, aff, offs, beta, t, backend="torch")
    got = random_walk(x, aff, offs, beta, t, backend="cuda")
    assert got.dtype == torch.float32 and got.shape == x.shape
    assert _rel_err(got, ref) < 1e-4


@pytest.mark.parametrize("case", RW_CASES[:2], ids=lambda c: "x".join(map(str, c[:4])))
def test_random_walk_cuda_matches_reference_fp16(case):
    b, c, h, w, radius, beta, t = case
    offs = radius_offsets(radius)
    g = torch.Generator(device=DEV).manual_seed(11 + t)
    x = torch.rand(b, c, h, w, device=DEV, generator=g).half()
    aff = torch.rand(b, len(offs), h, w, device=DEV, generator=g).half()
    ref = random_walk(x.float(), aff.float(), offs, beta, t, backend="torch")
    got = random_walk(x, aff, offs, beta, t, backend="cuda")
    assert got.dtype == torch.float16
    assert _rel_err(got, ref) < 2e-3


def test_random_walk_cuda_matches_cpu_twin_fp64():
    offs = radius_offsets(5)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 13, 19, 23, generator=g, dtype=torch.float64)
    aff = torch.rand(2, len(offs), 19, 23, generator=g, dtype=torch.float64)
    cpu = random_walk(x, aff, offs, 10.0, 9, backend="cpp")
    gpu = random_walk(x.to(DEV), aff.to(DEV), offs, 10.0, 9, backend="cuda").cpu()
    assert _rel_err(gpu, cpu) < 1e-12


def test_auto_backend_uses_kernel_without_grad_and_reference_with_grad(monkeypatch):
    import wsss.ops.par_op as par_op

    calls = []
    reference = par_op.par_reference
    monkeypatch.setattr(par_op, "par_reference", lambda *a: calls.append(1) or reference(*a))
    monkeypatch.delenv("WSSS_OPS", raising=False)
    image = torch.rand(1, 3, 16, 16, device=DEV)
    masks = torch.rand(1, 2, 16, 16, device=DEV, requires_grad=True)
    with torch.no_grad():
        par(image, masks)
    assert calls == []
    par(image, masks).sum().backward()
    assert calls == [1] and masks.grad is not None


def _peak_bytes(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_kernels_use_far_less_memory_than_the_references():
    """The point of the kernels: no unfolded [B, K, N, H, W] neighbourhood, no hw x hw matrix."""
    image = torch.rand(1, 3, 256, 256, device=DEV)
    masks = torch.rand(1, 21, 256, 256, device=DEV)
    with torch.no_grad():
        ref = _peak_bytes(lambda: par(image, masks, backend="torch"))
        ker = _peak_bytes(lambda: par(image, masks, backend="cuda"))
    assert ker * 5 < ref, (ker, ref)


def test_cuda_kernels_pass_their_self_check(monkeypatch, caplog):
    """The check every process runs before the first kernel use (wsss/ops/selfcheck.py) passes on this GPU, and
    auto then serves CUDA tensors with the kernel (no warning, no fallback)."""
    import logging

    import wsss.ops.par_op as par_op
    import wsss.ops.random_walk_op as rw_op
    import wsss.ops.selfcheck as selfcheck

    monkeypatch.setattr(selfcheck, "_verdicts", {})
    monkeypatch.delenv("WSSS_OPS", raising=False)
    dev = torch.device(DEV, torch.cuda.current_device())
    assert par_op._self_check(dev) is None
    assert rw_op._self_check(dev) is None
    used = []
    kernel = par_op._par_kernel
    monkeypatch.setattr(par_op, "_par_kernel", lambda *a: used.append(1) or kernel(*a))
    with caplog.at_level(logging.INFO, logger="wsss.ops.selfcheck"):
        with torch.no_grad():
            par(torch.rand(1, 3, 16, 16, device=DEV), torch.rand(1, 2, 16, 16, device=DEV))
            random_walk(torch.rand(1, 2, 8, 8, device=DEV), torch.rand(1, 34, 8, 8, device=DEV), 5, 10.0, 3)
    assert len(used) == 3  # self-check float32 + float64, then the call itself
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "wsss.ops.selfcheck"]
    assert sum("self-check on cuda" in r.getMessage() and "passed" in r.getMessage() for r in caplog.records) == 2
