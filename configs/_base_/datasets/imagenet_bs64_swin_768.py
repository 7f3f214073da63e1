# Fine-tuning at 768x768 (HIRI-ViT Table 3): the paper states only the optimiser settings, so
# the augmentations of the main recipe are kept, as DeiT and Swin do when they fine-tune at
# higher resolution (RandomResizedCrop, flip, RandAugment, RandomErasing; Mixup/CutMix are batch
# augments in the model); test: resize the short side to 768/0.875, centre crop 768, like the
# 224/384/448 configs.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py']
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=768, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=int(768 / 0.875), edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=768),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
