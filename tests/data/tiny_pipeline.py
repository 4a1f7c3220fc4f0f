# A pipeline small enough for CI (2 CPU cores, about a minute): every stage kind once, tiny models, tiny images.
_base_ = [
    '../../configs/_base_/default_runtime.py',
    '../../configs/_base_/datasets/synthetic.py',
    '../../configs/_base_/models/cam_classifier.py',
    '../../configs/_base_/schedules/cls_sgd_poly.py',
    '../../configs/_base_/affinity.py',
    '../../configs/_base_/pseudo.py',
    '../../configs/_base_/schedules/seg_synthetic.py',
]
data = dict(root='data/tiny', generate=dict(num_train=16, num_val=6, seed=3, size=48))
cls_model = dict(backbone='resnet18', pretrained=False, weights=None)
train_cls = dict(iters=8, batch_size=4, lr=0.05, crop_size=48, ckpt_interval=4, val_interval=0, log_interval=4,
                 num_workers=0)
cam = dict(scales=[1.0, 0.5], flip=True, batch_size=4, num_workers=0, bg_threshold=0.3)
propagate = dict(method='par', name='propagate_par', par=dict(dilations=[1, 2, 4], num_iter=5, w1=0.3, w2=0.01,
                                                              scale=1.0))
pseudo = dict(input='propagate_par', use_crf=True, conf_fg=None, conf_bg=None, bg_threshold=0.3, num_workers=1)
seg_model = dict(type='deeplabv3plus', backbone='resnet18', pretrained=False, weights=None, head_channels=16)
train_seg = dict(iters=12, batch_size=4, crop_size=48, ckpt_interval=3, log_interval=3, num_workers=0)
eval_seg = dict(scales=[1.0], flip=True)
pipeline = ['train_cls', 'make_cam', dict(module='propagate', name='propagate_par'), 'make_pseudo', 'train_seg',
            'eval_seg']
