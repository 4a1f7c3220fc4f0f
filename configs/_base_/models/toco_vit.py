# ToCo (Token Contrast, Ru et al., CVPR 2023): a ViT classifier trained with an auxiliary CAM from an
# intermediate block, Patch Token Contrast and Class Token Contrast. Defaults follow the reference VOC
# recipe (scripts/dist_train_voc_seg_neg.py of rulixiang/ToCo); see docs/stage_toco.md.
cls_model = dict(
    type='toco',
    backbone='vit_base_patch16_224',  # any timm ViT; backbone_kwargs override its architecture
    pretrained=False,  # True / a timm tag: timm's ImageNet weights (needs internet once)
    weights=None,  # or a local .pth (see wsss/models/weights.py)
    backbone_kwargs=dict(),
    img_size=448,  # training crop side; other sizes work (dynamic_img_size)
    drop_path_rate=0.0,
    aux_layer=-3,  # python index into the blocks: -3 = block 10 of 12 (ToCo)
    pooling='gmp',  # global max pooling of patch tokens before the 1x1 classifiers (ToCo)
    cam_source='final',  # seed CAM: 'final' (ToCo), 'aux' or 'mean'
    bg_thresholds=(0.25, 0.7),  # (low, high) on the normalised aux CAM: <=low bg, >high fg, else uncertain
    use_par=True,  # refine the aux CAM with PAR before deriving the token relations
    par=dict(dilations=(1, 2, 4, 8, 12, 24), num_iter=10, w1=0.3, w2=0.01),
    par_down_scale=2,  # PAR runs at 1/2 resolution (ToCo)
    pseudo_scales=(1.0, 0.5, 1.5),  # no-grad multi-scale (+ flip) aux CAM for the pseudo relations (ToCo)
    pseudo_flip=True,
    token_min_fraction=0.5,  # a token takes a label covering at least this share of its patch
    cls_aux_weight=1.0,
    ptc_weight=0.2,
    ctc_weight=0.5,
    ptc_start_iter=0,  # ToCo trains PTC / CTC from the first iteration (its warm-up gates only the seg head)
    ctc_start_iter=0,
    num_global_views=2,  # the batch and its horizontal flip
    num_local_crops=8,  # ToCo: 10 crops = 2 global + 8 local
    local_crop_size=96,
    negative_max_fraction=0.2,  # crop with <= 20% non-background pixels = negative
    proj_dim=1024,
    proj_hidden_dim=2048,
    proj_bottleneck_dim=256,
    momentum=0.9,  # EMA of the teacher projection head
    temperature=0.5,
    head_lr_mult=10.0,  # classifiers + projection head at 10x the backbone lr (ToCo)
    # ToCo's single-stage segmentation branch: None = off, or dict(channels=512, dilation=5, start_iter=2000,
    # weight=0.1, reg_weight=0.05, reg=dict(weight=1e-7, sigma_rgb=15, sigma_xy=100, scale_factor=0.5),
    # lr_mult=10, use_par=True); its predictions: tools/seg_cam.py (docs/stage_toco.md)
    seg_head=None,
)
