# The classic WSSS protocol for the small-data classifier of coco128_small.py: the same classifier (same 96
# training photos, same seed, so the same weights), but CAMs, refinements and pseudo masks are made for and scored
# on the training photos themselves. Beside coco128_small.py it shows how much of the classic score is the
# classifier having seen the photos.
#   python tools/run_pipeline.py configs/real/coco128_small_classic.py
_base_ = ['./coco128_small.py']
work_dir = 'work_dirs/coco128_small_classic'

data = dict(cam_split='train', val_split='train')  # mAP on its own training photos, as the classic protocol reports
