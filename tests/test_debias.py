"""Biased-object removal: the counts and the biased-cluster decision on hand-made cluster maps (object + rail),
and the debias stage end to end on images whose colours are the clusters."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.refine.debias import BiasRule, BiasStats, remove_biased

# clusters: 0 = object of class 1, 1 = rail (class 1's context), 2 = object of class 2, 3 = other background
A = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])  # labels {1}: CAM 1 covers object AND rail
B = np.array([[2, 2, 1, 1], [3, 3, 1, 1]])  # labels {2}: CAM 2 on its object; the rail is CAM-free here
C = np.array([[1, 1, 1, 1], [3, 3, 3, 3]])  # no label (context only): all CAM-free
CAM_A = np.ones((1, 2, 4), np.float32)
CAM_B = (B == 2).astype(np.float32)[None]


def stats() -> BiasStats:
    s = BiasStats(num_classes=3, num_clusters=4)
    s.update(A, np.array([1]), CAM_A, 0.5)
    s.update(B, np.array([2]), CAM_B, 0.5)
    s.update(C, np.array([], np.int64), np.zeros((0, 2, 4), np.float32), 0.5)
    return s


def test_measures_equal_the_hand_counts() -> None:
    m = stats().measures()
    # class 1: CAM covers clusters 0, 1 in A (4 + 4 px); without class 1 (B, C): cluster 1 has 8 px, all CAM-free,
    # cluster 3 6 px CAM-free, cluster 2 2 px under CAM 2; densities without: [0, 8, 2, 6] / 16, with: [4, 4] / 8
    assert m["share"][0].tolist() == [0.5, 0.5, 0.0, 0.0]
    assert m["bg_rate"][0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert m["presence"][0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])
    # class 2: CAM covers only cluster 2; without class 2 (A, C): cluster 1 has 8 px of which 4 CAM-free (C)
    assert m["share"][1].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert m["bg_rate"][1].tolist() == [0.0, 0.5, 0.0, 1.0]
    assert m["presence"][1].tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])


def test_the_rail_cluster_is_biased_for_its_class_only_and_removed_from_its_cams() -> None:
    biased = stats().biased(BiasRule(cam_threshold=0.5))
    assert biased.tolist() == [[False, True, False, False], [False, False, False, False]]
    out = remove_biased(np.array([1]), CAM_A, A, biased)
    assert out[0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]  # object kept, rail gone
    assert np.array_equal(remove_biased(np.array([2]), CAM_B, B, biased), CAM_B)


def test_an_object_cluster_shared_with_another_class_is_not_background() -> None:
    # class 2's object looks like class 1's (cluster 0 in both): where class 1 is absent, cluster 0 is under CAM 2
    s = BiasStats(num_classes=3, num_clusters=2)
    s.update(np.array([[0, 1]]), np.array([1]), np.ones((1, 1, 2), np.float32), 0.5)
    s.update(np.array([[0, 1]]), np.array([2]), np.array([[[1.0, 0.0]]], np.float32), 0.5)
    assert s.measures()["bg_rate"][0].tolist() == [0.0, 1.0]
    assert s.biased(BiasRule(cam_threshold=0.5))[0].tolist() == [False, True]
