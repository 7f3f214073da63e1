"""HIRI-ViT building blocks (paper §4, Figs. 3-5). All work on NCHW maps of any size.

Choices where the paper is silent (each is listed again in ``HIRIViT``'s docstring):

* Activation: GELU everywhere (§3's CFFN sigma; the paper names no other).
* Every convolution that is followed by a norm has no bias.
* Down-sampling by 2 is a 3x3 convolution with stride 2 and padding 1 (or an average pool with
  ``ceil_mode``): an H x W map becomes ceil(H/2) x ceil(W/2), so no padding is needed anywhere.
* "Upsampling by repetition" (§4.2) is nearest-neighbour x2, cropped back to the
  high-resolution size.
* HR block: ``x + DropPath(BN(DW(x) + Up(FFN(BN(DWs2(x))))))`` - the fused sum is
  batch-normed as in the HR-stem (§4.1), and the block is residual.
* IRDS "down-sampling shortcut" (§4.3): 2x2 average pool (ceil mode) + 1x1 conv + BN, added to
  the main branch.

Every block with a BatchNorm takes ``deploy``: ``True`` builds its folded form (the BN folded
into a convolution next to it, same state_dict keys as ``switch_to_deploy()`` leaves), so a
folded checkpoint loads into a model built with ``deploy=True``.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiheadAttention
from .common import DropPath, bn_act, build_act, nchw_to_nlc, nlc_to_nchw
from .ffn import CFFN
from .reparam import bn_affine, fuse_bn_conv, fuse_conv_bn, scale_conv_


class ConvBN(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional activation (BN + activation through
    :func:`bn_act` while training: only the BN input is kept for backward)."""

    memory_efficient = True

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1, act: Optional[str] = None, deploy: bool = False):
        layers = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=deploy),
            nn.Identity() if deploy else nn.BatchNorm2d(out_ch)
        ]
        if act:
            layers.append(build_act(act))
        super().__init__(*layers)
        self.deploy = deploy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self[0](x)
        if len(self) == 3:
            return bn_act(self[1], self[2], x, self.memory_efficient)
        return self[1](x)

    def switch_to_deploy(self) -> None:
        """Fold the BN into the convolution (``self[1]`` becomes an identity)."""
        if not self.deploy:
            self[0] = fuse_conv_bn(self[0], self[1])
            self[1] = nn.Identity()
            self.deploy = True


