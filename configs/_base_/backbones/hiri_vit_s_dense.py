# HIRI-ViT-S for dense prediction: stages 2-5 (strides 8-64 on the paper's 2x input, i.e. the
# grid of a four-stage backbone at 1x). Use as `backbone={{_base_.hiri_backbone}}` and
# `in_channels={{_base_.hiri_channels}}` for the neck (a base cannot define `model` next to the
# framework's model base).
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
# ImageNet-1K HIRI-ViT-S weights (train them with configs/imagenet/hiri_s_448.py); placeholder path
pretrained = 'checkpoints/hiri_s_448_in1k.pth'
hiri_backbone = dict(
    _delete_=True,
    type='mmhiri.HIRIViT',
    arch='s',
    out_indices=(1, 2, 3, 4),
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.'))
hiri_channels = [64, 128, 320, 512]
# The heads' geometry at 2x input. Stages 2-5 have strides 8-64, twice those of a four-stage
# backbone at 1x, and mmdet does not check that anchors and RoI extractors agree with the real
# feature strides, so every detector config states them:
# - RPN anchors on FPN levels 8-128 (P2-P6 of a 1x model);
# - one-stage detectors (FPN from the second input, two extra levels): 16-256;
# - RoI features from levels 8-64, with RoIs assigned to levels by size from a finest scale of
#   112 = 2 x 56, since object sizes double with the input.
hiri_rpn_strides = [8, 16, 32, 64, 128]
hiri_one_stage_strides = [16, 32, 64, 128, 256]
hiri_roi_extractor = dict(featmap_strides=[8, 16, 32, 64], finest_scale=112)
