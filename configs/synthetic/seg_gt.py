# The fully supervised upper bound on synthetic data: the same network and schedule as seg_pseudo.py, trained on
# ground-truth masks, in its own stage folders (train_seg_gt, eval_seg_gt) of the same work_dir. Run it before
# (or re-run after) eval_seg of seg_pseudo.py and the WSSS metrics record WSSS mIoU / fully supervised mIoU.
_base_ = ['./seg_pseudo.py']
train_seg = dict(masks='gt', name='train_seg_gt', eval_points=4)  # val curve: converged when flat at the end
eval_seg = dict(name='eval_seg_gt', input='train_seg_gt')
