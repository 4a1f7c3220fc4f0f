# CLIP CAMs (stages/clip_cam.py, docs/stage_clip_cam.md): training-free CAMs from a frozen open_clip ViT,
# written as <work_dir>/clip_cam/cams/<id>.npz (same format as make_cam; later stages read input='clip_cam').
# Defaults reproduce CLIP-ES (Lin et al., CVPR 2023) generate_cams_voc12.py.
clip_cam = dict(
    # --- model: any open_clip ViT name; weights = an open_clip pretrained tag (downloads once, needs
    # internet), a local checkpoint path (open_clip state dict or OpenAI's TorchScript ViT-B-16.pt), or None
    # (random weights: only for tests and timing).
    model='ViT-B-16',
    pretrained='openai',
    model_cfg=dict(),      # architecture overrides passed to open_clip.create_model (tests: a tiny ViT)
    quick_gelu=None,       # None: as the pretrained tag was trained (OpenAI: QuickGELU)
    cache_dir=None,        # open_clip download cache (None: its default, ~/.cache)
    # --- text: prompts = templates x class names (CLIP-ES synonyms), plus background concepts that join the
    # softmax as extra classes ('voc', 'coco', a list of words, or None)
    templates='clip_es',   # 'clip_es' = ['a clean origami {}.'], 'photo', or a list of '{}' strings
    background_prompts='voc',
    class_names=None,      # None: the dataset's names; or C-1 foreground names CLIP can read
    class_prompts=dict(),  # {dataset class name: text or [texts]} overrides of the built-in synonyms
    use_synonyms=True,
    # --- method: 'gradcam' (CLIP-ES softmax Grad-CAM at the last block) or 'dense' (patch-text alignment
    # with self-self attention in the last block(s))
    method='gradcam',
    softmax_over='labels', # softmax over the image's labels + background prompts (CLIP-ES) or 'all' classes
    pool='patch_mean',     # image embedding for Grad-CAM: mean of patch tokens (CLIP-ES) or 'cls'
    dense_attn='vv',       # dense: '+'-joined subset of qq, kk, vv (self-self attention averaged)
    dense_blocks=1,        # dense: how many last blocks run the self-self path
    dense_residual=False,  # dense: keep the residual stream in the self-self path (CLIP Surgery) or not (ClearCLIP)
    # --- inference
    scales=[1.0],
    flip=False,
    input_size=None,       # None: original size rounded up to x16 (CLIP-ES); int: short side; [h, w]: fixed
    amp=True,              # float16 autocast on CUDA
    # --- class-aware attention affinity refinement (CLIP-ES CAA)
    refine=True,
    refine_layers=8,       # mean head-averaged attention of the last N blocks
    box_threshold=0.4,     # boxes around regions > 0.4 * max of each map
    sinkhorn_iters=3,
    affinity_power=2,
    # --- run (not part of the config hash)
    split=None,            # None: data.cam_split
    batch_size=8,          # images per forward pass (images of equal input size are batched together)
    num_workers=2,         # image-reading processes
    bg_threshold=0.4,      # background threshold of the CAM mIoU this stage logs (evaluation only)
)
