"""Shared fixtures: the repo root on sys.path for subprocesses, a small synthetic dataset made once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for tool subprocesses: the repo importable, one thread, no GPU surprises."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


@pytest.fixture()
def one_thread():
    """One torch thread for the test, as tool subprocesses get (subprocess_env): on a busy 2-core runner more
    threads only contend. Modules that want it for every test wrap it in an autouse fixture of their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
