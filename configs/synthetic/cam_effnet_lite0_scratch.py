# The from-scratch twin of cam_effnet_lite0.py: same backbone, schedule and CAM settings, random initial weights.
_base_ = ['./cam_effnet_lite0.py']

cls_model = dict(weights=None)
