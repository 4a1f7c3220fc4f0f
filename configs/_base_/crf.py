# Dense CRF refinement of CAMs (stages/crf.py): writes refined CAMs in the CAM format, so any later stage
# (make_pseudo, propagate, ...) can read them. See docs/stage_crf_pseudo.md.
#
# Kernel parameters default to IRN's crf_inference_label (Gaussian sxy 3 / compat 3; bilateral sxy 50,
# srgb 5, compat 10; 10 mean-field iterations). Other published settings, for reference:
#   PSA:     bilateral_sxy=80, bilateral_srgb=13, bilateral_compat=10
#   CLIP-ES: gauss_sxy=1, gauss_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4
#   ToCo pseudo labels: gauss_sxy=3, gauss_compat=3, bilateral_sxy=36, bilateral_srgb=3, bilateral_compat=4
#   ToCo segmentation inference: gauss_sxy=1, gauss_compat=1, bilateral_sxy=121, bilateral_srgb=5, bilateral_compat=4
# (wsss.refine.crf.PRESETS: 'irn', 'psa', 'clip_es', 'toco', 'toco_seg').
crf = dict(
    input='make_cam',      # CAM stage to refine: make_cam, propagate, clip_cam, ...
    bg_threshold=0.30,     # constant background score (IRN's conf_fg; bench: threshold 0.3 + CRF) ...
    bg_power=None,         # ... or background = (1 - max CAM) ** bg_power (set bg_threshold=None)
    n_iter=10,             # mean-field iterations
    gauss_sxy=3,           # Gaussian (smoothness) kernel: spatial std in pixels
    gauss_compat=3,        # ... and its Potts weight
    bilateral_sxy=50,      # bilateral (appearance) kernel: spatial std in pixels
    bilateral_srgb=5,      # ... colour std in RGB units (0..255)
    bilateral_compat=10,   # ... and its Potts weight
    # Also accepted (defaults, left out so existing stage hashes stay valid): unary='softmax' (-log of the
    # probabilities; 'labels' = IRN's hard-decision unary) and gt_prob=0.7 ('labels' only: the decided label's
    # probability).
    num_workers=0,         # processes (0 = all cores, per rank cores // local ranks); not hashed
)
