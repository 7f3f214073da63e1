# Cascade Mask R-CNN with ViTAEv2-S, 3x schedule (ViTAEv2 §4.5.2, Table 11): mmdet's R50 Cascade
# Mask R-CNN with the Swin 4conv1fc GIoU box heads and the Swin recipe - AdamW (lr 1e-4, wd
# 0.05), multi-scale 480-800 with the DETR-style crop, 36 epochs, batch 16.
_base_ = [
    'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
    './_base_/backbones/vitaev2_s_dense.py',
    './_base_/models/cascade_giou_heads.py',
    './_base_/recipes/swin_coco_ms_crop.py',
]
model = dict(
    backbone={{_base_.vitaev2_backbone}},
    neck=dict(in_channels=[64, 128, 256, 512]),
    roi_head=dict(bbox_head={{_base_.cascade_giou_bbox_heads}}))
train_dataloader = dict(dataset=dict(pipeline={{_base_.swin_ms_crop_mask_train_pipeline}}))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = {{_base_.param_scheduler_3x}}
optim_wrapper = {{_base_.adamw_optim_wrapper}}
auto_scale_lr = dict(base_batch_size=16)
