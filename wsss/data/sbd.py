"""SBD (Hariharan et al., ICCV 2011) for VOC's ``train_aug``: reading its ``cls/*.mat`` masks and the id list.

``train_aug`` is the usual WSSS / DeepLab training set: VOC 2012 ``train`` plus SBD ``train`` and ``val``, minus
VOC 2012 ``val`` (which must stay held out): 10,582 images. Its masks are SBD's class masks for SBD images and
VOC's own for the VOC train images SBD does not have. mmsegmentation's converter writes the same list as
``trainaug.txt`` and SBD's masks only; ``aug.txt`` there is SBD minus VOC train and val (9,118 ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from wsss.errors import InputError, WSSSError

#: Size of train_aug with the full VOC 2012 and SBD downloads (mmsegmentation's voc_aug converter asserts it).
TRAIN_AUG_SIZE = 10582
SBD_URL = "http://home.bharathh.info/pubs/codes/SBD/download.html (benchmark.tgz)"


def read_sbd_mat(path: str | Path, num_classes: int = 21) -> np.ndarray:
    """The class mask of one SBD ``cls/<id>.mat`` file: ``GTcls.Segmentation`` as [H, W] uint8 (0 background,
    1..20 the VOC classes; SBD has no 255 boundary band). A file without that field, or with labels outside
    ``0..num_classes-1``, is a one-line InputError."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        data = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # noqa: BLE001 - scipy raises several kinds on corrupt files
        raise InputError(path, f"unreadable .mat file ({type(e).__name__}: {e})") from e
    gt = data.get("GTcls")
    seg = getattr(gt, "Segmentation", None)
    if seg is None:
        raise InputError(path, "no GTcls.Segmentation in this file (expected SBD's dataset/cls/<id>.mat)")
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise InputError(path, f"GTcls.Segmentation has shape {seg.shape}, expected [H, W]")
    if seg.size and (seg.min() < 0 or seg.max() >= num_classes):
        raise InputError(path, f"labels {int(seg.min())}..{int(seg.max())} outside 0..{num_classes - 1}")
    return seg.astype(np.uint8)


def train_aug_ids(voc_train: Iterable[str], voc_val: Iterable[str], sbd_ids: Iterable[str]) -> list[str]:
    """(VOC train ∪ SBD ids) − VOC val, sorted: the train_aug list."""
    held_out = set(voc_val)
    return sorted((set(voc_train) | set(sbd_ids)) - held_out)


def check_size(ids: list[str], expected: int | None, source: str) -> None:
    """Refuse a train_aug of the wrong size (an incomplete download), unless ``expected`` is None."""
    if expected is not None and len(ids) != expected:
        raise WSSSError(f"{source}: train_aug has {len(ids)} ids, expected {expected:,} (VOC 2012 train + SBD "
                        f"train/val - VOC val); an incomplete VOC or SBD download? pass --expect {len(ids)} to "
                        f"accept this list")
