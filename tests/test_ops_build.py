"""The compiled ops build: the C++ extension loads and registers its ops, every .cu file compiles with nvcc
(compile-only, so CI without a GPU still catches a broken kernel), and the CUDA fallback warns once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
import time
import warnings
from pathlib import Path

import pytest
import torch

import wsss.ops.backend as backend
from wsss.ops import ExtensionBuildError, load_extension
from wsss.ops.extension import CSRC_DIR, CUDA_SOURCES

HAS_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    candidate = Path(home, "bin", "nvcc") if home else None
    return str(candidate) if candidate is not None and candidate.exists() else None


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on PATH")
def test_extension_builds_and_registers_ops():
    variant = load_extension()  # raises ExtensionBuildError with the compiler output if the build is broken
    assert variant == ("cuda" if torch.cuda.is_available() else "cpu") or variant == "cpu"
    ops = torch.ops.wsss_ops
    for name in ("par_weights", "par_propagate", "rw_prepare", "rw_propagate"):
        assert hasattr(ops, name)
    assert bool(ops.has_cuda()) == (variant == "cuda")
    with pytest.raises(RuntimeError, match="PAR needs"):  # the C++ argument checks reach Python
        ops.par_weights(torch.rand(1, 3, 4, 4), torch.empty(1, 8, 4, 4), [0], 0.3, 0.01)


def _cuda_include_dirs(nvcc: str, scratch: Path) -> list[str]:
    """The include directories nvcc itself uses (cuda_runtime_api.h for the c10/cuda headers)."""
    dummy = scratch / "empty.cu"
    dummy.write_text("")
    dry = subprocess.run([nvcc, "--dryrun", "-c", str(dummy), "-o", str(scratch / "empty.o")],
                         capture_output=True, text=True)
    dirs = []
    for line in (dry.stdout + dry.stderr).splitlines():
        if "INCLUDES=" in line:
            dirs += re.findall(r'-I"?([^"\s]+)', line)
            dirs += re.findall(r'"-isystem"\s+"([^"]+)"', line)
    return [d for d in dirs if Path(d).is_dir()]


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not on PATH")
def test_cuda_sources_compile_with_nvcc(tmp_path):
    """nvcc -c on every .cu file, and the CUDA-only host code (ops_cuda.cpp, ops.cpp's CUDA registrations)
    through the host compiler with torch's headers, in parallel. The .cu files include no torch header, so
    nvcc takes seconds; parsing torch's headers for the host code dominates (~10 s on an idle core)."""
    from torch.utils import cpp_extension

    nvcc = _nvcc()
    flags = ["-std=c++20", "-DWSSS_WITH_CUDA", f"-I{CSRC_DIR}"]
    commands = {name: [nvcc, "-c", str(CSRC_DIR / name), "-o", str(tmp_path / f"{name}.o"), "-O3",
                       *cpp_extension.COMMON_NVCC_FLAGS, "--compiler-options", "-fPIC", *flags]
                for name in CUDA_SOURCES if name.endswith(".cu")}
    if HAS_COMPILER:
        # One translation unit for both CUDA-only host files: torch's headers are parsed once.
        host = tmp_path / "cuda_host_check.cpp"
        host.write_text(f'#include "{CSRC_DIR / "ops.cpp"}"\n#include "{CSRC_DIR / "ops_cuda.cpp"}"\n')
        cxx = shutil.which("c++") or shutil.which("g++")
        includes = [*cpp_extension.include_paths(), sysconfig.get_path("include"),
                    *_cuda_include_dirs(nvcc, tmp_path)]
        commands["ops.cpp + ops_cuda.cpp (WSSS_WITH_CUDA)"] = [
            cxx, "-fsyntax-only", str(host), *flags, *[a for inc in includes for a in ("-isystem", inc)]]
    start = time.perf_counter()
    jobs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, cmd in commands.items()}
    failures = []
    for name, proc in jobs.items():
        output, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            failures.append(f"--- {name} (exit {proc.returncode}) ---\n{output[-4000:]}")
    assert not failures, "\n".join(failures)
    for name in CUDA_SOURCES:
        if name.endswith(".cu"):
            assert (tmp_path / f"{name}.o").stat().st_size > 0
    print(f"CUDA compile-only check: {time.perf_counter() - start:.1f} s")


def test_cuda_build_failure_falls_back_to_reference_with_one_warning(monkeypatch):
    """auto + CUDA tensors + a broken build -> the reference, warned once per process; forced cuda raises."""

    def broken() -> str:
        raise ExtensionBuildError("nvcc exploded")

    monkeypatch.setattr(backend, "load_extension", broken)
    monkeypatch.setattr(backend, "cuda_build_possible", lambda: True)
    monkeypatch.setattr(backend, "_warned_fallback", False)
    monkeypatch.delenv("WSSS_OPS", raising=False)
    cuda = torch.device("cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.resolve_backend("par", cuda, needs_grad=False) == "torch"
        assert backend.resolve_backend("random_walk", cuda, needs_grad=False) == "torch"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "nvcc exploded" in messages[0]
    with pytest.raises(ExtensionBuildError, match="nvcc exploded"):
        backend.resolve_backend("par", cuda, needs_grad=False, backend="cuda")
    # a needed gradient never touches the kernels, and CPU tensors use the reference under auto
    assert backend.resolve_backend("par", cuda, needs_grad=True) == "torch"
    assert backend.resolve_backend("par", torch.device("cpu"), needs_grad=False) == "torch"
