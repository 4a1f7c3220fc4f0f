# The from-scratch twin of coco128_lite0.py: the same chain, schedule and thresholds, but both the classifier
# and the affinity net start from random weights. What the gap to coco128_lite0.py measures is what the
# ImageNet weights buy on 126 photos (the data README warns they are far too few to learn features from).
#   python tools/run_pipeline.py configs/real/coco128_lite0_scratch.py
_base_ = ['./coco128_lite0.py']
work_dir = 'work_dirs/coco128_lite0_scratch'

cls_model = dict(pretrained=False, weights=None)
aff_model = dict(pretrained=False, weights=None)
