"""The papers' parameter and FLOP figures that ``paper_table.py`` sets beside ours.

Papers: "HIRI-ViT: Scaling Vision Transformer with High Resolution Inputs" (TPAMI) and
"ViTAEv2: Vision Transformer Advanced by Exploring Inductive Bias for Image Recognition and
Beyond" (IJCV; its Table 1 also lists the ViTAE (v1) models). Params in millions, FLOPs in
GFLOPs (one multiply-add = one FLOP). ``None``: the paper gives no figure.
"""

# Backbones as classifiers: (params M, {square resolution: GFLOPs}); classifier totals.
BACKBONES = {
    # HIRI-ViT paper, Table 2 (224/384/448) and Table 3 (768).
    ('HIRIViT', 's'): (34.8, {224: 4.5, 384: 4.7, 448: 5.0, 768: 16.1}),
    ('HIRIViT', 'b'): (54.4, {224: 8.2, 384: 9.3, 448: 9.9, 768: 31.6}),
    ('HIRIViT', 'l'): (94.4, {224: 17.0, 384: 18.2, 448: 19.9, 768: 63.4}),
    # ViTAEv2 paper, Table 1 (224).
    ('ViTAEv2', 's'): (19.3, {224: 5.7}),
    ('ViTAEv2', '48m'): (48.7, {224: 13.3}),
    ('ViTAEv2', 'b'): (89.7, {224: 24.3}),
    ('ViTAE', 't'): (4.8, {224: 1.5}),
    ('ViTAE', '6m'): (6.5, {224: 2.0}),
    ('ViTAE', '13m'): (13.2, {224: 3.3}),
    ('ViTAE', 's'): (23.6, {224: 5.6}),
}
# HIRI-ViT backbone without a classification head, implied by the detector/segmentor totals
# of the HIRI-ViT paper's Tables 4-6 minus stock necks and heads.
HIRI_BACKBONE = {'s': 30.9, 'b': 49.2}

_T4 = 'HIRI-ViT Table 4 (FLOPs at 1,600×1,200 per its caption)'
_T5 = 'HIRI-ViT Table 5 (FLOPs at 1,600×1,200 per its caption)'
_T6 = 'HIRI-ViT Table 6'
_T6_NOTE = ('caption: "GFLOPs at the resolution of 512×512 as in [27]", the baselines\' '
            'size; the HIRI-ViT figures match its 2× input, 1024×1024 (at 512×512 ours are '
            '59.33 G for S, 65.74 G for B)')
_CASCADE_NOTE = ('mask heads on the final 100 RoIs as at inference (`get_flops.match_inference`); '
                 "mmdet's stock tensor path runs them on all 1000 proposals: 1889.60 G")
_SPARSE_NOTE = ('300 proposals, as the config (mmdet\'s 300-proposal Sparse R-CNN): with 100 '
                'the FLOPs are 101.64 G, so Table 5 counted 300')
_T11 = 'ViTAEv2 Table 11 (params only)'
_PARAMS_37 = ('Table 11 is not reproducible with stock heads: the official backbone (18.84 M, '
              'output-identical) + mmdet FPN/RPN/RoI heads = 38.99 M, and the same arithmetic '
              'gives the table\'s R50 (44.2 vs 44) and Swin-T (47.8 vs 47/48) rows')
_CASCADE_75 = 'the same ~2 M above Table 11 as the Mask R-CNN rows (the table rounds to 1 M)'

