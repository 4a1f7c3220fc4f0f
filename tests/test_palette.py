"""Palette masks: VOC colours, round trip, one-line errors for bad masks and images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.image_io import read_image
from wsss.data.palette import colorize, load_mask, save_mask, voc_colormap
from wsss.errors import InputError


def test_voc_colormap_known_entries() -> None:
    cmap = voc_colormap()
    assert cmap[1].tolist() == [128, 0, 0] and cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]


def test_mask_roundtrip_and_range_check(tmp_path: Path) -> None:
    m = np.array([[0, 1], [20, 255]], dtype=np.uint8)
    save_mask(tmp_path / "m.png", m)
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert np.array_equal(load_mask(tmp_path / "m.png", 21), m)
    assert colorize(m)[0, 1].tolist() == [128, 0, 0]
    with pytest.raises(InputError, match=r"m.png: mask has labels \[20\] outside 0..5"):
        load_mask(tmp_path / "m.png", 6)


def test_bad_images_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.jpg: image file not found"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="corrupt.jpg: corrupt or unsupported image"):
        read_image(tmp_path / "corrupt.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg: image file is empty"):
        read_image(tmp_path / "empty.jpg")
