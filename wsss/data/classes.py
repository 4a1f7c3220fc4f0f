"""Class-name lists (index 0 = 'background') and the classes-file reader shared by every dataset reader.

VOC and COCO names are fixed here so a dataset root without ``classes.txt`` still gets the right names, and
so the COCO converter maps the 80 category ids (1..90 with gaps) onto contiguous indices 1..80 in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from wsss.errors import InputError

BACKGROUND = "background"

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# (COCO category id, name) for the 80 'thing' categories, in the standard order of instances_*.json.
_COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)

COCO_CLASSES: tuple[str, ...] = (BACKGROUND,) + tuple(name for _, name in _COCO_CATEGORIES)
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(cid for cid, _ in _COCO_CATEGORIES)
#: COCO category id (1..90 with gaps) -> contiguous class index 1..80 (0 stays background).
COCO_ID_TO_INDEX: dict[int, int] = {cid: i + 1 for i, cid in enumerate(COCO_CATEGORY_IDS)}

MAX_CLASSES = 255  # masks are uint8 with 255 = ignore, so indices 0..254


def normalize_class_names(names: Sequence[str], source: str | Path = "<class list>") -> list[str]:
    """Strip names, prepend 'background' if missing, and reject duplicates / a misplaced background.

    Returns the full list with 'background' at index 0 (length C, the number of classes incl. background).
    """
    out = [str(n).strip() for n in names if str(n).strip()]
    if not out or out[0].lower() != BACKGROUND:
        out.insert(0, BACKGROUND)
    else:
        out[0] = BACKGROUND
    lowered = [n.lower() for n in out]
    if BACKGROUND in lowered[1:]:
        pos = lowered.index(BACKGROUND, 1)
        raise InputError(source, f"'background' must be the first class, found at position {pos}")
    seen: set[str] = set()
    for n in out:
        if n in seen:
            raise InputError(source, f"class name '{n}' listed twice")
        seen.add(n)
    if len(out) < 2:
        raise InputError(source, "no foreground class names")
    if len(out) > MAX_CLASSES:
        raise InputError(source, f"{len(out)} classes do not fit uint8 masks (at most {MAX_CLASSES} incl. background)")
    return out


def read_class_names(path: str | Path) -> list[str]:
    """Read a classes file (one name per line, 'background' first or left out) -> names with background at 0."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "classes file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"unreadable classes file ({type(e).__name__}: {e})") from e
    return normalize_class_names(lines, source=path)
