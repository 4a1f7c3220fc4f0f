"""Fingerprints of the data a stage reads: per image id its file size, a content digest and its labels.

Why: artifacts depend on the images and labels, not on where they live. A stage's identity therefore holds the
digest of these per-id fingerprints instead of ``data.root``: moving the dataset to another machine keeps every
stage valid, while an edited labels CSV or a replaced image is detected (and the refusal names the ids).

Cost: the digest reads the first and last 64 KiB of each file (a replaced or re-encoded image changes its size
or those bytes in practice; a full hash of VOC train_aug would read 1.5 GB at every start). Digests are memoised
per (path, size, mtime) in this process and seeded from the stage folder's previous fingerprint file, so a re-run
on an unchanged machine reads no image.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

from wsss.data.base import SegDataset
from wsss.errors import InputError

CHUNK = 64 * 1024

#: (path, size, mtime_ns) -> digest, for this process.
_MEMO: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> tuple[str, int, int, str]:
    """(path, size, mtime_ns, digest) of a file: blake2b over its size, first and last 64 KiB."""
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    key = (p, st.st_size, st.st_mtime_ns)
    digest = _MEMO.get(key)
    if digest is None:
        h = hashlib.blake2b(str(st.st_size).encode(), digest_size=8)
        with open(p, "rb") as fh:
            h.update(fh.read(CHUNK))
            if st.st_size > 2 * CHUNK:
                fh.seek(-CHUNK, os.SEEK_END)
            h.update(fh.read(CHUNK))
        digest = h.hexdigest()
        _MEMO[key] = digest
    return p, st.st_size, st.st_mtime_ns, digest


def seed_memo(cache: Mapping[str, list] | None) -> None:
    """Reuse digests recorded earlier ({path: [size, mtime_ns, digest]}) for files that did not change since."""
    for p, (size, mtime_ns, digest) in (cache or {}).items():
        _MEMO.setdefault((p, int(size), int(mtime_ns)), str(digest))


def memo_for(paths: list[str]) -> dict[str, list]:
    """The memo entries of ``paths`` as {path: [size, mtime_ns, digest]} (to store beside the fingerprints)."""
    wanted = set(paths)
    return {p: [size, mtime, d] for (p, size, mtime), d in _MEMO.items() if p in wanted}


def split_fingerprint(ds: SegDataset, with_masks: bool = False) -> dict[str, str]:
    """{image_id: '<image digest>:<labels>[:<mask digest>]'} over the split, in id order.

    The class names are part of every entry's labels field, so renaming or reordering classes changes the
    identity. ``with_masks``: include the ground-truth masks (for stages whose artifacts depend on them:
    training on ground truth, evaluation); an id without a mask file fingerprints as 'nomask'.
    """
    classes = hashlib.blake2b("\n".join(ds.class_names).encode(), digest_size=4).hexdigest()
    out: dict[str, str] = {}
    for image_id in ds.ids:
        _, _, _, digest = file_digest(ds.image_path(image_id))
        labels = ",".join(str(c) for c in sorted(ds.labels.get(image_id, [])))
        entry = f"{digest}:{classes}/{labels}"
        if with_masks:
            mp = ds.mask_path(image_id)
            entry += ":" + (file_digest(mp)[3] if mp is not None and mp.is_file() else "nomask")
        out[image_id] = entry
    return out
