"""ToCo's token contrast losses and pseudo relations on hand-made tensors (wsss.refine.token_contrast,
wsss.refine.toco_pseudo)."""

from __future__ import annotations

import math

import pytest
import torch

from wsss.refine.token_contrast import (RELATION_IGNORE, RELATION_NEG, RELATION_POS, ctc_loss, ptc_loss,
                                        relation_from_labels)
from wsss.refine.toco_pseudo import (ROI_BACKGROUND, ROI_FOREGROUND, ROI_UNCERTAIN, cams_to_labels,
                                     normalize_cams, par_refined_labels, pool_labels_to_grid, sample_local_crops,
                                     uncertainty_map)

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny tensors gain nothing from more, and a busy machine slows them down a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


P, N, I = RELATION_POS, RELATION_NEG, RELATION_IGNORE


# ---------------------------------------------------------------- relations
def test_relation_from_labels_marks_pos_neg_ignore_and_diagonal():
    rel = relation_from_labels(torch.tensor([[1, 1, 0, 255]]))
    expected = torch.tensor([[[I, P, N, I],
                              [P, I, N, I],
                              [N, N, I, I],
                              [I, I, I, I]]], dtype=torch.uint8)
    assert torch.equal(rel, expected)


def test_pseudo_relations_from_hand_made_aux_cam_with_two_thresholds():
    # 2 foreground classes, 1 x 4 tokens; class 2 absent from the image, so its strong score is ignored
    cam = torch.tensor([[[[0.9, 0.8, 0.5, 0.1]],     # class 1
                         [[0.0, 0.1, 0.2, 0.95]]]])   # class 2 (not in the image)
    labels = torch.tensor([[1.0, 0.0]])
    tok = cams_to_labels(cam, labels, low=0.25, high=0.7)
    assert tok.tolist() == [[[1, 1, 255, 0]]]  # > high: class 1; (low, high]: ignore; <= low: background
    rel = relation_from_labels(tok)
    expected = torch.tensor([[[I, P, I, N],
                              [P, I, I, N],
                              [I, I, I, I],
                              [N, N, I, I]]], dtype=torch.uint8)
    assert torch.equal(rel, expected)


def test_uncertainty_map_three_bands():
    cam = torch.tensor([[[[0.1, 0.25, 0.5, 0.7, 0.9]]]])
    roi = uncertainty_map(cam, torch.tensor([[1.0]]), low=0.25, high=0.7)
    assert roi.tolist() == [[[ROI_BACKGROUND, ROI_BACKGROUND, ROI_UNCERTAIN, ROI_FOREGROUND, ROI_FOREGROUND]]]


def test_normalize_cams_min_max_per_map():
    cam = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]])
    out = normalize_cams(cam, eps=0.0)
    assert torch.allclose(out, torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))


# ---------------------------------------------------------------- PTC
def test_ptc_identical_tokens_gives_half():
    tokens = torch.ones(1, 4, 8)  # [B, N, D], all the same direction
    rel = relation_from_labels(torch.tensor([[1, 1, 2, 2]]))
    # positives: |cos| = 1 -> 1 - 1 = 0; negatives: |cos| = 1 -> 1; 0.5 * 0 + 0.5 * 1
    assert ptc_loss(tokens, rel).item() == pytest.approx(0.5, abs=1e-6)


def test_ptc_hand_computed_value():
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]]])
    rel = relation_from_labels(torch.tensor([[1, 1, 2]]))
    c = 1 / math.sqrt(2)
    # one positive pair (both orders): |cos(t0, t1)| = c; negatives (0,2), (1,2) both orders: 0, c
    expected = 0.5 * (1 - c) + 0.5 * (0 + c + 0 + c) / 4
    assert ptc_loss(tokens, rel).item() == pytest.approx(expected, abs=1e-6)


def test_ptc_perfectly_separated_tokens_is_zero():
    d = 6
    e1, e2 = torch.eye(d)[0], torch.eye(d)[1]
    tokens = torch.stack([2 * e1, e1, 0.5 * e1, 3 * e2, e2, 0.1 * e2])[None]  # [1, 6, D]
    rel = relation_from_labels(torch.tensor([[1, 1, 1, 0, 0, 0]]))
    assert ptc_loss(tokens, rel).item() == pytest.approx(0.0, abs=1e-6)