# Top-level configs (configs/<name>.py): whole-model params and GFLOPs at ``shape`` (H, W),
# the resolution the source's FLOPs refer to, or the config's own input size where the paper
# gives no FLOPs. ``note``: what a reader should know about the comparison.
CONFIGS = {
    'retinanet_hiri_s_1x': dict(params=41.1, gflops=139, shape=(1200, 1600), source=_T4),
    'retinanet_hiri_b_1x': dict(params=59.8, gflops=202, shape=(1200, 1600), source=_T4),
    'mask_rcnn_hiri_s_1x': dict(params=51.0, gflops=183, shape=(1200, 1600), source=_T4),
    'mask_rcnn_hiri_b_1x': dict(params=69.4, gflops=247, shape=(1200, 1600), source=_T4),
    'cascade_mask_rcnn_hiri_s_3x': dict(params=88.9, gflops=661, shape=(1200, 1600), source=_T5,
                                        note=_CASCADE_NOTE),
    'atss_hiri_s_3x': dict(params=39.0, gflops=123, shape=(1200, 1600), source=_T5),
    'gfl_hiri_s_3x': dict(params=39.1, gflops=125, shape=(1200, 1600), source=_T5),
    'sparse_rcnn_hiri_s_3x': dict(params=113.0, gflops=119, shape=(1200, 1600), source=_T5,
                                  note=_SPARSE_NOTE),
    'upernet_hiri_s_160k_ade20k': dict(params=61.4, gflops=240, shape=(1024, 1024), source=_T6,
                                       note=_T6_NOTE),
    'upernet_hiri_b_160k_ade20k': dict(params=80.6, gflops=265, shape=(1024, 1024), source=_T6,
                                       note=_T6_NOTE),
    'mask_rcnn_vitaev2_s_1x': dict(params=37, gflops=None, shape=(800, 1280), source=_T11,
                                   note=_PARAMS_37),
    'mask_rcnn_vitaev2_s_3x': dict(params=37, gflops=None, shape=(800, 1280), source=_T11,
                                   note=_PARAMS_37),
    'cascade_mask_rcnn_vitaev2_s_1x': dict(params=75, gflops=None, shape=(800, 1280),
                                           source=_T11, note=_CASCADE_75),
    'cascade_mask_rcnn_vitaev2_s_3x': dict(params=75, gflops=None, shape=(800, 1280),
                                           source=_T11, note=_CASCADE_75),
    'upernet_vitaev2_s_160k_ade20k': dict(
        params=49, gflops=None, shape=(512, 512),
        source='ViTAEv2 Table 12 (params only)'),
    'simplebaseline_vitaev2_s_ap10k': dict(
        params=23.1, gflops=None, shape=(256, 256),
        source='ViTAEv2 Table 13 (params only)'),
    'simplebaseline_hiri_s_ap10k': dict(
        params=None, gflops=None, shape=(512, 512), source=None,
        note='no paper figure (HIRI-ViT has no pose experiments); 512×512 = its 2× input'),
}

# Fig. 1-style points for the FLOPs-vs-resolution plot: classifier totals (the heads add
# < 0.01 G), {model: {resolution: GFLOPs}}, with sources.
PLOT_POINTS = {
    'HIRI-ViT-S': {224: 4.5, 384: 4.7, 448: 5.0, 768: 16.1},  # HIRI-ViT Tables 2, 3
    'ViTAEv2-S': {224: 5.7, 384: 17.8},  # ViTAEv2 Table 1; HIRI-ViT Table 3
    'Swin-T': {224: 4.5},  # HIRI-ViT Table 2
    'PVTv2-B2': {224: 4.0},  # HIRI-ViT Table 2
}
# What Fig. 1 of the HIRI-ViT paper states (B-size models, 224 -> 384).
FIG1 = {'Swin-B': {224: 15.4, 384: 47.0}, 'HIRI-ViT-B': {224: 8.2, 384: 9.3}}

