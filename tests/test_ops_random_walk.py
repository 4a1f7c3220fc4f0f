"""Random walk: reference and dense formulation against a hand-built hw x hw matrix; C++ twin against both.

The C++ twin runs the per-pixel functions of the CUDA kernels (wsss/ops/csrc/random_walk.h), so these tests
check the kernel's edge mirroring, border handling and normalisation on CPU. They fail (not skip) when a C++
compiler is present but the extension does not build.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from wsss.ops import load_extension, radius_offsets, random_walk, random_walk_dense, random_walk_reference

HAS_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(scope="module")
def cpp_ops() -> None:
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler on PATH")
    load_extension()


def dense_walk_by_loops(x: torch.Tensor, affinity: torch.Tensor, offsets, beta: float, t: int) -> torch.Tensor:
    """Build A pixel by pixel (unit diagonal, both directions of every in-grid edge), T = rows of A^beta
    normalised to 1, and apply T t times. float64 numpy."""
    b_, c_, h, w = x.shape
    out = np.zeros((b_, c_, h * w))
    for b in range(b_):
        A = np.eye(h * w)
        for e, (dy, dx) in enumerate(offsets):
            for y in range(h):
                for xx in range(w):
                    ty, tx = y + dy, xx + dx
                    if 0 <= ty < h and 0 <= tx < w:
                        a = float(affinity[b, e, y, xx])
                        A[y * w + xx, ty * w + tx] = a
                        A[ty * w + tx, y * w + xx] = a
        P = A ** beta
        T = P / P.sum(axis=1, keepdims=True)
        v = x[b].double().reshape(c_, h * w).numpy().T  # [hw, C]
        for _ in range(t):
            v = T @ v
        out[b] = v.T
    return torch.from_numpy(out.reshape(b_, c_, h, w))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_radius_offsets_are_irn_half_disc():
    offs = radius_offsets(5)
    assert len(offs) == 34  # IRN's PathIndex(radius=5) search directions
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in offs)
    full = set(offs) | {(-dy, -dx) for dy, dx in offs}
    disc = {(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if 0 < dy * dy + dx * dx < 25}
    assert full == disc and len(full) == 68
    assert radius_offsets(1) == []


@pytest.mark.parametrize("t", [1, 3])
def test_random_walk_matches_hand_built_dense_matrix(t):
    """7 x 9 grid, radius 3 (14 offsets reaching past every border), beta 2.5."""
    g = torch.Generator().manual_seed(t)
    offs = radius_offsets(3)
    x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64)
    aff = torch.rand(2, len(offs), 7, 9, generator=g, dtype=torch.float64)
    expected = dense_walk_by_loops(x, aff, offs, 2.5, t)
    torch.testing.assert_close(random_walk_reference(x, aff, offs, beta=2.5, t=t), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(random_walk_dense(x, aff, offs, beta=2.5, t=t), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("t", [1, 4])
def test_random_walk_cpp_twin_matches_hand_built_dense_matrix(t, cpp_ops):
    g = torch.Generator().manual_seed(10 + t)
    offs = radius_offsets(3)
    x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64)
    aff = torch.rand(2, len(offs), 7, 9, generator=g, dtype=torch.float64)
    expected = dense_walk_by_loops(x, aff, offs, 2.5, t)
    torch.testing.assert_close(random_walk(x, aff, offs, beta=2.5, t=t, backend="cpp"), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
@pytest.mark.parametrize("t", [0, 1, 6])
def test_random_walk_cpp_twin_matches_reference(dtype, tol, t, cpp_ops):
    """Odd grid, radius 4, C = 10 (a full and a partial channel chunk), beta 10, even and odd step counts;
    the 9 x 11 grid has both border pixels and an interior (the unchecked fast path)."""
    g = torch.Generator().manual_seed(20 + t)
    offs = radius_offsets(4)
    x = torch.rand(2, 10, 9, 11, generator=g).to(dtype)
    aff = torch.rand(2, len(offs), 9, 11, generator=g).to(dtype)
    ref = random_walk(x, aff, offs, beta=10.0, t=t, backend="torch")
    got = random_walk(x, aff, offs, beta=10.0, t=t, backend="cpp")
    assert got.dtype == dtype and got.shape == x.shape
    assert _rel_err(got, ref) < tol


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_random_walk_keeps_constants_and_zero_affinity_is_identity(backend, cpp_ops):
    g = torch.Generator().manual_seed(5)
    aff = torch.rand(1, 34, 8, 6, generator=g)
    const = torch.full((1, 2, 8, 6), 0.25)
    torch.testing.assert_close(random_walk(const, aff, 5, beta=3.0, t=7, backend=backend), const)
    x = torch.rand(1, 2, 8, 6, generator=g)
    torch.testing.assert_close(random_walk(x, torch.zeros_like(aff), 5, t=7, backend=backend), x)


def test_random_walk_cpp_twin_takes_half_inputs_and_tensor_offsets(cpp_ops):
    g = torch.Generator().manual_seed(6)
    offs = torch.tensor(radius_offsets(5))
    x = torch.rand(1, 21, 13, 10, generator=g).half()
    aff = torch.rand(1, len(offs), 13, 10, generator=g).half()
    got = random_walk(x, aff, offs, beta=10.0, t=16, backend="cpp")
    ref = random_walk(x.float(), aff.float(), offs, beta=10.0, t=16, backend="torch")
    assert got.dtype == torch.float16
    assert _rel_err(got, ref) < 2e-3


def test_random_walk_gradient_through_reference_and_kernels_refuse_it(cpp_ops):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    aff = torch.rand(1, 4, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    offs = [(0, 1), (1, -1), (1, 0), (2, 1)]
    assert torch.autograd.gradcheck(lambda a, b: random_walk(a, b, offs, beta=2.0, t=2), (x, aff),
                                    fast_mode=True)
    with pytest.raises(RuntimeError, match="forward-only"):
        random_walk(x, aff, offs, backend="cpp")


def test_random_walk_rejects_bad_offsets_and_shapes():
    x, aff = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    with pytest.raises(ValueError, match="half set"):
        random_walk(x, aff, [(0, 1), (0, -1)])
    with pytest.raises(ValueError, match="duplicates"):
        random_walk(x, aff, [(1, 0), (1, 0)])
    with pytest.raises(ValueError, match="E=34"):
        random_walk(x, aff, 5)
