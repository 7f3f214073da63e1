# GFL with HIRI-ViT-S, 3x schedule (HIRI-ViT §5.2, Table 5): mmdet's R50 GFL with HIRI-ViT-S
# stages 2-5, multi-scale 960-1600 (longer side <= 2666), AdamW, 36 epochs, batch 16. (mmdet has
# no 3x GFL recipe with AdamW; the schedule is the paper's, from ./_base_/recipes/.)
_base_ = [
    'mmdet::gfl/gfl_r50_fpn_1x_coco.py',
    './_base_/backbones/hiri_vit_s_dense.py',
    './_base_/recipes/hiri_coco_ms_3x.py',
]
model = dict(
    backbone={{_base_.hiri_backbone}},
    neck=dict(in_channels={{_base_.hiri_channels}}),
    bbox_head=dict(anchor_generator=dict(strides={{_base_.hiri_one_stage_strides}})))
train_dataloader = dict(batch_size=2, dataset=dict(pipeline={{_base_.hiri_ms_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.hiri_test_pipeline}}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=36)
param_scheduler = {{_base_.param_scheduler_3x}}
optim_wrapper = {{_base_.adamw_optim_wrapper}}
auto_scale_lr = dict(base_batch_size=16)
