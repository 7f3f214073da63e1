# ViTAEv2-S for dense prediction (four stages, strides 4-32). Use as
# `backbone={{_base_.vitaev2_backbone}}` (a base cannot define `model` next to the framework's).
custom_imports = dict(imports=['mmhiri'], allow_failed_imports=False)
# official ViTAEv2-S ImageNet weights converted with tools/model_converters/vitae2mmhiri.py
# (placeholder path)
vitaev2_pretrained = 'checkpoints/vitaev2_s_in1k_mmhiri.pth'
vitaev2_backbone = dict(
    _delete_=True,
    type='mmhiri.ViTAEv2',
    arch='s',
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.1,  # the official Mask R-CNN config's value
    init_cfg=dict(type='Pretrained', checkpoint=vitaev2_pretrained))
