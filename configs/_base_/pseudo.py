# Pseudo masks from CAMs (stages/make_pseudo.py): masks/<id>.png, palette PNG, 255 = ignore.
# See docs/stage_crf_pseudo.md. Exactly one background mode:
#   * ignore band (IRN): conf_fg + conf_bg. A pixel is its best class where max CAM > conf_fg, background
#     where max CAM <= conf_bg, and 255 (ignore) in between;
#   * a single decision: conf_fg=None, conf_bg=None and bg_threshold (constant background score) or bg_power
#     (background = (1 - max CAM) ** bg_power, CLIP-ES style), optionally min_confidence (pixels whose winning
#     probability is below it become 255; CLIP-ES uses 0.95 after CRF).
# Only the image's labelled classes can appear.
pseudo = dict(
    input='make_cam',      # CAM stage to read: make_cam, propagate, clip_cam, crf, ...
    bg_threshold=None,
    bg_power=None,
    conf_fg=0.30,          # IRN conf_fg_thres
    conf_bg=0.05,          # IRN conf_bg_thres
    min_confidence=None,
    use_crf=False,         # refine each decision with a dense CRF on the image
    # unary=None: 'labels' (IRN, the hard decision with gt_prob) for the conf_fg/conf_bg band, 'softmax' for a
    # single decision; set 'labels' / 'softmax' to force one.
    crf=dict(n_iter=10, gauss_sxy=3, gauss_compat=3, bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10,
             unary=None, gt_prob=0.7),
    num_workers=0,         # processes (0 = all cores); not part of the config hash
)
