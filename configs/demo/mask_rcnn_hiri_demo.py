# `make demo`: Mask R-CNN with HIRI-ViT on the synthetic shapes (mmhiri/datasets/synthetic.py).
# It is configs/mask_rcnn_hiri_s_1x.py with only the data, the image scale, the widths and the
# schedule changed, so that it learns on a 2-core CPU within minutes: 128x128 scenes fed at 2x
# (256x256, the paper's 2x input), a narrow HIRI-ViT (same five stages and block types) trained
# from scratch, a 64-channel FPN and heads, and a short AdamW schedule.
_base_ = ['../mask_rcnn_hiri_s_1x.py']

data_root = 'data/synthetic/instances/'
metainfo = dict(classes=('circle', 'square', 'triangle'),
                palette=[(220, 60, 50), (60, 190, 70), (60, 90, 220)])
scale = (256, 256)

# --- widths: a narrow HIRI-ViT from scratch, 64-channel neck and heads
channels = [16, 32, 48, 96, 128]
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, depths=[1, 1, 1, 2, 1],
                  expansions=[2, 2, 3, 3, 3], num_heads=[None, None, None, 2, 4],
                  block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                  stem_channels=16, irds_a_expansion=2, irds_b_expansion=3),
        drop_path_rate=0., init_cfg=None),
    neck=dict(in_channels=channels[1:], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=3)),
    train_cfg=dict(rpn=dict(sampler=dict(num=128)), rcnn=dict(sampler=dict(num=128))))

# --- data: the synthetic COCO-format instances at 2x
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='images/train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# --- schedule: 8 short epochs (400 iterations), AdamW at a from-scratch learning rate, lr x0.1
# at epochs 6 and 7
train_cfg = dict(max_epochs=8, val_interval=8)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=8, by_epoch=True, milestones=[6, 7], gamma=0.1)
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=8, max_keep_ckpts=1))
