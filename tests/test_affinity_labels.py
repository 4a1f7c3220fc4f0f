"""Affinity supervision: confident seeds from a hand-made CAM, pair labels per offset with hand-counted totals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.ops import radius_offsets
from wsss.refine.affinity_labels import downsample_labels, pair_counts, pair_labels, seed_labels

I = 255  # ignore


def test_seed_labels_from_hand_made_cam():
    # Two classes (3 and 5) on a 3x4 image; thresholds fg 0.30 / bg 0.05 (IRN).
    cam3 = np.array([[0.90, 0.31, 0.30, 0.00],
                     [0.50, 0.20, 0.05, 0.00],
                     [0.00, 0.00, 0.06, 0.00]], np.float32)
    cam5 = np.array([[0.10, 0.00, 0.00, 0.00],
                     [0.60, 0.00, 0.00, 0.04],
                     [0.00, 0.00, 0.00, 1.00]], np.float32)
    seeds = seed_labels([3, 5], np.stack([cam3, cam5]), conf_fg=0.30, conf_bg=0.05)
    expected = np.array([[3, 3, I, 0],   # 0.30 is not > conf_fg: ignored
                         [5, I, 0, 0],   # 0.60 beats 0.50: class 5; 0.05 <= conf_bg: background
                         [0, 0, I, 5]], np.uint8)
    np.testing.assert_array_equal(seeds, expected)
    assert seeds.dtype == np.uint8


def test_seed_labels_without_classes_is_all_background():
    assert (seed_labels(np.zeros(0, np.int64), np.zeros((0, 2, 3), np.float32)) == 0).all()


def test_seed_labels_rejects_bad_thresholds():
    with pytest.raises(ValueError):
        seed_labels([1], np.zeros((1, 2, 2), np.float32), conf_fg=0.1, conf_bg=0.2)


def test_downsample_labels_takes_the_centre_of_each_cell():
    lab = torch.arange(64).reshape(8, 8)
    out = downsample_labels(lab, 4)
    np.testing.assert_array_equal(out.numpy(), [[18, 22], [50, 54]])
    # a size larger than the image clamps to the last row/column; a batch dimension is kept
    out = downsample_labels(lab[None], 4, size=(3, 2))
    assert out.shape == (1, 3, 2)
    np.testing.assert_array_equal(out[0, 2].numpy(), [58, 62])


GRID = torch.tensor([[0, 0, 1, I],
                     [0, 2, 1, 1],
                     [0, 0, I, 1]])


@pytest.mark.parametrize("offset, counts", [
    # counted by hand over the pairs (p, p + offset) inside the 3x4 grid above
    ((0, 1), {"bg_pos": 2, "fg_pos": 1, "neg": 3}),
    ((1, 0), {"bg_pos": 2, "fg_pos": 2, "neg": 2}),
    ((1, -1), {"bg_pos": 1, "fg_pos": 0, "neg": 3}),
    ((1, 1), {"bg_pos": 1, "fg_pos": 2, "neg": 2}),
    ((2, 3), {"bg_pos": 0, "fg_pos": 0, "neg": 1}),   # only (0,0)=0 with (2,3)=1
    ((0, 4), {"bg_pos": 0, "fg_pos": 0, "neg": 0}),   # partner always outside the grid
])
def test_pair_labels_hand_counted(offset, counts):
    bg, fg, neg = pair_labels(GRID[None], [offset])
    assert bg.shape == (1, 1, 3, 4) and bg.dtype == torch.bool
    assert pair_counts(bg, fg, neg) == counts
    assert not (bg & fg).any() and not (bg & neg).any() and not (fg & neg).any()


def test_pair_labels_mark_the_right_pixel():
    bg, fg, neg = pair_labels(GRID[None], [(0, 1), (1, 0)])
    assert bg[0, 0, 0, 0] and neg[0, 0, 0, 1] and fg[0, 0, 1, 2]   # (0,0)-(0,1) bg, (0,1)-(0,2) neg, (1,2)-(1,3) fg
    assert fg[0, 1, 0, 2] and not (bg | fg | neg)[0, 1, 1, 2]        # (0,2)-(1,2) fg; (1,2)-(2,2) has an ignore


def test_pair_labels_match_brute_force_over_all_pairs():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 7, 9), generator=g)
    labels[labels == 3] = I
    offsets = radius_offsets(4)
    bg, fg, neg = pair_labels(labels, offsets)
    for b in range(2):
        for e, (dy, dx) in enumerate(offsets):
            for y in range(7):
                for x in range(9):
                    ty, tx = y + dy, x + dx
                    a = int(labels[b, y, x])
                    o = int(labels[b, ty, tx]) if 0 <= ty < 7 and 0 <= tx < 9 else I
                    ok = a != I and o != I
                    assert bool(bg[b, e, y, x]) == (ok and a == o == 0)
                    assert bool(fg[b, e, y, x]) == (ok and a == o != 0)
                    assert bool(neg[b, e, y, x]) == (ok and a != o)