class HRStem(nn.Module):
    """HR-stem (§4.1, Fig. 3c): stride-2 conv, then a light high-resolution branch and a
    heavier low-resolution branch, summed and batch-normed; overall stride 4."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int,
                 act: str = 'gelu', deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.conv = ConvBN(in_channels, mid_channels, 3, stride=2, act=act, deploy=deploy)
        # high-resolution branch: depth-wise conv at stride 2, then a strided conv
        self.high = nn.Sequential(
            ConvBN(mid_channels, mid_channels, 3, groups=mid_channels, act=act, deploy=deploy),
            nn.Conv2d(mid_channels, out_channels, 3, 2, 1, bias=deploy))
        # low-resolution branch: strided conv first, then 3x3 and 1x1 convs
        self.low = nn.Sequential(
            ConvBN(mid_channels, out_channels, 3, stride=2, act=act, deploy=deploy),
            ConvBN(out_channels, out_channels, 3, act=act, deploy=deploy),
            nn.Conv2d(out_channels, out_channels, 1, bias=deploy))
        self.norm = nn.Identity() if deploy else nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.norm(self.high(x) + self.low(x))

    def switch_to_deploy(self) -> None:
        """Fold the BN after the sum into the last convolution of each branch."""
        if not self.deploy:
            scale, shift = bn_affine(self.norm)
            self.high[1] = scale_conv_(self.high[1], scale, shift)
            self.low[2] = scale_conv_(self.low[2], scale)
            self.norm = nn.Identity()
            self.deploy = True


class HRBlock(nn.Module):
    """HR block (§4.2, Fig. 4): depth-wise conv at full resolution in parallel with a stride-2
    depth-wise conv + BN + FFN at half resolution, upsampled by repetition and fused."""

    def __init__(self, channels: int, expansion: float, drop_path: float = 0.,
                 act: str = 'gelu', deploy: bool = False):
        super().__init__()
        hidden = int(round(channels * expansion))
        self.deploy = deploy
        self.high = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=deploy)
        self.down = ConvBN(channels, channels, 3, stride=2, groups=channels, deploy=deploy)
        self.ffn = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), build_act(act), nn.Conv2d(hidden, channels, 1))
        self.norm = nn.Identity() if deploy else nn.BatchNorm2d(channels)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        low = self.ffn(self.down(x))
        # nearest up-sampling by repetition, cropped to (h, w): with ``size=`` PyTorch and ONNX
        # pick source row floor(i * ceil(h/2) / h) = i // 2, the same rows as ``scale_factor=2``
        # and a crop; a crop as a slice was dropped from exported channels-last graphs
        low = F.interpolate(low, size=(h, w), mode='nearest')
        return x + self.drop_path(self.norm(self.high(x) + low))

    def switch_to_deploy(self) -> None:
        """Fold the BN after the fused sum into the depth-wise conv and the FFN's last conv
        (nearest up-sampling commutes with a per-channel affine map)."""
        if not self.deploy:
            scale, shift = bn_affine(self.norm)
            self.high = scale_conv_(self.high, scale, shift)
            self.ffn[2] = scale_conv_(self.ffn[2], scale)
            self.norm = nn.Identity()
            self.deploy = True


class CFFNBlock(nn.Module):
    """CFFN block (stage 3): ``x + DropPath(CFFN(BN(x)))``."""

    def __init__(self, channels: int, expansion: float, drop_path: float = 0.,
                 act: str = 'gelu', drop: float = 0., deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.norm = nn.Identity() if deploy else nn.BatchNorm2d(channels)
        self.cffn = CFFN(channels, expansion, act=act, drop=drop, deploy=deploy)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.cffn(self.norm(x)))

    def switch_to_deploy(self) -> None:
        """Fold the pre-norm BN into the CFFN's first (1x1) convolution (the CFFN folds its
        own skip in its ``switch_to_deploy``)."""
        if not self.deploy:
            self.cffn.fc1 = fuse_bn_conv(self.norm, self.cffn.fc1)
            self.norm = nn.Identity()
            self.deploy = True


class TransformerBlock(nn.Module):
    """Transformer block (stages 4-5): LN + multi-head attention, then BN + CFFN (§4.4)."""

    def __init__(self, channels: int, num_heads: int, expansion: float, drop_path: float = 0.,
                 act: str = 'gelu', qkv_bias: bool = True, drop: float = 0.,
                 attn_drop: float = 0., deploy: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.attn = MultiheadAttention(channels, num_heads, qkv_bias=qkv_bias,
                                       attn_drop=attn_drop, proj_drop=drop)
        self.cffn_block = CFFNBlock(channels, expansion, drop_path, act=act, drop=drop,
                                    deploy=deploy)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw = x.shape[-2:]
        tokens = nchw_to_nlc(x)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens), hw))
        return self.cffn_block(nlc_to_nchw(tokens, hw))


class IRDS(nn.Module):
    """Inverted Residual Down-Sampling (§4.3, Fig. 5b/c), stride 2, plus a down-sampling
    shortcut. ``'a'``: strided 3x3 conv (expand) -> 1x1 conv (shrink); ``'b'``: inverted
    residual - 1x1 expand (+BN+act) -> stride-2 depth-wise 3x3 -> 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, kind: str, hidden_channels: int,
                 act: str = 'gelu', deploy: bool = False):
        super().__init__()
        hidden = hidden_channels
        if kind == 'a':
            self.main = nn.Sequential(
                ConvBN(in_channels, hidden, 3, stride=2, act=act, deploy=deploy),
                ConvBN(hidden, out_channels, 1, deploy=deploy))
        elif kind == 'b':
            self.main = nn.Sequential(
                ConvBN(in_channels, hidden, 1, act=act, deploy=deploy),
                nn.Conv2d(hidden, hidden, 3, 2, 1, groups=hidden),
                nn.Conv2d(hidden, out_channels, 1))
        else:
            raise ValueError(f"IRDS kind must be 'a' or 'b', got {kind!r}")
        self.kind = kind
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
            ConvBN(in_channels, out_channels, 1, deploy=deploy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
