# ViTAEv2 classifier as the official code builds it: mean over the last stage's tokens
# (= global average pooling of the stride-32 map), then one Linear layer; no final norm.
# Official weights: tools/model_converters/vitae2mmhiri.py SRC DST --with-head
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmhiri.ViTAEv2', arch='s', out_indices=(3, ), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
