# Mask R-CNN with ViTAEv2-S, 1x schedule (ViTAEv2 §4.5.2, Table 11): the 3x recipe of
# mask_rcnn_vitaev2_s_3x.py (multi-scale 480-800 + crop, AdamW) for 12 epochs, lr x0.1 at 8, 11.
_base_ = ['./mask_rcnn_vitaev2_s_3x.py']
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1)
]
