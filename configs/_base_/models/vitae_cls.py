# Isotropic ViTAE classifier as the official code builds it: the backbone returns the mean of
# the last stage's tokens (out_type='avg_featmap'), then one Linear layer; no neck, no final norm.
# Official weights: tools/model_converters/vitae2mmhiri.py SRC DST --with-head
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmhiri.ViTAE', arch='t', out_type='avg_featmap', drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=256,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
