# coco128_lite0 with W-OoD (docs/stage_cls_cam.md, "W-OoD"): the 29 photos without any VOC class are the
# out-of-distribution candidates; from iteration 200 the 16 the classifier scores highest train as all-negative
# and their 4 k-means centres push the features of the labelled photos away.
#   python tools/run_pipeline.py configs/real/coco128_lite0_wood.py
_base_ = ['./coco128_lite0.py']
work_dir = 'work_dirs/coco128_lite0_wood'
train_cls = dict(wood=dict(ood_split='all', start_iter=200, top_k=16, clusters=4))
