# ToCo (Token Contrast, CVPR 2023) on PASCAL VOC 2012 train_aug, the reference recipe
# (rulixiang/ToCo scripts/dist_train_voc_seg_neg.py): DeiT-B/16 (its default --backbone), AdamW 6e-5 (heads 10x),
# weight decay 0.01, poly 0.9 with 1500 warm-up iterations, 20k iterations of 4 crops of 448 (2 GPUs x 2), random
# rescale 0.5-2.0, ToCo's three-view augmentation, and its single-stage segmentation branch (LargeFOV decoder on
# after 2000 iterations, w_seg 0.1, w_reg 0.05) whose predictions seg_cam writes in the CAM format.
#   torchrun --nproc_per_node 2 tools/run_pipeline.py configs/voc/toco_vit_base.py
#
# The chain (stage folders under work_dirs/toco_vit_base/):
#   train_cls                            ToCo ViT-B/16 on train_aug
#   make_cam_train, propagate_par_train, make_pseudo_train
#                                        CAMs of train (the CAM mIoU ToCo reports), refined by PAR as ToCo refines
#                                        its CAMs, and pseudo masks with ToCo's ignore band (background <= 0.25,
#                                        foreground > 0.7, the cls_model.bg_thresholds): pseudo-mask mIoU on train
#   make_cam_train_aug, propagate_par_train_aug, make_pseudo
#                                        the same on train_aug: the labels of the segmentation network
#   train_seg_gt, eval_seg_gt            DeepLabV3+ R101 on the ground truth of train_aug: the fully supervised bound
#   train_seg, eval_seg                  DeepLabV3+ R101 on the pseudo masks, scored on val
#
#   seg_cam_train                        ToCo's segmentation branch (the decoder trained jointly in train_cls) on
#                                        train, written as CAMs: ToCo's final masks, scored like the CAMs
# The decoder's output can also replace the CAM -> PAR path as the input of make_pseudo (pseudo.input='seg_cam...').
# ViT-B (ToCo's other row, 'vit_base_patch16_224' + pretrained='orig_in21k_ft_in1k', the jx_vit_base_p16_224 weights):
#   --cfg-options cls_model.backbone=vit_base_patch16_224 cls_model.pretrained=orig_in21k_ft_in1k
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/voc12.py', '../_base_/models/toco_vit.py',
          '../_base_/schedules/cls_adamw_cosine.py', '../_base_/affinity.py', '../_base_/pseudo.py',
          '../_base_/models/seg_deeplabv3plus_r101.py', '../_base_/schedules/seg_20k.py']

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
data = dict(cam_split='train_aug')

# PAR with ToCo's kernel settings (dilations 1..24, 10 iterations, w1 0.3 / w2 0.01) on the CAMs.
propagate = dict(method='par', name='propagate_par_train_aug', input='make_cam_train_aug', split='train_aug',
                 par=dict(dilations=[1, 2, 4, 8, 12, 24], num_iter=10, w1=0.3, w2=0.01, scale=1.0))
pseudo = dict(input='propagate_par_train_aug', split='train_aug', conf_fg=0.7, conf_bg=0.25)
train_seg = dict(masks='make_pseudo', split='train_aug')

pipeline = [
    'train_cls',
    dict(module='make_cam', name='make_cam_train', cfg=dict(cam=dict(name='make_cam_train', split='train'))),
    dict(module='propagate', name='propagate_par_train',
         cfg=dict(propagate=dict(name='propagate_par_train', input='make_cam_train', split='train'))),
    dict(module='make_pseudo', name='make_pseudo_train',
         cfg=dict(pseudo=dict(name='make_pseudo_train', input='propagate_par_train', split='train'))),
    dict(module='seg_cam', name='seg_cam_train', cfg=dict(seg_cam=dict(name='seg_cam_train', split='train'))),
    dict(module='make_cam', name='make_cam_train_aug',
         cfg=dict(cam=dict(name='make_cam_train_aug', split='train_aug'))),
    dict(module='propagate', name='propagate_par_train_aug'),
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
