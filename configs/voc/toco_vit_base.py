# ToCo (Token Contrast, CVPR 2023) on PASCAL VOC 2012 train_aug, the reference recipe
# (rulixiang/ToCo scripts/dist_train_voc_seg_neg.py): DeiT-B/16 (its default --backbone), AdamW 6e-5 (heads 10x),
# weight decay 0.01, poly 0.9 with 1500 warm-up iterations, 20k iterations of 4 crops of 448 (2 GPUs x 2), random
# rescale 0.5-2.0, ToCo's three-view augmentation, and its single-stage segmentation branch (LargeFOV decoder on
# after 2000 iterations, w_seg 0.1, w_reg 0.05) whose predictions seg_cam writes in the CAM format.
#   python tools/prepare_voc.py ...            (once)
#   torchrun --nproc_per_node 2 tools/train_cls.py configs/voc/toco_vit_base.py
#   python tools/make_cam.py configs/voc/toco_vit_base.py          # the CAMs
#   python tools/seg_cam.py configs/voc/toco_vit_base.py           # the segmentation branch (ToCo's final masks)
#   python tools/eval_cam.py configs/voc/toco_vit_base.py --stage seg_cam
# ViT-B (ToCo's other row, 'vit_base_patch16_224' + pretrained='orig_in21k_ft_in1k', the jx_vit_base_p16_224 weights):
#   --cfg-options cls_model.backbone=vit_base_patch16_224 cls_model.pretrained=orig_in21k_ft_in1k
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/voc12.py', '../_base_/models/toco_vit.py',
          '../_base_/schedules/cls_adamw_cosine.py']

# pretrained=True: timm's default tag of deit_base_patch16_224 (fb_in1k), the DeiT-B weights ToCo loads
# (deit_base_patch16_224-b5f2ef4d.pth); offline, the missing weights fail with one line (or set weights=<.pth>)
cls_model = dict(
    backbone='deit_base_patch16_224',
    pretrained=True,
    img_size=448,
    seg_head=dict(_delete_=True, channels=512, dilation=5, start_iter=2000, weight=0.1, reg_weight=0.05,
                  reg=dict(weight=1e-7, sigma_rgb=15.0, sigma_xy=100.0, scale_factor=0.5), lr_mult=10.0,
                  use_par=True),
)
train_cls = dict(
    iters=20000,
    batch_size=2,  # per rank; ToCo: 2 GPUs x 2
    lr=6e-5,
    weight_decay=0.01,
    optimizer='adamw',
    schedule='poly',
    power=0.9,
    warmup_iters=1500,
    crop_size=448,
    scale_range=(0.5, 2.0),
    augmentation='toco',  # ToCo's three views (wsss.data.transforms.MultiViewTransform)
    val_interval=2000,
    find_unused_parameters=True,  # the seg branch is off for 2000 iterations (DDP must allow unused heads)
)
cam = dict(scales=[1.0, 0.5, 1.5])  # ToCo's CAM scales (+ flip)
seg_cam = dict(scales=[1.0, 1.25, 1.5], bg_threshold=0.5)  # ToCo's infer_seg_as_cam.py scales (+ flip)
pipeline = ['train_cls', 'make_cam', 'seg_cam']  # python tools/run_pipeline.py configs/voc/toco_vit_base.py
