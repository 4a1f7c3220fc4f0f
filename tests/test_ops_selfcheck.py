"""The kernel self-check before first use (wsss/ops/selfcheck.py), on CPU.

The check is device-agnostic, so CI drives it with CPU tensors: ``wsss.ops.backend.resolve_backend`` is patched
to answer 'cuda' (what it answers for CUDA tensors when the CUDA build works), and the op's kernel entry point
(``_par_kernel`` / ``_random_walk_kernel``) is replaced by one that raises or returns wrong numbers, or left as
the real compiled path (the C++ twin on CPU tensors) for the passing case.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

import wsss.ops.backend as backend
import wsss.ops.par_op as par_op
import wsss.ops.random_walk_op as rw_op
import wsss.ops.selfcheck as selfcheck
from wsss.ops import KernelSelfCheckError, load_extension, par, par_reference, radius_offsets, random_walk
from wsss.ops import random_walk_reference
from wsss.ops.selfcheck import compare_with_reference, kernel_verified, relative_error

HAS_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch):
    """Every test starts with no cached verdict (and leaves the process's cache as it found it)."""
    monkeypatch.setattr(selfcheck, "_verdicts", {})
    monkeypatch.delenv("WSSS_OPS", raising=False)


@pytest.fixture
def as_if_cuda(monkeypatch):
    """Dispatch CPU tensors as the auto backend dispatches CUDA tensors whose CUDA build succeeded."""
    monkeypatch.setattr(backend, "resolve_backend", lambda *args, **kwargs: "cuda")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "wsss.ops.selfcheck" and r.levelno == logging.WARNING]


# --- the comparison itself -----------------------------------------------------------------------------------

def test_relative_error_is_max_abs_difference_over_max_abs_reference():
    ref = torch.tensor([1.0, -2.0, 4.0])
    assert relative_error(torch.tensor([1.0, -2.0, 3.5]), ref) == pytest.approx(0.5 / 4)
    assert relative_error(torch.tensor([1.5, -2.0, 4.0]), ref) == pytest.approx(0.5 / 4)
    assert relative_error(ref.clone(), ref) == 0.0
    assert relative_error(torch.zeros(2), ref) == float("inf")  # wrong shape never passes
    assert relative_error(torch.tensor([1.0, float("nan"), 4.0]), ref) != relative_error(ref, ref)


def _inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
    return (torch.linspace(1.0, 2.0, 12, dtype=dtype, device=device).view(3, 4),)


