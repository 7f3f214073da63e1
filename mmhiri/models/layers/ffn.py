"""Feed-forward networks: the token FFN (``Mlp``) and the convolutional FFN (``CFFN``)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from .common import build_act
from .reparam import add_identity_to_dwconv


class Mlp(nn.Module):
    """FFN of a Transformer block on (N, L, C) tokens: FC -> activation -> FC."""

    def __init__(self, in_features: int, hidden_features: Optional[int] = None,
                 out_features: Optional[int] = None, act: str = 'gelu', drop: float = 0.):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_act(act)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class CFFN(nn.Module):
    """Convolutional FFN (HIRI-ViT Eq. 3) on NCHW maps: FC(DWConv(z) + z), z = act(FC(x)).

    The FCs are 1x1 convolutions so the block works on maps directly; the depth-wise 3x3
    convolution is the 2D inductive bias (and the only positional signal of HIRI-ViT). With
    ``memory_efficient`` (training), activation + depth-wise conv + skip are recomputed in
    backward from ``FC(x)``: one hidden-width map kept instead of two. ``deploy=True`` builds
    the folded form, the ``+ z`` skip inside the depth-wise conv's centre tap.
    """

    memory_efficient = False

    def __init__(self, channels: int, expansion: float, act: str = 'gelu', drop: float = 0.,
                 deploy: bool = False):
        super().__init__()
        hidden = int(round(channels * expansion))
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = build_act(act)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.drop = nn.Dropout(drop)
        self.deploy = deploy

    def _act_dwconv(self, h: torch.Tensor) -> torch.Tensor:
        z = self.drop(self.act(h))
        return self.dwconv(z) if self.deploy else self.dwconv(z) + z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.memory_efficient and self.training and h.requires_grad:
            y = cp.checkpoint(self._act_dwconv, h, use_reentrant=False)
        else:
            y = self._act_dwconv(h)
        return self.drop(self.fc2(y))

    def switch_to_deploy(self) -> None:
        """Fold the ``+ z`` skip into the depth-wise conv's centre tap."""
        if not self.deploy:
            self.dwconv = add_identity_to_dwconv(self.dwconv)
            self.deploy = True
