# RetinaNet with HIRI-ViT-B, 1x schedule (HIRI-ViT §5.2, Table 4); as retinanet_hiri_s_1x.py.
_base_ = ['./retinanet_hiri_s_1x.py']
pretrained = 'checkpoints/hiri_b_448_in1k.pth'  # placeholder: configs/imagenet/hiri_b_448.py
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.3,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 320, 640]))
