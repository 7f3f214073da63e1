"""mmhiri: HIRI-ViT, ViTAE and ViTAEv2 backbones for OpenMMLab 2.x.

``import mmhiri`` registers the backbones (scope ``mmhiri`` and the root registry) and allows
mmengine checkpoints to load under torch's safe ``weights_only`` loading. It imports torch and
mmengine only - never mmdet, mmseg, mmpose or mmpretrain.
"""
from .version import __version__
from .utils.safe_load import allow_mmengine_checkpoints
from . import models  # noqa: F401,E402  (registers the backbones)

allow_mmengine_checkpoints()

__all__ = ['__version__', 'allow_mmengine_checkpoints']