# The papers' reported results per config (``configs/<name>.py``; ``tools/analysis/model_index.py``
# puts them into the model index, labelled as the paper's): (source, {metric: value}) as the
# tables print them. Metrics: 'Top 1 Accuracy' / 'Top 5 Accuracy' (ImageNet-1K val), 'box AP' /
# 'mask AP' (COCO val2017), 'mIoU' / 'mIoU (multi-scale)' (ADE20K val; the latter tested with
# multi-scale inputs), 'AP' (AP-10K test). Configs without an entry have no paper result:
# simplebaseline_hiri_s_ap10k (HIRI-ViT has no pose experiments), imagenet/vitaev2_s_224_ema_distill
# (not a paper recipe) and the demos.
_HT2, _HT3 = 'HIRI-ViT Table 2', 'HIRI-ViT Table 3'
_VT2, _VT3 = 'ViTAEv2 Table 2', 'ViTAEv2 Table 3'
RESULTS = {
    'imagenet/hiri_s_224': (_HT2, {'Top 1 Accuracy': 83.6, 'Top 5 Accuracy': 96.7}),
    'imagenet/hiri_s_384': (_HT2, {'Top 1 Accuracy': 84.0, 'Top 5 Accuracy': 96.8}),
    'imagenet/hiri_s_448': (_HT2, {'Top 1 Accuracy': 84.3, 'Top 5 Accuracy': 97.0}),
    'imagenet/hiri_s_768': (_HT3, {'Top 1 Accuracy': 85.4, 'Top 5 Accuracy': 97.5}),
    'imagenet/hiri_b_224': (_HT2, {'Top 1 Accuracy': 84.7, 'Top 5 Accuracy': 97.0}),
    'imagenet/hiri_b_384': (_HT2, {'Top 1 Accuracy': 85.0, 'Top 5 Accuracy': 97.1}),
    'imagenet/hiri_b_448': (_HT2, {'Top 1 Accuracy': 85.2, 'Top 5 Accuracy': 97.2}),
    'imagenet/hiri_b_768': (_HT3, {'Top 1 Accuracy': 86.1, 'Top 5 Accuracy': 97.7}),
    'imagenet/hiri_l_224': (_HT2, {'Top 1 Accuracy': 85.3, 'Top 5 Accuracy': 97.2}),
    'imagenet/hiri_l_384': (_HT2, {'Top 1 Accuracy': 85.5, 'Top 5 Accuracy': 97.4}),
    'imagenet/hiri_l_448': (_HT2, {'Top 1 Accuracy': 85.7, 'Top 5 Accuracy': 97.5}),
    'imagenet/hiri_l_768': (_HT3, {'Top 1 Accuracy': 86.6, 'Top 5 Accuracy': 97.8}),
    'imagenet/vitae_t_224': (_VT2, {'Top 1 Accuracy': 75.3, 'Top 5 Accuracy': 92.7}),
    'imagenet/vitae_6m_224': (_VT2, {'Top 1 Accuracy': 77.9, 'Top 5 Accuracy': 94.1}),
    'imagenet/vitae_13m_224': (_VT2, {'Top 1 Accuracy': 81.0, 'Top 5 Accuracy': 95.4}),
    'imagenet/vitae_s_224': (_VT2, {'Top 1 Accuracy': 82.0, 'Top 5 Accuracy': 95.9}),
    'imagenet/vitaev2_s_224': (_VT2, {'Top 1 Accuracy': 82.6, 'Top 5 Accuracy': 96.2}),
    'imagenet/vitaev2_48m_224': (_VT3, {'Top 1 Accuracy': 83.8, 'Top 5 Accuracy': 96.6}),
    'imagenet/vitaev2_b_224': (_VT3, {'Top 1 Accuracy': 84.6, 'Top 5 Accuracy': 96.9}),
    'retinanet_hiri_s_1x': ('HIRI-ViT Table 4', {'box AP': 46.6}),
    'retinanet_hiri_b_1x': ('HIRI-ViT Table 4', {'box AP': 48.4}),
    'mask_rcnn_hiri_s_1x': ('HIRI-ViT Table 4', {'box AP': 47.3, 'mask AP': 43.0}),
    'mask_rcnn_hiri_b_1x': ('HIRI-ViT Table 4', {'box AP': 49.1, 'mask AP': 44.2}),
    'cascade_mask_rcnn_hiri_s_3x': ('HIRI-ViT Table 5', {'box AP': 52.6}),
    'atss_hiri_s_3x': ('HIRI-ViT Table 5', {'box AP': 51.5}),
    'gfl_hiri_s_3x': ('HIRI-ViT Table 5', {'box AP': 51.8}),
    'sparse_rcnn_hiri_s_3x': ('HIRI-ViT Table 5', {'box AP': 51.9}),
    'upernet_hiri_s_160k_ade20k': ('HIRI-ViT Table 6', {'mIoU': 50.3}),
    'upernet_hiri_b_160k_ade20k': ('HIRI-ViT Table 6', {'mIoU': 51.8}),
    'mask_rcnn_vitaev2_s_1x': ('ViTAEv2 Table 11', {'box AP': 46.3, 'mask AP': 41.8}),
    'mask_rcnn_vitaev2_s_3x': ('ViTAEv2 Table 11', {'box AP': 47.8, 'mask AP': 42.6}),
    'cascade_mask_rcnn_vitaev2_s_1x': ('ViTAEv2 Table 11', {'box AP': 50.6, 'mask AP': 43.6}),
    'cascade_mask_rcnn_vitaev2_s_3x': ('ViTAEv2 Table 11', {'box AP': 51.4, 'mask AP': 44.5}),
    'upernet_vitaev2_s_160k_ade20k': ('ViTAEv2 Table 12',
                                      {'mIoU': 45.0, 'mIoU (multi-scale)': 48.0}),
    'simplebaseline_vitaev2_s_ap10k': ('ViTAEv2 Table 13 (AP-10K test set)', {'AP': 0.718}),
}
