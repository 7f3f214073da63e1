# SimpleBaseline with HIRI-ViT-S on AP-10K: the recipe of simplebaseline_vitaev2_s_ap10k.py at
# HIRI-ViT's 2x input (512x512 crops; the last stage, stride 64, and the head's 8x upsampling
# give the usual 64x64 heatmaps).
_base_ = [
    'mmpose::animal_2d_keypoint/topdown_heatmap/ap10k/td-hm_res50_8xb64-210e_ap10k-256x256.py',
    './_base_/backbones/hiri_vit_s_dense.py',
]
codec = dict(
    type='MSRAHeatmap', input_size=(512, 512), heatmap_size=(64, 64), sigma=2)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmhiri.HIRIViT',
        arch='s',
        out_indices=(4, ),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.pretrained}}, prefix='backbone.')),
    head=dict(in_channels=512, decoder=codec))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
