# SimpleBaseline (top-down heatmap head: three deconvolutions on the last stage) with ViTAEv2-S
# on AP-10K (ViTAEv2 §4.5.4, Table 13): 256x256, 210 epochs, Adam, lr x0.1 at epochs 170 and
# 200 - mmpose's own ResNet-50 AP-10K config with our backbone in place of ResNet.
_base_ = ['mmpose::animal_2d_keypoint/topdown_heatmap/ap10k/td-hm_res50_8xb64-210e_ap10k-256x256.py']
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
# official ViTAEv2-S ImageNet weights converted with tools/model_converters/vitae2mmhiri.py
# (placeholder path)
pretrained = 'checkpoints/vitaev2_s_in1k_mmhiri.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmhiri.ViTAEv2',
        arch='s',
        out_indices=(3, ),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    head=dict(in_channels=512))
