# ToCo's full single-stage recipe on the synthetic set, CPU-sized: toco_vit_tiny.py plus ToCo's augmentation
# (three views: jitter 0.4/0.4/0.2/0.1, grayscale, blur; a RandomResizedCrop(0.4-1) second global view with
# solarize) and its segmentation branch (LargeFOV decoder on the final tokens, on after 1/3 of training).
#   python tools/train_cls.py configs/synthetic/toco_vit_tiny_seg.py
#   python tools/make_cam.py  configs/synthetic/toco_vit_tiny_seg.py     # the CAMs (seeds)
#   python tools/seg_cam.py   configs/synthetic/toco_vit_tiny_seg.py     # the decoder's predictions
_base_ = ['./toco_vit_tiny.py']

cls_model = dict(
    seg_head=dict(
        _delete_=True,  # the base has seg_head=None
        channels=128,  # ToCo 512 on ViT-B's 768-wide tokens; the tiny ViT is 96 wide
        dilation=5,
        start_iter=100,  # of 300 (ToCo: 2000 of 20000; a from-scratch tiny ViT needs longer before its CAMs help)
        weight=0.1,
        reg_weight=0.05,
        # ToCo's energy (weight 1e-7, sigma_xy 100 px, computed at 0.5 scale = 224^2 pixels) on 448-px crops,
        # rescaled to 96-px crops: sigma_xy with the crop side (100 * 96 / 448); computed at 0.25 scale (24^2
        # pixels, still 2x finer than the 12^2 token grid: the exact dense sum is O(N^2) on CPU); the weight with
        # the 4th power of the grid side so the energy (a sum over pixel pairs) keeps its size relative to the
        # cross-entropy: 1e-7 * (224 / 24) ** 4 = 7.6e-4
        reg=dict(weight=7.6e-4, sigma_rgb=15.0, sigma_xy=21.4, scale_factor=0.25),
        lr_mult=10.0,
    ))
train_cls = dict(augmentation='toco')
seg_cam = dict(scales=[1.0, 1.25, 1.5], batch_size=16, num_workers=1, bg_threshold=0.5)
pipeline = ['train_cls', 'make_cam', 'seg_cam']  # python tools/run_pipeline.py configs/synthetic/toco_vit_tiny_seg.py
