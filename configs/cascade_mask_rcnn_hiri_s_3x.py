# Cascade Mask R-CNN with HIRI-ViT-S, 3x schedule (HIRI-ViT §5.2, Table 5): mmdet's R50 Cascade
# Mask R-CNN with the Swin 4conv1fc GIoU box heads, HIRI-ViT-S stages 2-5, multi-scale 960-1600
# (longer side <= 2666), AdamW, 36 epochs, batch 16.
_base_ = [
    'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
    './_base_/backbones/hiri_vit_s_dense.py',
    './_base_/models/cascade_giou_heads.py',
    './_base_/recipes/hiri_coco_ms_3x.py',
]
model = dict(
    backbone={{_base_.hiri_backbone}},
    neck=dict(in_channels={{_base_.hiri_channels}}),
    rpn_head=dict(anchor_generator=dict(strides={{_base_.hiri_rpn_strides}})),
    roi_head=dict(
        bbox_roi_extractor={{_base_.hiri_roi_extractor}},
        mask_roi_extractor={{_base_.hiri_roi_extractor}},
        bbox_head={{_base_.cascade_giou_bbox_heads}}))
train_dataloader = dict(batch_size=2, dataset=dict(pipeline={{_base_.hiri_ms_mask_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.hiri_mask_test_pipeline}}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=36)
param_scheduler = {{_base_.param_scheduler_3x}}
optim_wrapper = {{_base_.adamw_optim_wrapper}}
auto_scale_lr = dict(base_batch_size=16)
