# RetinaNet with HIRI-ViT-S, 1x schedule (HIRI-ViT §5.2, Table 4): 2x input resolution, stages
# 2-5 into the FPN (which, as for Swin/PVT, starts at its second input), AdamW, batch 16.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    './_base_/datasets/coco_detection_hr1600.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
# ImageNet-1K HIRI-ViT-S weights (train them with configs/imagenet/hiri_s_448.py); placeholder path
pretrained = 'checkpoints/hiri_s_448_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmhiri.HIRIViT',
        arch='s',
        out_indices=(1, 2, 3, 4),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512], start_level=1, add_extra_convs='on_input'))
