"""A process pool over images for the CPU-bound per-image stages (CRF, pseudo masks), with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
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


def _worker_init() -> None:
    """Pool workers run one image at a time each: keep OpenCV from adding threads on top of the processes."""
    try:
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover - cv2 is a dependency, but threads are only a speed matter
        pass


def map_images(fn: Callable[[Any], str | None], tasks: Sequence[Any], num_workers: int | None, desc: str,
               start_method: str | None = None) -> int:
    """Run ``fn(task)`` for every task, in a process pool when ``num_workers`` != 1, with a progress bar.

    ``fn`` must be a module-level function (picklable, so 'fork' and 'spawn' both work) that writes its own
    output atomically and returns None, or a one-line error message (returned rather than raised: wsss's
    exceptions take extra constructor arguments and do not survive pickling). The first error stops the
    pool and is raised here as a WSSSError. Returns the number of tasks done.

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
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            try:
                remaining = set(futures)
                while remaining:
                    done, remaining = wait(remaining, return_when=FIRST_EXCEPTION, timeout=0.5)
                    for f in done:
                        err = f.result()
                        if err:
                            raise WSSSError(err)
                        bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return len(tasks)
    finally:
        bar.close()
