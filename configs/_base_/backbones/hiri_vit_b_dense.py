# HIRI-ViT-B for dense prediction; see hiri_vit_s_dense.py.
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
# ImageNet-1K HIRI-ViT-B weights (train them with configs/imagenet/hiri_b_448.py); placeholder path
pretrained = 'checkpoints/hiri_b_448_in1k.pth'
hiri_backbone = dict(
    _delete_=True,
    type='mmhiri.HIRIViT',
    arch='b',
    out_indices=(1, 2, 3, 4),
    drop_path_rate=0.3,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.'))
hiri_channels = [96, 192, 320, 640]
