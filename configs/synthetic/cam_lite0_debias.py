# cam_effnet_lite0 seeds, then biased-object removal (docs/stage_debias.md) with the same offline ImageNet
# backbone, frozen, as the feature extractor.
#   python tools/run_pipeline.py configs/synthetic/cam_lite0_debias.py
_base_ = ['./cam_effnet_lite0.py']
work_dir = 'work_dirs/synthetic_debias'
debias = dict(input='make_cam', backbone=dict(arch='tf_efficientnet_lite0', weights='efficientnet-lite0-package',
                                              output_stride=16),
              scale=2.0, clusters=16, max_samples=100000, cam_threshold=0.3, bg_threshold=0.3)
pipeline = ['train_cls', 'make_cam', 'debias']
