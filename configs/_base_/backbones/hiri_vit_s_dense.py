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
