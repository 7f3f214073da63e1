# HIRI-ViT's 3x COCO recipe (§5.2, Table 5), as variables for `{{_base_.x}}` next to a stock
# mmdet detector config: 36 epochs, each training image resized so that its shorter side is
# random in [960, 1600] and its longer side <= 2666 (2x the usual 480-800 / 1333 of [14], [40]),
# horizontal flip; test at shorter side 1600. AdamW and the 3x steps from ./adamw.py.
_base_ = ['./adamw.py']
hiri_ms_scale = [(2666, 960), (2666, 1600)]  # RandomResize: short side uniform in 960-1600
hiri_ms_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=hiri_ms_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
hiri_ms_mask_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=hiri_ms_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
hiri_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(2666, 1600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
hiri_mask_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(2666, 1600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
