# ToCo (Token Contrast, CVPR 2023) on PASCAL VOC 2012 train_aug with ViT-B/16, the reference recipe
# (rulixiang/ToCo scripts/dist_train_voc_seg_neg.py): AdamW 6e-5 (heads 10x), weight decay 0.01, poly 0.9 with
# 1500 warm-up iterations, 20k iterations of 4 crops of 448 (2 GPUs x 2), random rescale 0.5-2.0. The
# reference trains a segmentation head jointly; here the classifier stage stops at the CAM (seed) and the
# segmentation network is trained later by train_seg on the pseudo masks.
#   python tools/prepare_sbd.py --sbd data/benchmark_RELEASE/dataset --root data/VOCdevkit/VOC2012   (once)
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
# ToCo's own segmentation branch (the decoder trained jointly on the PAR-refined labels, issue 14) plugs in after
# train_cls: the stage that writes the decoder's predictions on train_aug replaces make_cam_train_aug ->
# propagate_par_train_aug as the input of make_pseudo (pseudo.input = its folder), and the same decoder on val can
# be scored directly by eval_seg (eval_seg.input = that stage); the rest of this chain stays as it is.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/voc12.py', '../_base_/models/toco_vit.py',
          '../_base_/schedules/cls_adamw_cosine.py', '../_base_/affinity.py', '../_base_/pseudo.py',
          '../_base_/models/seg_deeplabv3plus_r101.py', '../_base_/schedules/seg_20k.py']

# pretrained: the original ViT-B/16 weights (ImageNet-21k, fine-tuned on 1k) that ToCo loads (jx_vit_base_p16_224)
cls_model = dict(backbone='vit_base_patch16_224', pretrained='orig_in21k_ft_in1k', img_size=448)
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
    val_interval=2000,
)
cam = dict(scales=[1.0, 0.5, 1.5])  # ToCo's CAM scales (+ flip)
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
    dict(module='make_cam', name='make_cam_train_aug',
         cfg=dict(cam=dict(name='make_cam_train_aug', split='train_aug'))),
    dict(module='propagate', name='propagate_par_train_aug'),
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
