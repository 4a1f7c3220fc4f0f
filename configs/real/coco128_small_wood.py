# coco128_small (held-out protocol, frozen EfficientNet-Lite0, ImageNet-row head on cached views) with W-OoD
# (docs/stage_cls_cam.md, "W-OoD"): the 26 photos of train.txt without any VOC class are the out-of-distribution
# candidates; from iteration 150 of 300 the 16 the classifier scores highest (one batch; about the hardest 60 %,
# as the synthetic benchmark keeps half) train the head as all-negative, on their own cached views. With a frozen
# backbone the metric loss has nothing to move and is left out (train_cls logs it). Not tuned: top_k and
# start_iter follow the synthetic benchmark's proportions; nothing was chosen on heldout.txt.
#   python tools/run_pipeline.py configs/real/coco128_small_wood.py
#   python benchmarks/quality_real.py --variants heldout,seed1,seed2,wood,wood_seed1,wood_seed2  # paired by seed
_base_ = ['./coco128_small.py']
work_dir = 'work_dirs/coco128_small_wood'
train_cls = dict(wood=dict(ood_split='train', start_iter=150, top_k=16, clusters=4))
