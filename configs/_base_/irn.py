# IRN (Ahn et al., CVPR 2019; jiwoon-ahn/irn run_sample.py): the affinity, random-walk and pseudo-mask settings
# every IRN chain shares (configs/voc/irn_r50.py, configs/coco/irn_r50.py). It brings the train_aff / propagate /
# pseudo sections with it (mmengine refuses a key defined by two files of one _base_ list), so an IRN config lists
# this file instead of affinity.py and pseudo.py.
#
# Minimal version: only keys the stages accept today. The fidelity work (issue 14) replaces it with the full
# recipe (IRN's labels unary for the CRF, global normalisation of the walk, epochs instead of iterations).
_base_ = ['./affinity.py', './pseudo.py']

# Affinity seeds: max CAM > 0.30 confident foreground, <= 0.05 confident background, CRF-refined (IRN's
# cam_to_ir_label). Training: pairs within radius 10 on the stride-4 grid, crops of 512, batch 32, 3 epochs of
# VOC train_aug (10,582 // 32 * 3 = 990 iterations), heads only on a frozen ImageNet backbone, lr 0.1, scale 0.5-1.5.
train_aff = dict(conf_fg=0.30, conf_bg=0.05, use_crf=True, radius=10, crop_size=512, scale_range=(0.5, 1.5),
                 iters=990, batch_size=32, lr=0.1, freeze_backbone=True)
aff_model = dict(backbone='resnet50', pretrained='tv_in1k', feature_stride=4)

# Random walk: radius 5, beta 10, exp_times 8 (2 ** 8 = 256 steps), foreground only (background from a constant).
propagate = dict(method='rw', radius=5, beta=10, t=256, bg='none')

# Pseudo masks from the walked CAMs: background is a constant 0.25 (IRN's sem_seg_bg_thres), no ignore band.
# The CAM stage to read (pseudo.input) is the chain's own walk stage, named in each IRN config.
pseudo = dict(conf_fg=None, conf_bg=None, bg_threshold=0.25)
