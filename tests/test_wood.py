"""W-OoD: the metric-learning loss on hand-made features, hard-OoD mining, k-means, and train_cls with OoD data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsss.cluster import kmeans, nearest_center
from wsss.losses.wood import adversarial_climb, class_prototypes, mine_hard_ood, near_mask, wood_metric_loss

F = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
PROTOS = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_metric_loss_equals_the_hand_computed_value() -> None:
    # labelled distances: |f0 - p0| = 3, |f1 - p1| = 4 -> pull = (3 + 4) / 4 * K/M
    # OoD distances [[0, 10], [5, 5]]; near_fraction 0.75 keeps those below the largest (10): push = 10 / 4
    centers = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    loss = wood_metric_loss(F, LABELS, PROTOS, centers, near_fraction=0.75)
    assert loss.item() == pytest.approx(7 / 4 * 1.0 - 10 / 4)
    # one OoD centre (6, 8): distances [10, 5]; k = 1 -> below 10 keeps 5; pull scaled by K/M = 2
    loss = wood_metric_loss(F, LABELS, PROTOS, centers[1:], near_fraction=0.5)
    assert loss.item() == pytest.approx(7 / 4 * 2 - 5 / 2)
    # a class without prototype contributes nothing to the pull
    loss = wood_metric_loss(F, LABELS, PROTOS, centers[1:], 0.5, present=torch.tensor([True, False]))
    assert loss.item() == pytest.approx(3 / 4 * 2 - 5 / 2)


def test_metric_loss_gradient_pulls_to_prototypes_and_pushes_from_near_ood() -> None:
    f = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = wood_metric_loss(f, torch.tensor([[1.0]]), torch.tensor([[3.0, 0.0]]),
                            torch.tensor([[0.0, 0.0], [-9.0, 0.0]]), near_fraction=0.5)
    loss.backward()
    # pull: d|f - p|/df = (f - p)/|f - p| = (-1, 0), times K/M = 1/2; push: only the near centre (0, 0),
    # -d|f - c|/df / (B*M) = -(1, 0) / 2 -> total (-1, 0): gradient descent moves f to +x, to p, away from c
    assert f.grad[0].tolist() == pytest.approx([-1.0, 0.0])


def test_prototypes_are_class_means() -> None:
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    protos, present = class_prototypes(feats, labels)
    assert protos.tolist() == [[2.0, 1.0], [4.0, 3.5], [0.0, 0.0]] and present.tolist() == [True, True, False]


def test_mining_keeps_the_top_k_by_max_class_score() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.2], [0.95, 0.0], [0.9, 0.3]])
    assert mine_hard_ood(scores, 2).tolist() == [2, 0]
    assert mine_hard_ood(scores, 3).tolist() == [2, 0, 3]  # tie 0.9: the lower index first
    assert mine_hard_ood(scores, None).tolist() == [2, 0, 3, 1]
    assert near_mask(torch.tensor([[0.0, 10.0], [5.0, 5.0]]), 0.75).tolist() == [[True, False], [True, True]]


def test_kmeans_separates_two_blobs_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g) * 0.1, torch.randn(30, 3, generator=g) * 0.1 + 5.0])
    a, c = kmeans(x, 2, seed=3)
    assert len(set(a[:20].tolist())) == 1 and len(set(a[20:].tolist())) == 1 and a[0] != a[20]
    assert torch.allclose(c[a[0]], x[:20].mean(0)) and torch.allclose(c[a[20]], x[20:].mean(0))
    a2, c2 = kmeans(x, 2, seed=3)
    assert torch.equal(a, a2) and torch.equal(c, c2)
    assert nearest_center(torch.tensor([[4.0, 4.0, 4.0]]), c).item() == int(a[20])


def test_adversarial_climb_moves_each_image_up_its_top_logit_by_the_normalised_gradient() -> None:
    # A linear classifier on 4 "pixels": logits = x @ W.T; image 0's top class is 0, image 1's is 1, so the
    # gradient of the summed max logit is W[0] for image 0 and W[1] for image 1; max |grad| over the batch = 4.
    w = torch.tensor([[1.0, -2.0, 0.0, 4.0], [0.5, 0.5, -1.0, 0.0]])
    head = torch.nn.Linear(4, 2, bias=False)
    head.weight.data.copy_(w)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, -2.0, 0.0]])  # logits (5, 0.5) and (0, 2): tops 0, 1
    moved = adversarial_climb(head, x, 0.4)
    expected = (x + 0.4 * torch.stack([w[0], w[1]]) / 4.0).clamp(-2.0, 1.0)  # the batch's own range
    assert torch.allclose(moved, expected)
    assert head.weight.grad is None and not moved.requires_grad  # no parameter gradient, detached output
    assert (head(moved).max(1).values >= head(x).max(1).values).all()  # the climb raised every top logit
    assert adversarial_climb(head, x, 0.0) is x


# --- train_cls with W-OoD ------------------------------------------------------------------------------------
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from conftest import REPO, subprocess_env  # noqa: E402
from wsss.config import parse_overrides  # noqa: E402

CONFIG = REPO / "configs" / "synthetic" / "cam_resnet18.py"


@pytest.fixture(scope="module")
def ood_root(tmp_path_factory) -> Path:
    from wsss.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("syn") / "synthetic"
    generate_synthetic(root, num_train=8, num_val=0, seed=0, size=48, num_ood=10)
    return root


def _opts(root: Path, **extra) -> list[str]:
    opts = {"data.root": str(root), "data.val_split": "", "cls_model.backbone": "test_resnet",
            "train_cls.iters": 8, "train_cls.batch_size": 4, "train_cls.crop_size": 48,
            "train_cls.ckpt_interval": 3, "train_cls.log_interval": 2, "train_cls.num_workers": 0,
            "train_cls.lr": 0.02, "train_cls.wood.ood_split": "ood", "train_cls.wood.top_k": 6,
            "train_cls.wood.clusters": 3, "train_cls.wood.near_fraction": 0.5, **extra}
    return [f"{k}={v}" for k, v in opts.items()]


def test_train_cls_mines_the_hardest_ood_images_of_the_model_at_start_iter(ood_root, tmp_path) -> None:
    from stages import train_cls
    from wsss.config import load_config
    from wsss.data.build import build_dataset
    from wsss.engine.seed import seed_everything
    from wsss.models.registry import build_classifier

    torch.set_num_threads(1)
    cfg = load_config(CONFIG, parse_overrides(_opts(ood_root, **{"train_cls.wood.start_iter": 0})), tmp_path / "w")
    manifest = train_cls.run(cfg)
    metrics = json.loads((tmp_path / "w" / "train_cls" / "metrics.json").read_text())
    # start_iter 0: the mining model is the freshly built one, rebuilt here from the same seed
    seed_everything(int(cfg.seed))
    model = build_classifier(cfg.cls_model, 6)
    ood = train_cls.ood_dataset(cfg, train_cls.settings(cfg)["wood"], build_dataset(cfg.data, "train"))
    assert len(ood) == 10
    _, probs = train_cls.pooled_features(model, ood, 48, 4, torch.device("cpu"))
    expected = [ood.ids[i] for i in mine_hard_ood(probs, 6).tolist()]
    assert metrics["wood"]["mined_ids"] == expected and metrics["wood"]["centers"] == 3
    assert metrics["wood"]["hardness"] == pytest.approx(sorted(probs.max(1).values.tolist(), reverse=True)[:6],
                                                        abs=1e-5)
    assert {"loss_ood", "loss_metric"} <= set(metrics["loss_history"][-1])
    assert manifest["status"] == "complete"


def test_train_cls_with_wood_resumes_after_kill_to_the_same_weights(ood_root, tmp_path) -> None:
    def train(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(REPO / "tools" / "train_cls.py"), str(CONFIG), "--work-dir", str(work), *args,
               "--cfg-options", *_opts(ood_root, **{"train_cls.wood.start_iter": 2})]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(**(env or {})))

    from stages import train_cls
    from wsss.config import load_config

    torch.set_num_threads(1)  # uninterrupted run in this process, one thread as the subprocesses
    train_cls.run(load_config(CONFIG, parse_overrides(_opts(ood_root, **{"train_cls.wood.start_iter": 2})),
                              tmp_path / "full"))
    killed = train(tmp_path / "resumed", env={"WSSS_TEST_KILL_AT_ITER": "5"})  # last.pth at 3, after start_iter
    assert killed.returncode == -signal.SIGKILL
    assert "wood" in torch.load(tmp_path / "resumed" / "train_cls" / "last.pth", weights_only=False)["extra"]
    resumed = train(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "full" / "train_cls" / "final.pth", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "train_cls" / "final.pth", weights_only=False)
    assert all(torch.equal(a[k], b[k]) for k in a)