def test_ptc_accepts_token_maps_and_ignores_unknown_tokens():
    torch.manual_seed(0)
    maps = torch.randn(2, 5, 3, 3)  # [B, D, h, w]
    labels = torch.tensor([[1, 1, 0, 255, 2, 2, 0, 1, 255], [0, 0, 1, 1, 255, 255, 1, 0, 0]])
    rel = relation_from_labels(labels)
    flat = maps.flatten(2).transpose(1, 2)  # [B, N, D]
    assert ptc_loss(maps, rel).item() == pytest.approx(ptc_loss(flat, rel).item(), abs=1e-6)
    changed = maps.clone()
    changed[0, :, 1, 0] = torch.randn(5)  # token 3 of image 0 is ignored
    changed[1, :, 1, 1] = torch.randn(5)  # token 4 of image 1 is ignored
    assert ptc_loss(changed, rel).item() == pytest.approx(ptc_loss(maps, rel).item(), abs=1e-6)


def test_ptc_gradient_step_separates_tokens():
    torch.manual_seed(0)
    tokens = (torch.ones(1, 6, 4) + 0.05 * torch.randn(1, 6, 4)).requires_grad_()  # over-smoothed tokens
    rel = relation_from_labels(torch.tensor([[1, 1, 1, 0, 0, 0]]))
    opt = torch.optim.Adam([tokens], lr=0.05)
    first = ptc_loss(tokens, rel)
    for _ in range(50):
        opt.zero_grad()
        loss = ptc_loss(tokens, rel)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first.item()


def test_ptc_without_pairs_is_zero_and_differentiable():
    tokens = torch.randn(1, 3, 4, requires_grad=True)
    rel = relation_from_labels(torch.tensor([[255, 255, 1]]))
    loss = ptc_loss(tokens, rel)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(tokens.grad).all()


# ---------------------------------------------------------------- CTC
def test_ctc_one_positive_one_negative_is_softplus():
    teacher = torch.tensor([[[1.0, 0.0]]])  # [B=1, T=1, D]
    student = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])  # positive: cos 1; negative: cos 0
    positive = torch.tensor([[True, False]])
    t = 0.5
    expected = math.log(1 + math.exp((0 - 1) / t))
    assert ctc_loss(student, teacher, positive, t).item() == pytest.approx(expected, abs=1e-6)


def _ctc_by_loops(student, teacher, positive, t):
    """Direct transcription of the formula in ctc_loss's docstring (reference for the vectorised one)."""
    total, images = 0.0, 0
    for b in range(student.shape[0]):
        s = torch.nn.functional.normalize(student[b], dim=-1)
        tt = torch.nn.functional.normalize(teacher[b], dim=-1)
        pos = [j for j in range(s.shape[0]) if positive[b, j]]
        neg = [k for k in range(s.shape[0]) if not positive[b, k]]
        if not pos:
            continue
        acc = 0.0
        for ti in range(tt.shape[0]):
            for j in pos:
                e_pos = math.exp(float(tt[ti] @ s[j]) / t)
                e_neg = sum(math.exp(float(tt[ti] @ s[k]) / t) for k in neg)
                acc += -math.log(e_pos / (e_pos + e_neg))
        total += acc / (len(pos) * tt.shape[0])
        images += 1
    return total / images


