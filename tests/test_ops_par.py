"""PAR: the PyTorch reference against hand-written loops, and the C++ CPU twin of the kernels against it.

The C++ twin runs the same per-pixel functions as the CUDA kernels (wsss/ops/csrc/par.h), so these CPU tests
check the kernel's neighbour indexing, border clamping, softmax and channel chunking without a GPU. They
fail (not skip) when a C++ compiler is present but the extension does not build.
"""

from __future__ import annotations

import math
import shutil
import statistics

import pytest
import torch

import wsss.ops.par_op as par_module
from wsss.ops import ExtensionBuildError, load_extension, par, par_affinity_reference, par_neighbor_offsets
from wsss.ops import par_reference

HAS_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(scope="module")
def cpp_ops() -> None:
    """Build (or load from the cache) the extension once; a broken build errors every test that needs it."""
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler on PATH")
    load_extension()


def _ring(d: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in (-d, 0, d) for dx in (-d, 0, d) if (dy, dx) != (0, 0)]


def par_by_loops(image: torch.Tensor, masks: torch.Tensor, dilations, num_iter: int, w1: float, w2: float):
    """PAR written pixel by pixel from the formula (float64 Python scalars). Returns (masks, {offset: weight})."""
    b_, c_, h, w = image.shape
    k_ = masks.shape[1]
    offsets = [o for d in dilations for o in _ring(d)]
    img = image.double().tolist()
    dist = [math.hypot(dy, dx) for dy, dx in offsets]
    sd = statistics.stdev(dist)
    g = [-(v / (sd + 1e-8) / w1) ** 2 for v in dist]
    gmax = max(g)
    pos = [math.exp(v - gmax) for v in g]
    pos = [v / sum(pos) for v in pos]

    def clamp(v: int, n: int) -> int:
        return min(max(v, 0), n - 1)

    weights = {}  # (b, y, x) -> list over offsets
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                nbrs = [(clamp(y + dy, h), clamp(x + dx, w)) for dy, dx in offsets]
                logits = []
                stds = [statistics.stdev([img[b][c][ny][nx] for ny, nx in nbrs]) for c in range(c_)]
                for ny, nx in nbrs:
                    terms = [(abs(img[b][c][ny][nx] - img[b][c][y][x]) / (stds[c] + 1e-8) / w1) ** 2
                             for c in range(c_)]
                    logits.append(-sum(terms) / c_)
                top = max(logits)
                ex = [math.exp(v - top) for v in logits]
                weights[b, y, x] = [e / sum(ex) + w2 * p for e, p in zip(ex, pos)]
    m = masks.double().tolist()
    for _ in range(num_iter):
        new = [[[[0.0] * w for _ in range(h)] for _ in range(k_)] for _ in range(b_)]
        for b in range(b_):
            for y in range(h):
                for x in range(w):
                    wts = weights[b, y, x]
                    for k in range(k_):
                        new[b][k][y][x] = sum(
                            wt * m[b][k][clamp(y + dy, h)][clamp(x + dx, w)] for wt, (dy, dx) in zip(wts, offsets))
        m = new
    return torch.tensor(m, dtype=torch.float64), offsets, weights


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_par_neighbour_offsets_are_dilated_rings_in_order():
    offs = par_neighbor_offsets((1, 3))
    assert offs[:8] == [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    assert sorted(offs[8:]) == sorted(_ring(3))


def test_par_reference_matches_hand_written_loops():
    """Odd sizes, a dilation larger than the image (everything clamps), 2 iterations, float64."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    masks = torch.rand(2, 2, 5, 7, generator=g, dtype=torch.float64)
    dilations, w1, w2 = (1, 2, 9), 0.3, 0.05
    expected, offsets, weights = par_by_loops(image, masks, dilations, 2, w1, w2)
    got = par_reference(image, masks, dilations, num_iter=2, w1=w1, w2=w2)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    aff = par_affinity_reference(image, dilations, w1, w2)  # [B, N, H, W] in par_neighbor_offsets order
    order = [offsets.index(o) for o in par_neighbor_offsets(dilations)]
    for (b, y, x), wts in weights.items():
        torch.testing.assert_close(aff[b, :, y, x], torch.tensor([wts[i] for i in order], dtype=torch.float64))


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_par_scales_constant_masks_by_one_plus_w2(backend, cpp_ops):
    """The weights are a softmax plus w2 times a softmax, so a constant mask grows by (1 + w2) per step."""
    image = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    masks = torch.full((1, 4, 9, 11), 0.5)
    out = par(image, masks, dilations=(1, 2, 4), num_iter=3, w2=0.01, backend=backend)
    torch.testing.assert_close(out, torch.full_like(masks, 0.5 * 1.01 ** 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
@pytest.mark.parametrize("num_iter,dilations", [(0, (1, 3, 5, 12)), (1, (1, 3, 5, 12)), (4, (1, 3, 5, 12)),
                                                (3, (1, 2))])
def test_par_cpp_twin_matches_reference(dtype, tol, num_iter, dilations, cpp_ops):
    """Odd sizes and dilations, K = 10 (a full and a partial channel chunk of 8), even and odd iterations;
    dilation 12 clamps every pixel of the 11 x 13 image, (1, 2) leaves an interior (the no-clamp fast path)."""
    g = torch.Generator().manual_seed(2 + num_iter)
    image = torch.rand(2, 3, 11, 13, generator=g).to(dtype)
    masks = torch.rand(2, 10, 11, 13, generator=g).to(dtype)
    kwargs = dict(dilations=dilations, num_iter=num_iter, w1=0.3, w2=0.01)
    ref = par(image, masks, backend="torch", **kwargs)
    got = par(image, masks, backend="cpp", **kwargs)
    assert got.dtype == dtype and got.shape == masks.shape
    assert _rel_err(got, ref) < tol


def test_par_cpp_twin_takes_half_inputs(cpp_ops):
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 15, 9, generator=g).half()
    masks = torch.rand(1, 3, 15, 9, generator=g).half()
    got = par(image, masks, dilations=(1, 2), num_iter=5, backend="cpp")
    ref = par(image.float(), masks.float(), dilations=(1, 2), num_iter=5, backend="torch")
    assert got.dtype == torch.float16
    assert _rel_err(got, ref) < 2e-3  # one half rounding of the output


def test_par_env_var_selects_backend(monkeypatch, cpp_ops):
    calls = []
    monkeypatch.setattr(par_module, "par_reference", lambda *a: calls.append(1) or par_reference(*a))
    image, masks = torch.rand(1, 3, 6, 7), torch.rand(1, 2, 6, 7)
    monkeypatch.setenv("WSSS_OPS", "cpp")
    via_cpp = par(image, masks, num_iter=2)
    assert calls == []
    monkeypatch.setenv("WSSS_OPS", "torch")
    via_torch = par(image, masks, num_iter=2)
    assert calls == [1]
    torch.testing.assert_close(via_cpp, via_torch, rtol=1e-4, atol=1e-6)
    monkeypatch.delenv("WSSS_OPS")
    par(image, masks, num_iter=2)  # auto on CPU tensors: the reference
    assert calls == [1, 1]
    monkeypatch.setenv("WSSS_OPS", "cuda")
    with pytest.raises(ValueError, match="cuda tensors"):
        par(image, masks)
    monkeypatch.setenv("WSSS_OPS", "fast")
    with pytest.raises(ValueError, match="WSSS_OPS"):
        par(image, masks)


def test_par_gradient_flows_through_reference_and_kernels_refuse_it(cpp_ops):
    g = torch.Generator().manual_seed(4)
    image = torch.rand(1, 3, 4, 5, generator=g, dtype=torch.float64)
    masks = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: par(image, m, dilations=(1, 2), num_iter=2), (masks,),
                                    fast_mode=True)
    with pytest.raises(RuntimeError, match="forward-only"):
        par(image, masks, backend="cpp")
    with torch.no_grad():
        assert par(image, masks, dilations=(1, 2), num_iter=2, backend="cpp").shape == masks.shape


def test_par_rejects_bad_inputs():
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="resize the masks"):
        par(image, torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="dilations"):
        par(image, torch.rand(1, 2, 8, 8), dilations=(0, 1))
    with pytest.raises(ValueError, match="channels"):
        par(torch.rand(1, 9, 8, 8), torch.rand(1, 2, 8, 8))


def test_build_failure_is_not_swallowed_when_forced(monkeypatch):
    import wsss.ops.backend as backend

    def broken() -> str:
        raise ExtensionBuildError("compiler exploded")

    monkeypatch.setattr(backend, "load_extension", broken)
    with pytest.raises(ExtensionBuildError, match="compiler exploded"):
        par(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4), backend="cpp")
