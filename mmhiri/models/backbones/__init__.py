from .base import BaseBackbone
from .hiri_vit import HIRIViT
from .vitae import ViTAE
from .vitaev2 import ViTAEv2

__all__ = ['BaseBackbone', 'HIRIViT', 'ViTAE', 'ViTAEv2']