def _reference(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def test_comparison_uses_the_parity_tolerances_per_dtype():
    # 5e-5 relative: inside float32's 1e-4, outside float64's 1e-10 -> fails on float64, naming it
    problem, errors = compare_with_reference(lambda x: _reference(x) * (1 + 5e-5), _reference, _inputs, CPU)
    assert errors["float32"] == pytest.approx(5e-5, rel=0.05)
    assert problem is not None and problem.startswith("float64 max relative error")
    # 2e-4 in float32 only: fails on float32 (checked first)
    problem, _ = compare_with_reference(lambda x: _reference(x) * (1 + 2e-4), _reference, _inputs, CPU,
                                        dtypes=(torch.float32,))
    assert problem is not None and "> 0.0001" in problem
    # a kernel that rounds float64 work through float32 fails float64 ...
    problem, _ = compare_with_reference(lambda x: _reference(x).float().to(x.dtype), _reference, _inputs, CPU)
    assert problem is not None and problem.startswith("float64")
    # ... and one within 1e-12 (summation-order rounding) passes both
    problem, errors = compare_with_reference(lambda x: _reference(x) * (1 + 1e-12), _reference, _inputs, CPU)
    assert problem is None and errors["float64"] == pytest.approx(1e-12, rel=0.01)


def test_comparison_reports_exceptions_nans_and_wrong_dtypes():
    def crashing(x):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")

    problem, _ = compare_with_reference(crashing, _reference, _inputs, CPU)
    assert problem == "float32 run raised RuntimeError: CUDA error: an illegal memory access was encountered"
    problem, _ = compare_with_reference(lambda x: _reference(x) * float("nan"), _reference, _inputs, CPU)
    assert problem is not None and "nan" in problem
    problem, _ = compare_with_reference(lambda x: _reference(x).half(), _reference, _inputs, CPU)
    assert problem is not None and "torch.float16 result" in problem


# --- the verdict: cached per op and device, one warning, strict raises ---------------------------------------

def test_verdict_is_cached_per_op_and_device_with_one_warning(caplog):
    calls = []

    def failing(device):
        calls.append(("par", str(device)))
        return "float32 max relative error 0.5 > 0.0001"

    def passing(device):
        calls.append(("random_walk", str(device)))
        return None

    cuda0, cuda1 = torch.device("cuda", 0), torch.device("cuda", 1)
    with caplog.at_level(logging.INFO, logger="wsss.ops.selfcheck"):
        assert [kernel_verified("par", cuda0, failing, strict=False) for _ in range(3)] == [False] * 3
        assert kernel_verified("par", cuda1, failing, strict=False) is False
        assert [kernel_verified("random_walk", cuda0, passing, strict=False) for _ in range(2)] == [True, True]
    assert calls == [("par", "cuda:0"), ("par", "cuda:1"), ("random_walk", "cuda:0")]
    warned = _warnings(caplog)
    assert len(warned) == 2 and all("wsss.ops.par" in m and "0.5 > 0.0001" in m for m in warned)
    assert "PyTorch reference" in warned[0]
    # strict (WSSS_OPS=cuda) raises on the cached failure without rerunning the check
    with pytest.raises(KernelSelfCheckError, match=r"wsss.ops.par: .* cuda:0 failed its self-check .*0.5 > 0.0001"):
        kernel_verified("par", cuda0, failing, strict=True)
    assert len(calls) == 3


def test_a_check_that_cannot_build_its_inputs_fails_it(caplog):
    def broken_check(device):
        raise RuntimeError("no kernel image is available for execution on the device")

    with caplog.at_level(logging.WARNING, logger="wsss.ops.selfcheck"):
        assert kernel_verified("par", CPU, broken_check, strict=False) is False
    assert len(_warnings(caplog)) == 1 and "no kernel image" in _warnings(caplog)[0]


# --- the ops: fallback, raise, pass, through the real dispatch -----------------------------------------------

def _par_call():
    g = torch.Generator().manual_seed(1)
    image, masks = torch.rand(1, 3, 12, 14, generator=g), torch.rand(1, 4, 12, 14, generator=g)
    return (lambda **kw: par(image, masks, (1, 2), 2, **kw)), (lambda: par_reference(image, masks, (1, 2), 2))


def _rw_call():
    g = torch.Generator().manual_seed(2)
    offs = radius_offsets(3)
    x, aff = torch.rand(1, 3, 9, 10, generator=g), torch.rand(1, len(offs), 9, 10, generator=g)
    return (lambda **kw: random_walk(x, aff, offs, 4.0, 3, **kw)), (lambda: random_walk_reference(x, aff, offs, 4.0, 3))


OPS = {"par": (par_op, "_par_kernel", par_op.par_reference, _par_call),
       "random_walk": (rw_op, "_random_walk_kernel", rw_op.random_walk_reference, _rw_call)}


def _crashing(counter: list):
    def kernel(*args):
        counter.append(1)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return kernel


@pytest.mark.parametrize("op", sorted(OPS))
def test_failing_kernel_falls_back_to_the_reference_with_one_warning(op, as_if_cuda, monkeypatch, caplog):
    module, entry, _, make_call = OPS[op]
    counter: list = []
    monkeypatch.setattr(module, entry, _crashing(counter))
    call, reference = make_call()
    with caplog.at_level(logging.WARNING, logger="wsss.ops.selfcheck"):
        first, second = call(), call()
    assert torch.equal(first, reference()) and torch.equal(second, reference())
    assert counter == [1]  # tried once, in the self-check; never again in this process
    warned = _warnings(caplog)
    assert len(warned) == 1
    assert f"wsss.ops.{op}:" in warned[0] and "illegal memory access" in warned[0]


@pytest.mark.parametrize("op", sorted(OPS))
def test_wrong_numbers_kernel_falls_back_to_the_reference(op, as_if_cuda, monkeypatch, caplog):
    """A kernel off by 1 % (an indexing bug that still runs) is caught by the numbers, not by an exception."""
    module, entry, ref_fn, make_call = OPS[op]
    counter: list = []

    def off_by_one_percent(*args):
        counter.append(1)
        return ref_fn(*args) * 1.01

    monkeypatch.setattr(module, entry, off_by_one_percent)
    call, reference = make_call()
    with caplog.at_level(logging.WARNING, logger="wsss.ops.selfcheck"):
        out = [call() for _ in range(3)]
    assert all(torch.equal(o, reference()) for o in out)
    assert counter == [1]  # float32 already fails: float64 is never run
    warned = _warnings(caplog)
    assert len(warned) == 1 and f"wsss.ops.{op}:" in warned[0]
    assert "float32 max relative error 0.01 > 0.0001" in warned[0]


@pytest.mark.parametrize("op", sorted(OPS))
def test_forced_cuda_raises_instead_of_falling_back(op, as_if_cuda, monkeypatch, caplog):
    module, entry, _, make_call = OPS[op]
    counter: list = []
    monkeypatch.setattr(module, entry, _crashing(counter))
    monkeypatch.setenv("WSSS_OPS", "cuda")
    call, _ = make_call()
    with caplog.at_level(logging.WARNING, logger="wsss.ops.selfcheck"):
        for _ in range(2):
            with pytest.raises(KernelSelfCheckError, match=rf"wsss.ops.{op}: .*illegal memory access.*'torch'"):
                call()
        with pytest.raises(KernelSelfCheckError):
            call(backend="cuda")  # the argument forces it as the variable does
    assert counter == [1] and _warnings(caplog) == []  # raised, not warned; checked once


@pytest.mark.parametrize("op", sorted(OPS))
def test_correct_kernel_passes_the_check_and_is_then_used(op, as_if_cuda, monkeypatch, caplog):
    """The real compiled path (the C++ twin on CPU tensors) passes, then serves every call."""
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler on PATH")
    load_extension()
    module, entry, _, make_call = OPS[op]
    real = getattr(module, entry)
    counter: list = []

    def counting(*args):
        counter.append(args[0].dtype)
        return real(*args)

    monkeypatch.setattr(module, entry, counting)
    call, reference = make_call()
    with caplog.at_level(logging.INFO, logger="wsss.ops.selfcheck"):
        first = call()
        second = call()
    assert counter == [torch.float32, torch.float64, torch.float32, torch.float32]  # check (2 dtypes), 2 uses
    assert relative_error(first, reference()) < 1e-5 and torch.equal(first, second)
    assert _warnings(caplog) == []
    assert any("self-check on cpu passed" in r.getMessage() for r in caplog.records)


def test_reference_path_and_gradients_never_run_the_check(monkeypatch):
    """CPU tensors under auto, and calls that need a gradient, use the reference without a check."""
    ran = []
    monkeypatch.setattr(par_op, "_self_check", lambda device: ran.append(device))
    call, reference = _par_call()
    assert torch.equal(call(), reference())
    image = torch.rand(1, 3, 8, 8)
    masks = torch.rand(1, 2, 8, 8, requires_grad=True)
    par(image, masks, (1,), 1).sum().backward()
    assert masks.grad is not None and ran == []
