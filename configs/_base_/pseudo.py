# Pseudo masks from CAMs (stages/make_pseudo.py): masks/<id>.png, palette PNG, 255 = ignore.
# See docs/stage_crf_pseudo.md. Exactly one background mode:
#   * ignore band (IRN): conf_fg + conf_bg. A pixel is its best class where max CAM > conf_fg, background
#     where max CAM <= conf_bg, and 255 (ignore) in between;
#   * a single decision: conf_fg=None, conf_bg=None and bg_threshold (constant background score) or bg_power
#     (background = (1 - max CAM) ** bg_power, CLIP-ES style), optionally min_confidence (pixels whose winning
#     probability is below it become 255; CLIP-ES uses 0.95 after CRF).
# Only the image's labelled classes can appear.
pseudo = dict(
    input=None,            # REQUIRED: the CAM stage to read (make_cam, propagate, clip_cam, crf, ...). No default:
                           # seeds and random-walk CAMs need different thresholds, so a chain names its own
                           # (configs/_base_/irn.py: the walk with background 0.25).
                           # Also accepted: name (stage folder, default 'make_pseudo'), split (default
                           # data.cam_split), e.g. make_pseudo_train on train beside make_pseudo on train_aug.
    bg_threshold=None,
    bg_power=None,
    conf_fg=0.30,          # IRN conf_fg_thres
    conf_bg=0.05,          # IRN conf_bg_thres
    min_confidence=None,
    use_crf=False,         # refine each decision with a dense CRF on the image
    # crf also accepts unary ('labels': IRN's hard-decision unary with gt_prob, default 0.7; 'softmax') and
    # gt_prob. Unset (as here, so existing stage hashes stay valid): 'labels' for the conf_fg/conf_bg band,
    # 'softmax' for a single decision (bg_threshold / bg_power).
    crf=dict(n_iter=10, gauss_sxy=3, gauss_compat=3, bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10),
    num_workers=0,         # processes (0 = all cores, per rank cores // local ranks); not hashed
)
