# SimpleBaseline with HIRI-ViT on the synthetic keypoint shapes (mmhiri/datasets/synthetic.py):
# configs/simplebaseline_hiri_s_ap10k.py with only the data, the input size, the widths and the
# schedule changed (128x128 crops, narrow HIRI-ViT from scratch, 64-channel deconvolutions).
_base_ = ['../simplebaseline_hiri_s_ap10k.py']
data_root = 'data/synthetic/keypoints/'
metainfo = dict(from_file='configs/_base_/datasets/synthetic_quads.py')
codec = dict(type='MSRAHeatmap', input_size=(128, 128), heatmap_size=(16, 16), sigma=1)
channels = [16, 32, 48, 96, 128]
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, depths=[1, 1, 1, 2, 1],
                  expansions=[2, 2, 3, 3, 3], num_heads=[None, None, None, 2, 4],
                  block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                  stem_channels=16, irds_a_expansion=2, irds_b_expansion=3),
        drop_path_rate=0., init_cfg=None),
    head=dict(in_channels=channels[-1], out_channels=5, deconv_out_channels=(64, 64, 64),
              decoder=codec))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', rotate_factor=10),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
dataset = dict(type='CocoDataset', data_root=data_root, metainfo=metainfo, data_mode='topdown')
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, ann_file='annotations/keypoints_train.json',
                 data_prefix=dict(img='images/train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, ann_file='annotations/keypoints_val.json', bbox_file=None,
                 data_prefix=dict(img='images/val/'), pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/keypoints_val.json')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_epochs=20, val_interval=20)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=50, start_factor=0.01, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=20, milestones=[15, 18], gamma=0.1, by_epoch=True)
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=20))
