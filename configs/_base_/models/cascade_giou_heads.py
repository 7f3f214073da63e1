# The three box heads of the Swin Cascade Mask R-CNN, which ViTAEv2 §4.5.2 and HIRI-ViT Table 5
# use: 4 shared 3x3 convs (SyncBN) + 1 fc ("4conv1fc"), class-specific regression decoded to
# boxes and trained with GIoU (weight 10), the usual cascade target stds per stage. A variable
# for `roi_head=dict(bbox_head={{_base_.cascade_giou_bbox_heads}})`.
cascade_giou_bbox_heads = [
    dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
]
