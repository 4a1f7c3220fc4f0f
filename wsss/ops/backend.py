"""Which implementation of an op runs: the PyTorch reference, the C++ CPU twin or the CUDA kernel.

Rules (``WSSS_OPS`` environment variable, read at every call, or the ``backend=`` argument of an op):

- unset / ``auto``: CUDA tensors use the CUDA kernel, compiled on first use; if that build fails the op falls
  back to the PyTorch reference with ONE warning per process. Before its first use on a device each kernel runs
  a self-check against the reference (:mod:`wsss.ops.selfcheck`); if it fails, ONE warning per op and device is
  logged and that op uses the reference for the rest of the process. CPU tensors use the PyTorch reference.
  Autograd: the kernels are forward-only, so when a gradient is needed the reference runs (it is
  differentiable).
- ``torch``: always the PyTorch reference.
- ``cuda``: the CUDA kernel, no fallback; CPU tensors, a failed build, a failed self-check or a needed gradient
  raise.
- ``cpp``: the C++ CPU twin of the kernels (same per-pixel code), no fallback; CUDA tensors, a failed build or
  a needed gradient raise. Used by the CPU parity tests and the CPU benchmark.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from wsss.ops.extension import ExtensionBuildError, cuda_build_possible, load_extension
from wsss.ops.selfcheck import Check, kernel_verified

log = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "BACKENDS", "resolve_backend", "checked_backend"]

ENV_VAR = "WSSS_OPS"
BACKENDS = ("auto", "torch", "cuda", "cpp")

_warned_fallback = False


def _requested(backend: str | None) -> str:
    choice = (backend if backend is not None else os.environ.get(ENV_VAR, "")).strip().lower() or "auto"
    if choice not in BACKENDS:
        source = "backend argument" if backend is not None else f"{ENV_VAR} environment variable"
        raise ValueError(f"{source} is {choice!r}; expected one of {', '.join(BACKENDS)}")
    return choice


def resolve_backend(op: str, device: torch.device, needs_grad: bool, backend: str | None = None) -> str:
    """Return 'torch', 'cpp' or 'cuda' for one call of ``op`` on tensors of ``device``.

    needs_grad: autograd is enabled and an input requires grad (the kernels have no backward).
    Raises ValueError for an unknown choice or a device the forced backend cannot serve, RuntimeError when a
    forced kernel would drop a gradient, ExtensionBuildError when a forced kernel cannot be built.
    """
    global _warned_fallback
    choice = _requested(backend)
    if choice == "torch":
        return "torch"
    if choice == "auto":
        if device.type != "cuda" or needs_grad:
            return "torch"
        if not cuda_build_possible():
            problem = "nvcc not found (set CUDA_HOME), so the CUDA kernels cannot be built"
        else:
            try:
                if load_extension() == "cuda":
                    return "cuda"
                problem = "the loaded extension was built without CUDA"
            except ExtensionBuildError as exc:
                problem = str(exc)
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(f"wsss.ops: CUDA kernels unavailable ({problem}); using the PyTorch reference "
                          f"implementations (slower, more memory). Set {ENV_VAR}=torch to silence this.",
                          RuntimeWarning, stacklevel=3)
        log.debug("%s: falling back to the PyTorch reference", op)
        return "torch"
    wanted_device = "cuda" if choice == "cuda" else "cpu"
    if device.type != wanted_device:
        raise ValueError(f"wsss.ops.{op}: {ENV_VAR}/backend={choice} runs on {wanted_device} tensors, got "
                         f"tensors on {device}; use backend 'auto' or 'torch'")
    if needs_grad:
        raise RuntimeError(f"wsss.ops.{op}: the {choice} kernel is forward-only and an input requires grad; "
                           f"wrap the call in torch.no_grad() or use backend 'torch' (differentiable)")
    if choice == "cuda" and not cuda_build_possible():
        raise ExtensionBuildError(f"wsss.ops.{op}: {ENV_VAR}/backend=cuda but nvcc was not found (set CUDA_HOME)")
    variant = load_extension()
    if choice == "cuda" and variant != "cuda":
        raise ExtensionBuildError(f"wsss.ops.{op}: the loaded extension has no CUDA kernels")
    return choice


def checked_backend(op: str, device: torch.device, needs_grad: bool, backend: str | None, check: Check) -> str:
    """:func:`resolve_backend`, plus the self-check before the first use of a CUDA kernel on ``device``.

    check: the op's self-check (``device -> None | problem``, see :mod:`wsss.ops.selfcheck`), run once per
    process and device. 'cuda' becomes 'torch' when it fails under auto; a forced 'cuda' raises
    KernelSelfCheckError. The C++ CPU twin ('cpp') is not self-checked: the CPU tests cover it in CI.
    """
    choice = resolve_backend(op, device, needs_grad, backend)
    if choice == "cuda" and not kernel_verified(op, device, check, strict=_requested(backend) == "cuda"):
        return "torch"
    return choice
