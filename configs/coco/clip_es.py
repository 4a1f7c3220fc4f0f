# CLIP-ES CAMs on MS COCO 2014 train (80 classes). COCO background prompts drop 'keyboard' and 'sign',
# which are COCO objects. Reproduction and caveats: docs/stage_clip_cam.md.
#   python tools/run_pipeline.py configs/coco/clip_es.py [--cfg-options clip_cam.pretrained=/path/to/ViT-B-16.pt]
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco14.py',
    '../_base_/clip_cam.py',
    '../_base_/pseudo.py',
]
work_dir = 'work_dirs/coco_clip_es'
data = dict(cam_split='train')
clip_cam = dict(model='ViT-B-16', pretrained='openai', method='gradcam', background_prompts='coco', refine=True)
# CLIP-ES pseudo masks: background = 1 - max CAM, dense CRF with CLIP-ES's kernels. min_confidence=None keeps
# every pixel (the figure CLIP-ES evaluates); set 0.95 for the masks a segmentation net trains on (CLIP-ES
# marks pixels whose CRF probability is below 0.95 as ignore).
pseudo = dict(input='clip_cam', bg_threshold=None, bg_power=1, conf_fg=None, conf_bg=None, min_confidence=None,
              use_crf=True, crf=dict(n_iter=10, gauss_sxy=1, gauss_compat=3, bilateral_sxy=67, bilateral_srgb=3,
                                     bilateral_compat=4))
pipeline = ['clip_cam', 'make_pseudo']
