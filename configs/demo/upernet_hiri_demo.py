# UPerNet with HIRI-ViT on the synthetic ADE20K-style shapes (mmhiri/datasets/synthetic.py):
# configs/upernet_hiri_s_160k_ade20k.py with only the data, the image scale, the widths and the
# schedule changed (128x128 scenes at 2x, narrow HIRI-ViT from scratch, 64-channel head).
_base_ = ['../upernet_hiri_s_160k_ade20k.py']
data_root = 'data/synthetic/semantic'
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[(120, 120, 120), (220, 60, 50), (60, 190, 70), (60, 90, 220)])
crop_size = (256, 256)
channels = [16, 32, 48, 96, 128]
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, depths=[1, 1, 1, 2, 1],
                  expansions=[2, 2, 3, 3, 3], num_heads=[None, None, None, 2, 4],
                  block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                  stem_channels=16, irds_a_expansion=2, irds_b_expansion=3),
        drop_path_rate=0., init_cfg=None),
    decode_head=dict(in_channels=channels[1:], channels=64, num_classes=4),
    auxiliary_head=dict(in_channels=channels[3], channels=32, num_classes=4))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 256), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                           seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation',
                                           seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=2000, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=2000, by_epoch=False),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=2000))
