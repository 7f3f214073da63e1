# ViTAE-B fine-tuning on ImageNet-1K at 224x224 after masked-image-modelling pre-training
# (ViTAE §3.3 / ViTAEv2 §3.3): 50 epochs "with layer-wise learning rate decay", as BEiT does.
# The paper gives no decay rate or optimiser settings; these are the MAE ViT-B fine-tuning
# recipe's, as mmpretrain's own MAE benchmark config has them: AdamW lr 2e-3 at a total batch
# of 1024, wd 0.05, layer decay 0.65, 5 warm-up epochs, cosine to 1e-6, drop path 0.1, no
# weight decay on norms, biases, the class token and the position table.
# get_layer_depth: the patch embedding is layer 0, each of the 12 normal cells its own layer,
# the pooled-token norm with the last cell, the head last (12 + 2 layers).
# Pass the pre-trained weights with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/pretrained.pth
_base_ = [
    '../_base_/models/vitae_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(arch='b', out_type='avg_featmap', drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained', checkpoint='vitae_b_pretrained.pth',
                                prefix='backbone.')),
    head=dict(in_channels=768, init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]))
train_dataloader = dict(batch_size=128)  # x 8 GPUs = 1024
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        custom_keys={
            '.norm': dict(decay_mult=0.0),
            'avg_norm': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=45, by_epoch=True, begin=5, end=50, eta_min=1e-6,
         convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
