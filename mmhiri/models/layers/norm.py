"""Norm layers on NCHW maps."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def build_norm2d(kind: str, channels: int) -> nn.Module:
    """'bn' -> BatchNorm2d, 'ln' -> channel LayerNorm (eps 1e-6), on NCHW maps."""
    if kind == 'bn':
        return nn.BatchNorm2d(channels)
    if kind == 'ln':
        return LayerNorm2d(channels, eps=1e-6)
    raise ValueError(f"unknown norm {kind!r}; expected 'bn' or 'ln'")
