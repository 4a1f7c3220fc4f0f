"""A process pool over images for the CPU-bound per-image stages (CRF, pseudo masks), with a progress bar."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from tqdm import tqdm

from wsss import dist
from wsss.errors import WSSSError


def resolve_workers(num_workers: int | None) -> int:
    """``0``/None -> this rank's share of the cores this process may use (all of them without torchrun;
    ``cores // LOCAL_WORLD_SIZE`` under torchrun, since every rank of the machine starts its own pool);
    otherwise the number given (>= 1)."""
    if not num_workers:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, cores // dist.local_world_size())
    if int(num_workers) < 0:
        raise WSSSError(f"num_workers must be >= 0 (0 = all cores), got {num_workers}")
    return int(num_workers)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the process that started it dies (kill -9, OOM killer, a crash).

    Why: orphaned CRF workers (~570 MB each) kept writing masks after their parent was killed and then hung for
    minutes. Linux delivers SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and as a
    second line of defence, a daemon thread exits the worker once its parent pid changes.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_init(parent_pid: int | None = None) -> None:
    """Pool workers run one image at a time each: keep OpenCV from adding threads on top of the processes.
    They die with their parent, and leave Ctrl-C to it (which stops them: no traceback from every worker)."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover - cv2 is a dependency, but threads are only a speed matter
        pass


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 3.0) -> None:
    """Terminate a pool's workers now (SIGTERM, then SIGKILL after ``grace`` seconds) instead of waiting for
    their running tasks: on an error or an interrupt nothing they would still write is wanted."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.time() + grace
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.time()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
    pool.shutdown(wait=False, cancel_futures=True)


def map_images(fn: Callable[[Any], str | None], tasks: Sequence[Any], num_workers: int | None, desc: str,
               start_method: str | None = None) -> int:
    """Run ``fn(task)`` for every task, in a process pool when ``num_workers`` != 1, with a progress bar.

    ``fn`` must be a module-level function (picklable, so 'fork' and 'spawn' both work) that writes its own
    output atomically and returns None, or a one-line error message (returned rather than raised: wsss's
    exceptions take extra constructor arguments and do not survive pickling). The first error stops the
    pool and is raised here as a WSSSError. Returns the number of tasks done.

    Workers die with this process (:func:`_die_with_parent`); an error, Ctrl-C or SIGTERM here (the CLI turns
    SIGTERM into KeyboardInterrupt) terminates them at once rather than letting them finish their images.

    ``start_method``: default 'spawn' everywhere. 'fork' starts faster but copies the parent's thread pools
    (OpenCV, OpenMP) in a broken state: a forked worker that touches them can hang forever (seen with
    ``cv2.setNumThreads`` in a child of a process that had used OpenCV threads).
    """
    workers = min(resolve_workers(num_workers), max(1, len(tasks)))
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not dist.is_main() or not tasks)
    try:
        if workers == 1:
            for t in tasks:
                err = fn(t)
                if err:
                    raise WSSSError(err)
                bar.update(1)
            return len(tasks)
        method = start_method or "spawn"
        ctx = multiprocessing.get_context(method)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        try:
            futures = [pool.submit(fn, t) for t in tasks]
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_EXCEPTION, timeout=0.5)
                for f in done:
                    err = f.result()
                    if err:
                        raise WSSSError(err)
                    bar.update(1)
        except BaseException:
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
        return len(tasks)
    finally:
        bar.close()
