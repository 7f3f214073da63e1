# mmseg's Swin UPerNet ADE20K recipe (AdamW lr 6e-5, wd 0.01, batch 16 = 8x2, 1500 linear
# warm-up iterations then linear decay, flip, photometric distortion, rescale 0.5-2.0, 160k
# iterations) at HIRI-ViT's 2x resolution: crop 1024x1024 from images rescaled around 4096x1024.
# The configs that use it add the backbone (configs/upernet_hiri_*_160k_ade20k.py).
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py']
crop_size = (1024, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(4096, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(4096, 1024), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# as mmseg's Swin config: no weight decay on norms; norm_decay_mult also covers HIRI-ViT's
# BatchNorms, which the config's 'norm' key does not match
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