def test_ctc_matches_loop_reference_on_hand_made_class_tokens():
    torch.manual_seed(1)
    student = torch.randn(3, 6, 5)
    teacher = torch.randn(3, 2, 5)
    positive = torch.tensor([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    got = ctc_loss(student, teacher, positive, temperature=0.5).item()
    assert got == pytest.approx(_ctc_by_loops(student, teacher, positive, 0.5), abs=1e-5)


def test_ctc_pulls_positive_towards_teacher_and_pushes_negative():
    teacher = torch.tensor([[[1.0, 0.0, 0.0]]])
    student = torch.tensor([[[0.6, 0.8, 0.0], [0.7, 0.0, 0.7]]], requires_grad=True)
    positive = torch.tensor([[True, False]])
    ctc_loss(student, teacher, positive, 0.5).backward()
    g = student.grad[0]
    assert g[0, 0] < 0  # gradient descent increases the positive's agreement with the teacher
    assert g[1, 0] > 0  # and decreases the negative's


def test_ctc_without_negatives_is_zero_with_finite_gradient():
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 2, 4)
    loss = ctc_loss(student, teacher, torch.ones(2, 3, dtype=torch.bool), 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(student.grad).all()


# ---------------------------------------------------------------- PAR labels, pooling, crops
def test_par_refined_labels_with_identity_refinement_equals_two_threshold_labels():
    cam = torch.tensor([[[[0.9, 0.8, 0.5, 0.1], [0.05, 0.95, 0.4, 0.3]],
                         [[0.2, 0.85, 0.1, 0.0], [0.0, 0.1, 0.6, 0.99]]]])  # [1, 2, 2, 4]
    labels = torch.tensor([[1.0, 1.0]])
    got = par_refined_labels(torch.zeros(1, 3, 2, 4), cam, labels, 0.25, 0.7, refine=lambda img, p: p,
                             down_scale=1)
    assert torch.equal(got, cams_to_labels(cam, labels, 0.25, 0.7))
    assert got.tolist() == [[[1, 2, 255, 0], [0, 1, 255, 2]]]


def test_par_refined_labels_keeps_absent_classes_out():
    cam = torch.tensor([[[[0.9, 0.1]], [[0.95, 0.99]]]])
    got = par_refined_labels(torch.zeros(1, 3, 1, 2), cam, torch.tensor([[1.0, 0.0]]), 0.25, 0.7,
                             refine=lambda img, p: p, down_scale=1)
    assert got.tolist() == [[[1, 0]]]


def test_pool_labels_to_grid_majority_and_mixed_cells():
    lab = torch.tensor([[[1, 1, 0, 2],
                         [1, 0, 2, 2],
                         [255, 255, 0, 0],
                         [255, 3, 0, 1]]])
    out = pool_labels_to_grid(lab, (2, 2), num_classes=4, min_fraction=0.5)
    # cell (0,0): three 1s -> 1; (0,1): three 2s -> 2; (1,0): three ignore -> ignore; (1,1): three 0s -> 0
    assert out.tolist() == [[[1, 2], [255, 0]]]
    strict = pool_labels_to_grid(lab, (2, 2), num_classes=4, min_fraction=0.8)
    assert strict.tolist() == [[[255, 255], [255, 255]]]


def test_sample_local_crops_avoid_confident_foreground_and_flag_background_crops():
    h, w, side = 12, 12, 4
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    image = torch.stack([ys, xs, ys * 0])[None]  # pixel values encode their coordinates
    roi = torch.full((1, h, w), ROI_BACKGROUND, dtype=torch.uint8)
    roi[0, :6, :6] = ROI_FOREGROUND
    roi[0, 6:, :6] = ROI_UNCERTAIN
    torch.manual_seed(0)
    crops, positive = sample_local_crops(image, roi, num_crops=20, crop_size=side, negative_max_fraction=0.2)
    assert crops.shape == (1, 20, 3, side, side) and positive.shape == (1, 20)
    for j in range(20):
        y0, x0 = int(crops[0, j, 0, 0, 0]), int(crops[0, j, 1, 0, 0])
        assert torch.equal(crops[0, j], image[0, :, y0:y0 + side, x0:x0 + side])  # an exact window
        cy, cx = y0 + side // 2, x0 + side // 2
        assert roi[0, cy, cx] != ROI_FOREGROUND
        not_bg = (roi[0, y0:y0 + side, x0:x0 + side] != ROI_BACKGROUND).float().mean().item()
        assert bool(positive[0, j]) == (not_bg > 0.2)
    assert positive.any() and (~positive).any()


def test_sample_local_crops_resizes_when_image_is_smaller_than_crop():
    image = torch.rand(2, 3, 8, 10)
    roi = torch.full((2, 8, 10), ROI_UNCERTAIN, dtype=torch.uint8)
    crops, positive = sample_local_crops(image, roi, num_crops=3, crop_size=16)
    assert crops.shape == (2, 3, 3, 16, 16) and bool(positive.all())


def test_par_refined_labels_with_real_par_fill_uncertain_pixels_of_the_object_colour():
    from functools import partial

    from wsss.ops import par

    image = torch.zeros(1, 3, 16, 16)
    image[:, 0, :, :8] = 1.0  # object colour on the left half, background colour on the right
    image[:, 2, :, 8:] = 1.0
    cam = torch.full((1, 1, 16, 16), 0.1)
    cam[..., :6] = 1.0
    cam[..., 6:8] = 0.5  # the object's uncertain border
    labels = torch.tensor([[1.0]])
    plain = cams_to_labels(cam, labels, 0.25, 0.7)
    assert (plain[..., 6:8] == 255).all()
    refined = par_refined_labels(image, cam, labels, 0.25, 0.7, partial(par, dilations=(1, 2, 4), num_iter=10),
                                 down_scale=1)
    assert (refined[..., :8] == 1).all()  # colour-consistent propagation claims the uncertain border
    assert (refined[..., 8:] == 0).all()
