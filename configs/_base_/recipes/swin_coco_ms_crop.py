# The Swin COCO training augmentation that ViTAEv2 §4.5.2 uses for every detector (mmdet's
# `swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py`, restated as a variable because that file
# also defines a Mask R-CNN `model`): flip, then either multi-scale 480-800 (longer side <= 1333)
# or the DETR-style resize 400-600 -> random crop 384-600 -> resize 480-800. AdamW and the 1x/3x
# steps from ./adamw.py.
_base_ = ['./adamw.py']
swin_ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                  (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
swin_ms_crop_mask_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=swin_ms_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=swin_ms_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
