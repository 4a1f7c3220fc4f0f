# Affinity learning (stages/train_aff.py) and CAM propagation (stages/propagate.py): random walk with a
# learned AffinityNet affinity, or PAR (training-free, image colours only). See docs/stage_affinity.md.

# The affinity network: timm backbone (features_only) -> per-pixel embedding at stride `feature_stride`;
# affinity of a pixel pair = exp(-mean |f_i - f_j|).
aff_model = dict(
    backbone='resnet50',
    pretrained=False,      # True: timm's ImageNet weights (network access at first use)
    weights=None,          # or a local .pth whose tensors initialise the backbone (e.g. train_cls/final.pth)
    feature_stride=4,      # grid of the affinities and of the random walk
    max_stride=32,         # deepest backbone level used by the embedding
    proj_dim=64,           # 1x1 projection of every level
    embed_dim=128,         # embedding channels
)

train_aff = dict(
    input='make_cam',      # stage whose cams/<id>.npz give the seeds
    name=None,             # stage folder (None: 'train_aff'); lets two affinity nets coexist
    split=None,            # None: data.cam_split (the split the CAMs were made for)
    conf_fg=0.30,          # max CAM > conf_fg -> confident foreground of the argmax class (IRN)
    conf_bg=0.05,          # max CAM <= conf_bg -> confident background (IRN); in between: ignored
    use_crf=False,         # refine both seed maps with a dense CRF on the image (IRN does)
    radius=5,              # pairs within this distance on the feature grid (AffinityNet: 5 at stride 8)
    crop_size=256,         # square training crop (multiple of the backbone's deepest stride)
    scale_range=(0.7, 1.3),
    iters=2000,
    batch_size=8,          # per GPU
    optimizer='sgd',       # 'sgd' (momentum 0.9) or 'adamw'
    lr=0.01,               # backbone; new layers get lr * head_lr_mult
    head_lr_mult=10.0,
    weight_decay=1e-4,
    lr_schedule='poly',
    warmup_iters=0,
    freeze_backbone=False, # IRN trains only its heads on a frozen ImageNet backbone
    amp=True,              # CUDA only
    num_workers=2,
    ckpt_interval=200,
    log_interval=20,
)

propagate = dict(
    method='rw',           # 'rw': random walk with the learned affinity; 'par': pixel-adaptive refinement
    name=None,             # stage folder (None: 'propagate'); e.g. 'propagate_par' so both methods coexist
    input='make_cam',      # CAMs to refine
    model='train_aff',     # rw only: the train_aff stage folder whose final.pth is used
    split=None,            # None: data.cam_split
    radius=5,              # rw: neighbourhood of the walk on the stride-`feature_stride` grid
    beta=10,               # rw: transition = affinity ** beta, normalised (IRN 10, AffinityNet 8)
    t=256,                 # rw: number of walk steps (IRN: exp_times 8 -> 2 ** 8 = 256)
    scales=[1.0],          # rw: affinity averaged over these image scales ...
    flip=True,             # ... and their horizontal flips
    bg='none',             # background channel in the walk: 'none' (IRN: fg only, max normalised, see normalise),
                           # 'power' ((1 - max fg) ** bg_power, AffinityNet) or 'threshold' (max fg <= bg_threshold)
    bg_power=8,
    bg_threshold=0.05,
                           # Also accepted: normalise (bg='none' only; default 'per_class' = each class by its own
                           # max, 'global' = one max over all classes, IRN's rw / rw.max(); left out so existing
                           # stage hashes stay valid). docs/stage_affinity.md has both measured.
    par=dict(dilations=[1, 2, 4, 8, 12, 24], num_iter=10, w1=0.3, w2=0.01, scale=1.0),  # scale<1: PAR on a
                           # downscaled copy (faster)
    eval_threshold=None,   # background threshold for the stage's own mIoU (None: 0.25 for bg='none', else 0.5)
)
