from .base import BaseBackbone, NonFiniteInputError
from .hiri_vit import HIRIViT
from .vitae import ViTAE
from .vitaev2 import ViTAEv2

__all__ = ['BaseBackbone', 'NonFiniteInputError', 'HIRIViT', 'ViTAE', 'ViTAEv2']
