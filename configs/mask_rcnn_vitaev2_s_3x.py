# Mask R-CNN with ViTAEv2-S, 3x schedule (ViTAEv2 §4.5.2, Table 11): the Swin recipe - AdamW
# (lr 1e-4, wd 0.05), multi-scale 480-800 with the DETR-style random crop, 36 epochs, batch 16 -
# which is mmdet's own Swin-T "ms-crop-3x" config with our backbone in place of Swin.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    './_base_/backbones/vitaev2_s_dense.py',
]
model = dict(backbone={{_base_.vitaev2_backbone}}, neck=dict(in_channels=[64, 128, 256, 512]))
# as Swin: no weight decay on norms (LayerNorms match 'norm'; norm_decay_mult also covers the
# BatchNorms inside the convolution branches)
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
