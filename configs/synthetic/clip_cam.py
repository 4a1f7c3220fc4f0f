# CLIP CAMs on the synthetic set, CPU-sized. No CLIP weights can be downloaded here, so this config builds a
# tiny *randomly initialised* ViT: it exercises the stage end to end (batching, resume, CAM files, evaluation)
# and its mIoU means nothing. With real weights: model_cfg=dict(_delete_=True), pretrained="openai" or a file.
#   python tools/make_synthetic.py --out data/synthetic --num-train 300 --num-val 100 --seed 0 --size 128
#   python tools/clip_cam.py configs/synthetic/clip_cam.py
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic.py', '../_base_/clip_cam.py']
work_dir = 'work_dirs/synthetic'
clip_cam = dict(
    model='ViT-B-16',
    pretrained=None,
    model_cfg=dict(embed_dim=64,
                   vision_cfg=dict(image_size=128, layers=4, width=128, patch_size=16, head_width=32),
                   text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2)),
    # the synthetic classes are shapes on textured grounds; its background kinds make natural prompts
    templates=['a photo of a {} shape.'],
    background_prompts=['grass', 'water', 'road', 'sky', 'sand', 'brick wall'],
    refine_layers=2,
    batch_size=16,
    num_workers=0,
)
