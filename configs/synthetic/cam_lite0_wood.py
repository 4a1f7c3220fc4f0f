# cam_effnet_lite0 with W-OoD (docs/stage_cls_cam.md, "W-OoD"): the synthetic set needs its context-only split,
#   python tools/make_synthetic.py --out data/synthetic --num-train 200 --num-val 50 --seed 0 --num-ood 60
#   python tools/train_cls.py configs/synthetic/cam_lite0_wood.py && python tools/make_cam.py configs/synthetic/cam_lite0_wood.py
# From iteration 150 the 32 context-only images the classifier scores highest train as all-negative, and the
# features of labelled images are pushed away from 6 k-means centres of theirs.
_base_ = ['./cam_effnet_lite0.py']
work_dir = 'work_dirs/synthetic_wood'
train_cls = dict(wood=dict(ood_split='ood', start_iter=150, top_k=32, clusters=6))
