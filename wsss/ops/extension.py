"""Build and load the compiled wsss ops (``torch.ops.wsss_ops.*``) on first use.

Why a JIT build: the kernels are small and the toolkit is on every machine that trains (g++ and ninja come
with the install; nvcc with CUDA), so ``torch.utils.cpp_extension.load`` compiles them once into the torch
extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and later runs reuse the
cached library (a rebuild happens only when a source or flag changes).

Two variants, never both in one process (they register the same operator names):

- ``wsss_ops_cuda``: CPU twin + CUDA kernels, built when ``torch.cuda.is_available()`` and nvcc is found;
- ``wsss_ops_cpu``: CPU twin only, built everywhere else (about 15 s on 2 cores).

The sources avoid ``torch/extension.h`` and pybind11 (operators are registered with ``TORCH_LIBRARY`` and the
library is loaded with ``torch.ops.load_library``), which keeps a cold build to seconds, not minutes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

__all__ = ["CSRC_DIR", "CPU_SOURCES", "CUDA_SOURCES", "ExtensionBuildError", "cuda_build_possible",
           "load_extension", "loaded_variant"]

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("ops.cpp", "par_cpu.cpp", "random_walk_cpu.cpp")
CUDA_SOURCES = ("ops_cuda.cpp", "par_cuda.cu", "random_walk_cuda.cu")

_lock = threading.Lock()
_variant: str | None = None  # "cpu" or "cuda" once loaded
_failure: str | None = None  # message of the first failed build; not retried in this process


class ExtensionBuildError(RuntimeError):
    """The C++/CUDA extension could not be compiled or loaded."""


def cuda_build_possible() -> bool:
    """True when a CUDA device is visible and nvcc can be found (so the CUDA variant can be built)."""
    if not torch.cuda.is_available():
        return False
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    return home is not None and (Path(home, "bin", "nvcc").exists() or shutil.which("nvcc") is not None)


def loaded_variant() -> str | None:
    """'cpu' or 'cuda' when the extension is loaded in this process, else None."""
    return _variant


def load_extension() -> str:
    """Compile (first time) and load the extension; return the variant loaded, 'cpu' or 'cuda'.

    Thread-safe and idempotent. A failed build raises :class:`ExtensionBuildError` with the compiler's
    message, now and on every later call in this process (no repeated multi-second rebuild attempts).
    """
    global _variant, _failure
    with _lock:
        if _variant is not None:
            return _variant
        if _failure is not None:
            raise ExtensionBuildError(_failure)
        variant = "cuda" if cuda_build_possible() else "cpu"
        try:
            _build_and_load(variant)
        except Exception as exc:  # compiler errors come as RuntimeError / CalledProcessError / OSError
            _failure = f"building the wsss ops {variant} extension failed: {type(exc).__name__}: {exc}"
            raise ExtensionBuildError(_failure) from exc
        _variant = variant
        return variant


def _build_and_load(variant: str) -> None:
    from torch.utils import cpp_extension

    with_cuda = variant == "cuda"
    sources = [str(CSRC_DIR / s) for s in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
    defines = ["-DWSSS_WITH_CUDA"] if with_cuda else []
    name = f"wsss_ops_{variant}"
    where = os.environ.get("TORCH_EXTENSIONS_DIR") or "~/.cache/torch_extensions"
    log.info("building/loading %s (compiled once, cached under %s)", name, where)
    start = time.perf_counter()
    cpp_extension.load(
        name=name,
        sources=sources,
        extra_cflags=["-O3", "-fopenmp", *defines],  # -fopenmp: at::parallel_for runs on all cores
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", *defines] if with_cuda else None,
        extra_include_paths=[str(CSRC_DIR)],
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=os.environ.get("WSSS_OPS_VERBOSE_BUILD", "") not in ("", "0"),
    )
    if bool(torch.ops.wsss_ops.has_cuda()) != with_cuda:
        raise RuntimeError(f"{name} loaded but reports has_cuda={not with_cuda}; a stale library is cached")
    log.info("%s ready in %.1f s", name, time.perf_counter() - start)
