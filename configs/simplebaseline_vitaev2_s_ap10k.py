# SimpleBaseline (top-down heatmap head: three deconvolutions on the last stage) with ViTAEv2-S
# on AP-10K (ViTAEv2 §4.5.4, Table 13): 256x256, 210 epochs, Adam, lr x0.1 at epochs 170 and
# 200 - mmpose's own ResNet-50 AP-10K config with our backbone in place of ResNet.
_base_ = [
    'mmpose::animal_2d_keypoint/topdown_heatmap/ap10k/td-hm_res50_8xb64-210e_ap10k-256x256.py',
    './_base_/backbones/vitaev2_s_dense.py',
]
# HeatmapHead reads the last of the four maps (stride 32, 512 channels)
model = dict(backbone={{_base_.vitaev2_backbone}}, head=dict(in_channels=512))
