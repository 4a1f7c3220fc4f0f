"""A self-check before first use of a compiled kernel: run it once on a small fixed input beside the PyTorch
reference, and trust it for the rest of the process only if the two agree.

Why: the CUDA kernels compile in CI without a GPU, so the first process on a new GPU (architecture, driver,
toolkit) is the first to execute them. A kernel that crashes or returns wrong numbers there must not silently
corrupt every pseudo mask: under ``WSSS_OPS=auto`` the op logs ONE warning naming the op and the problem and
uses the reference for the rest of the process; under ``WSSS_OPS=cuda`` (no fallback) it raises
:class:`KernelSelfCheckError` instead.

The check itself is device-agnostic: it takes the kernel and reference callables and an input builder, so the
CPU tests drive the same code with the C++ twin or an injected broken kernel. The verdict is cached per
(op, device) for the process, so the check costs one tiny call per op and GPU.

Tolerances are the parity tests' (tests/gpu/test_ops_cuda_parity.py): max |kernel - ref| / max |ref| below
1e-4 in float32; float64 inputs must agree to 1e-10 (the kernels compute in float64 for them; the parity tests
hold the CUDA kernel to 1e-12 against the C++ twin, the same code, and rounding differs only in summation order
against the reference).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

__all__ = ["TOLERANCES", "KernelSelfCheckError", "relative_error", "compare_with_reference", "kernel_verified"]

#: Largest accepted max |kernel - ref| / max |ref| per compute dtype (the GPU parity tests' bounds).
TOLERANCES: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float64: 1e-10}

#: A check: device -> None when the kernel agrees with the reference there, else a one-line problem.
Check = Callable[[torch.device], "str | None"]

_lock = threading.RLock()
_verdicts: dict[tuple[str, str], str | None] = {}  # (op, device) -> None (passed) or the problem


class KernelSelfCheckError(RuntimeError):
    """A forced kernel backend (``WSSS_OPS=cuda``) failed its self-check against the PyTorch reference."""


def _one_line(exc: BaseException) -> str:
    """'Type: first line of the message' (CUDA and compiler errors span many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| in float64 (inf for a shape mismatch, nan if either has a nan)."""
    if got.shape != ref.shape:
        return float("inf")
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    scale = ref.abs().max().clamp_min(1e-30)
    return ((got - ref).abs().max() / scale).item()


def compare_with_reference(kernel: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor],
                           make_inputs: Callable[[torch.dtype, torch.device], Sequence[torch.Tensor]],
                           device: torch.device, dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                           ) -> tuple[str | None, dict[str, float]]:
    """Run ``kernel(*inputs)`` and ``reference(*inputs)`` for each dtype on ``device`` and compare.

    make_inputs(dtype, device) builds the fixed inputs (deterministic: its own generator, never the global RNG).
    Returns (None, errors) when every dtype is within :data:`TOLERANCES`, else (the first problem, errors):
    a mismatch, a wrong output dtype, or the exception the kernel raised (a CUDA error surfaces at the
    synchronisation inside this function, not in some later, unrelated call). errors: dtype name -> rel. error.
    """
    errors: dict[str, float] = {}
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        try:
            with torch.no_grad():
                inputs = make_inputs(dtype, device)
                got = kernel(*inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                ref = reference(*inputs)
        except Exception as exc:  # CUDA errors, failed builds, argument checks: all mean "do not trust it"
            return f"{name} run raised {_one_line(exc)}", errors
        if got.dtype != ref.dtype:
            return f"{name} inputs gave a {got.dtype} result, the reference {ref.dtype}", errors
        err = relative_error(got, ref)
        errors[name] = err
        if not err <= TOLERANCES[dtype]:  # also catches nan
            shape = "" if got.shape == ref.shape else f" (shape {tuple(got.shape)} vs {tuple(ref.shape)})"
            return (f"{name} max relative error {err:.3g} > {TOLERANCES[dtype]:g} against the PyTorch "
                    f"reference{shape}"), errors
    return None, errors


def kernel_verified(op: str, device: torch.device, check: Check, strict: bool) -> bool:
    """True when ``op``'s kernel passed ``check`` on ``device`` (run once per process, then cached).

    On failure: strict (a forced backend) raises :class:`KernelSelfCheckError` (now and on every later call);
    otherwise ONE warning is logged per (op, device) and False is returned, so the caller uses the reference.
    """
    key = (op, str(device))
    with _lock:
        if key not in _verdicts:
            try:
                problem = check(device)
            except Exception as exc:  # a check that cannot even build its inputs is a failed check
                problem = f"self-check raised {_one_line(exc)}"
            _verdicts[key] = problem
            if problem is None:
                log.info("wsss.ops.%s: kernel self-check on %s passed", op, device)
            elif not strict:
                log.warning("wsss.ops.%s: the %s kernel failed its self-check (%s); using the PyTorch reference "
                            "for the rest of this process (slower, more memory)", op, device.type, problem)
        problem = _verdicts[key]
    if problem is not None and strict:
        raise KernelSelfCheckError(f"wsss.ops.{op}: the {device.type} kernel on {device} failed its self-check "
                                   f"({problem}); the forced 'cuda' backend allows no fallback, use 'auto' or 'torch'")
    return problem is None

