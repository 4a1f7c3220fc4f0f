"""configs/_base_/irn.py: IRN's published values, and every stage it configures accepts its sections."""

from __future__ import annotations

from conftest import REPO
from wsss.config import load_config


def test_irn_base_config_holds_irn_values_and_every_stage_accepts_it(tmp_path):
    from stages import crf as crf_stage
    from stages import propagate, train_aff
    from wsss.engine.stage import section_of
    from wsss.refine.crf import CRFParams
    from wsss.refine.pseudo import PseudoParams

    path = tmp_path / "chain.py"
    path.write_text(f"_base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, "
                    f"{str(REPO / 'configs/_base_/irn.py')!r}]\n")
    cfg = load_config(path)
    ta = train_aff.section(cfg)  # unknown keys would raise
    assert (ta["radius"], ta["crop_size"], ta["batch_size"], ta["iters"], ta["lr"], ta["head_lr_mult"]) == \
        (10, 512, 32, 990, 0.1, 1.0)
    assert ta["freeze_backbone"] and ta["use_crf"] and tuple(ta["scale_range"]) == (0.5, 1.5)
    assert (ta["conf_fg"], ta["conf_bg"]) == (0.30, 0.05)
    assert train_aff.resolve_iters(ta, 10582) == 990 == train_aff.resolve_iters({**ta, "epochs": 3}, 10582)
    seed_crf = CRFParams.from_config(ta["crf"])
    assert seed_crf == CRFParams(unary="labels", gt_prob=0.7)  # IRN's kernels, hard-label unary
    pr = propagate.section(cfg)
    assert (pr["radius"], pr["beta"], pr["t"], pr["bg"], pr["normalise"], pr["eval_threshold"]) == \
        (5, 10, 256, "none", "global", 0.25)
    pseudo = PseudoParams.from_config(cfg.pseudo)
    assert (pseudo.bg_threshold, pseudo.band, pseudo.crf) == (0.25, False, None)
    s = section_of(cfg, crf_stage.SECTION, crf_stage._SECTION_KEYS)
    assert CRFParams.from_config({k: s[k] for k in crf_stage._CRF_KEYS if k in s}).unary == "labels"
    assert (cfg.aff_model.backbone, cfg.aff_model.pretrained, cfg.aff_model.feature_stride) == ("resnet50", "tv_in1k", 4)
    for chain in ("configs/voc/irn_r50.py", "configs/coco/irn_r50.py"):  # both chains load and keep IRN's values
        c = load_config(REPO / chain)
        sec = train_aff.section(c)
        assert (sec["radius"], sec["freeze_backbone"], CRFParams.from_config(sec["crf"]).unary) == (10, True, "labels")
        assert propagate.section(c)["normalise"] == "global" and PseudoParams.from_config(c.pseudo).bg_threshold == 0.25
