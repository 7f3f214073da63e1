# The detection optimiser and schedules of mmdet's Swin configs, which HIRI-ViT §5.2 and ViTAEv2
# §4.5 follow, as variables for `{{_base_.x}}` (a base cannot redefine `optim_wrapper` next to a
# stock detector config that already has one): AdamW lr 1e-4, wd 0.05, no weight decay on norms;
# 1000 linear warm-up iterations; lr x0.1 at epochs 8, 11 (1x) or 27, 33 (3x). Batch 16 = 8 GPUs x
# 2 images; auto_scale_lr rescales for other totals (--auto-scale-lr).
adamw_optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, norm_decay_mult=0.),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999),
                   weight_decay=0.05))
param_scheduler_1x = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
param_scheduler_3x = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
