# ToCo on the synthetic set, CPU-sized: a small ViT (patch 8, 6 blocks of width 96) trained from scratch with
# the classification, auxiliary classification, PTC and CTC losses; CAMs from the final layer at 3 scales + flip.
# Its twin toco_vit_tiny_clsonly.py is the same ViT with the classification loss only (the baseline of
# benchmarks/quality_toco.py).
#   python tools/make_synthetic.py --out data/synthetic --num-train 300 --num-val 100 --seed 0 --size 128
#   python tools/train_cls.py configs/synthetic/toco_vit_tiny.py
#   python tools/make_cam.py configs/synthetic/toco_vit_tiny.py
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic.py', '../_base_/models/toco_vit.py',
          '../_base_/schedules/cls_adamw_cosine.py']

cls_model = dict(
    backbone='vit_tiny_patch16_224',
    pretrained=False,
    img_size=96,
    backbone_kwargs=dict(patch_size=8, embed_dim=96, depth=6, num_heads=3),
    aux_layer=-2,  # block 5 of 6 (ToCo: block 10 of 12)
    pseudo_scales=(1.0,),  # one scale (+ flip) for the online pseudo relations: CPU budget
    par=dict(dilations=(1, 2, 4, 8), num_iter=10, w1=0.3, w2=0.01),  # 48 x 48 PAR input: no 12/24 rings
    num_local_crops=6,
    local_crop_size=32,  # 1/3 of the 96-pixel crop (ToCo: 96 of 448)
    proj_dim=256,
    proj_hidden_dim=512,
    proj_bottleneck_dim=64,
)
train_cls = dict(iters=300, batch_size=8, lr=5e-4, weight_decay=0.05, optimizer='adamw', schedule='cosine',
                 warmup_iters=30, crop_size=96, scale_range=(0.7, 1.3), ckpt_interval=100, val_interval=0,
                 log_interval=25, num_workers=1)
cam = dict(scales=[1.0, 0.5, 1.5], batch_size=16, num_workers=1, bg_threshold=0.5)  # ToCo's CAM threshold
