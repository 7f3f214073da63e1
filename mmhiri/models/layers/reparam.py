"""Exact re-parameterisations: fold eval-mode BatchNorms and identity skips into convolutions.

An eval-mode BatchNorm is a per-channel affine map ``y = s * x + t``. It folds

* into the convolution **before** it (``fuse_conv_bn``): ``W' = s * W``, ``b' = s * b + t``;
* into every branch of a **sum** it follows (``scale_conv_``): ``BN(a + b) = s*a + s*b + t``,
  so each branch's last convolution is scaled and one of them takes ``t``;
* into a 1x1, unpadded convolution **after** it (``fuse_bn_conv``):
  ``W (s*x + t) + b = (W * s) x + (W t + b)``.

The blocks own the knowledge of which BN goes where (their ``switch_to_deploy``, and the
``deploy=True`` constructor argument that builds the folded form directly); these helpers only
do the arithmetic, in float64, so a folded model matches the unfolded one to float32 rounding.
How a model then runs fast on a device (kernels, layouts, engines) is ``mmhiri.runtime``'s.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'{bn} keeps no running statistics and cannot be folded')
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _new_conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode).to(conv.weight.device)
    fused.weight.data.copy_(weight.to(conv.weight.dtype))
    fused.bias.data.copy_(bias.to(conv.weight.dtype))
    return fused


def scale_conv_(conv: nn.Conv2d, scale: torch.Tensor,
                shift: Optional[torch.Tensor] = None) -> nn.Conv2d:
    """A new convolution equal to ``scale * conv(x) + shift`` (per output channel)."""
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = torch.zeros_like(scale) if conv.bias is None else conv.bias.double() * scale
    if shift is not None:
        bias = bias + shift
    return _new_conv_like(conv, weight, bias)


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode."""
    return scale_conv_(conv, *bn_affine(bn))


def fuse_bn_conv(bn: nn.modules.batchnorm._BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """A new convolution equal to ``conv(bn(x))`` in eval mode; ``conv`` must be an unpadded,
    ungrouped 1x1 convolution (zero padding would not commute with the BN's shift)."""
    if conv.kernel_size != (1, 1) or conv.padding not in ((0, 0), 0) or conv.groups != 1:
        raise ValueError('a BatchNorm folds into the convolution after it only when that is an '
                         f'unpadded, ungrouped 1x1 convolution, got {conv}')
    scale, shift = bn_affine(bn)
    w = conv.weight.double()
    weight = w * scale.view(1, -1, 1, 1)
    bias = w[:, :, 0, 0] @ shift
    if conv.bias is not None:
        bias = bias + conv.bias.double()
    return _new_conv_like(conv, weight, bias)


def add_identity_to_dwconv(conv: nn.Conv2d) -> nn.Conv2d:
    """A new depth-wise convolution equal to ``conv(x) + x`` (the identity is its centre tap;
    needs an odd kernel with 'same' padding, stride 1)."""
    kh, kw = conv.kernel_size
    if conv.groups != conv.in_channels or conv.in_channels != conv.out_channels or \
            conv.stride != (1, 1) or kh % 2 == 0 or kw % 2 == 0 or \
            conv.padding != (kh // 2, kw // 2) or conv.dilation != (1, 1):
        raise ValueError(f'the identity folds only into a same-size depth-wise conv, got {conv}')
    weight = conv.weight.double().clone()
    weight[:, 0, kh // 2, kw // 2] += 1
    bias = torch.zeros(conv.out_channels, dtype=torch.float64, device=weight.device) \
        if conv.bias is None else conv.bias.double()
    return _new_conv_like(conv, weight, bias)
