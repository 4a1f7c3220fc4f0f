# ToCo (Token Contrast, CVPR 2023) on PASCAL VOC 2012 train_aug with ViT-B/16, the reference recipe
# (rulixiang/ToCo scripts/dist_train_voc_seg_neg.py): AdamW 6e-5 (heads 10x), weight decay 0.01, poly 0.9 with
# 1500 warm-up iterations, 20k iterations of 4 crops of 448 (2 GPUs x 2), random rescale 0.5-2.0. The
# reference trains a segmentation head jointly; here the classifier stage stops at the CAM (seed) and the
# segmentation network is trained later by train_seg on the pseudo masks.
#   python tools/prepare_voc.py ...            (once)
#   torchrun --nproc_per_node 2 tools/train_cls.py configs/voc/toco_vit_base.py
#   python tools/make_cam.py configs/voc/toco_vit_base.py
#   python tools/eval_cam.py configs/voc/toco_vit_base.py --stage make_cam
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/voc12.py', '../_base_/models/toco_vit.py',
          '../_base_/schedules/cls_adamw_cosine.py']

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
