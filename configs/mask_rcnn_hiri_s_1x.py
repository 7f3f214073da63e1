# Mask R-CNN with HIRI-ViT-S, 1x schedule (HIRI-ViT §5.2, Table 4): 2x input resolution (shorter side
# 1600, longer <= 2666), stages 2-5 into the FPN, AdamW, batch 16.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance_hr1600.py',
    './_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/backbones/hiri_vit_s_dense.py',
]
model = dict(
    backbone={{_base_.hiri_backbone}},
    neck=dict(in_channels={{_base_.hiri_channels}}),
    rpn_head=dict(anchor_generator=dict(strides={{_base_.hiri_rpn_strides}})),
    roi_head=dict(
        bbox_roi_extractor={{_base_.hiri_roi_extractor}},
        mask_roi_extractor={{_base_.hiri_roi_extractor}}))
