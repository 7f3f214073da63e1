# Cascade Mask R-CNN with ViTAEv2-S, 1x schedule (ViTAEv2 §4.5.2, Table 11): the recipe of
# cascade_mask_rcnn_vitaev2_s_3x.py for 12 epochs, lr x0.1 at epochs 8 and 11.
_base_ = ['./cascade_mask_rcnn_vitaev2_s_3x.py']
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = {{_base_.param_scheduler_1x}}
