"""Token mixers on (N, L, C) tokens: full multi-head attention, window attention and Performer
attention. Each exists once and serves HIRI-ViT, ViTAE and ViTAEv2."""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import nlc_to_nhwc, pad_to_multiple, sizes_are_symbolic


class MultiheadAttention(nn.Module):
    """Full multi-head self-attention over all tokens (HIRI-ViT Eq. 1; ViTAE's global attention).

    Args:
        in_dim (int): Input token width.
        num_heads (int): Heads; they split ``out_dim``.
        out_dim (int, optional): Width of q, k, v and the output. Defaults to ``in_dim``.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        qk_scale (float, optional): Overrides ``head_dim ** -0.5``.
        attn_drop (float): Dropout on the attention weights.
        proj_drop (float): Dropout after the output projection.
        v_shortcut (bool): Add ``v`` (heads merged) to the output: the skip a reduction cell
            needs when ``in_dim != out_dim``. Defaults to False.
        fused_attn (bool): Compute softmax(q k^T * scale) v with
            ``F.scaled_dot_product_attention`` (no attention matrix is materialised or kept for
            backward); False runs the explicit product. Same parameters, same outputs up to
            float reordering. Under ``torch.jit.trace`` the explicit product runs either way
            (see :meth:`attention_product`). Defaults to True.
    """

    def __init__(self, in_dim: int, num_heads: int, out_dim: Optional[int] = None,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0., v_shortcut: bool = False,
                 fused_attn: bool = True):
        super().__init__()
        out_dim = out_dim or in_dim
        if out_dim % num_heads:
            raise ValueError(f'attention width {out_dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.out_dim = out_dim
        self.scale = qk_scale or (out_dim // num_heads)**-0.5
        self.v_shortcut = v_shortcut
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(in_dim, out_dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Attention among the tokens of each row of ``x`` (B, L, in_dim) -> (B, L, out_dim),
        including ``proj`` (and the ``v`` shortcut when enabled)."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.out_dim // self.num_heads)
        out = self.proj_drop(self.proj(self.attention_product(qkv)))
        if self.v_shortcut:
            out = qkv[:, :, 2].reshape(b, n, self.out_dim) + out
        return out

    def attention_product(self, qkv: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v of every head: (B, L, 3, heads, d) -> (B, L, heads * d).

        The fused kernel when ``fused_attn``; the explicit product otherwise, and always while
        ``torch.jit.trace`` records the graph: FLOP counters that trace (mmengine's
        ``FlopAnalyzer``, mmdet's ``get_flops.py``) then count the two matrix products, and the
        legacy ONNX exporter (opsets below 14 have no attention op) and TorchScript-based
        converters get standard ops. ``mmhiri.runtime`` may override this per device."""
        b, n = qkv.shape[:2]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn and not torch.jit.is_tracing():
            ctx = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0., scale=self.scale)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            ctx = self.attn_drop(attn.softmax(dim=-1)) @ v
        return ctx.transpose(1, 2).reshape(b, n, self.out_dim)

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        return self.attend(x)


class WindowAttention(MultiheadAttention):
    """Multi-head attention inside non-overlapping ``window_size`` x ``window_size`` windows.

    Maps whose sides are not multiples of the window are zero-padded (after the pre-norm, as
    the tokens arrive) with ``pad // 2`` before and the rest after, then cropped back. Padded
    tokens take part as keys; there is no shift, mask or relative position bias (ViTAEv2's
    window attention).
    """

    def __init__(self, in_dim: int, num_heads: int, window_size: int = 7, **kwargs):
        super().__init__(in_dim, num_heads, **kwargs)
        self.window_size = window_size

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        h, w = hw_shape
        ws = self.window_size
        x = nlc_to_nhwc(x, hw_shape)
        b, c = x.shape[0], x.shape[-1]
        pad_h, pad_w = pad_to_multiple(h, ws), pad_to_multiple(w, ws)
        top, left = pad_h // 2, pad_w // 2
        # partition and reverse in the tokens' own (B, H, W, C) layout: one copy each way (an
        # NCHW route costs a layout change more; outputs are bit-identical). No branch on
        # sizes that are being recorded (compiled, exported or traced graphs pad always).
        padded = sizes_are_symbolic() or pad_h > 0 or pad_w > 0
        if padded:
            x = F.pad(x, (0, 0, left, pad_w - left, top, pad_h - top))
        hp, wp = h + pad_h, w + pad_w
        nh, nw = hp // ws, wp // ws
        # (B, nh*ws, nw*ws, C) -> (B*nh*nw, ws*ws, C): windows raster-ordered, tokens raster
        # inside a window
        windows = x.reshape(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(
            b * nh * nw, ws * ws, c)
        out = self.attend(windows)
        c_out = out.shape[-1]
        out = out.reshape(b, nh, nw, ws, ws, c_out).permute(0, 1, 3, 2, 4, 5).reshape(
            b, hp, wp, c_out)
        if padded:
            out = out[:, top:top + h, left:left + w]
        return out.reshape(b, h * w, c_out)


class PerformerAttention(nn.Module):
    """Single-head Performer attention with positive random features (ViTAE's reduction cells):
    linear in the number of tokens, with a ``v`` shortcut.

    ``phi(z) = exp(z @ w.T - |z|^2 / 2) / sqrt(m)`` with ``m = out_dim * kernel_ratio`` fixed
    orthogonal random features ``w`` (a buffer: saved, loaded, never trained); the kqv
    projection is split in the order k, q, v.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_ratio: float = 0.5,
                 qkv_bias: bool = True, proj_drop: float = 0., eps: float = 1e-8):
        super().__init__()
        self.out_dim = out_dim
        self.eps = eps
        self.num_features = int(out_dim * kernel_ratio)
        self.kqv = nn.Linear(in_dim, 3 * out_dim, bias=qkv_bias)
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        w = torch.empty(self.num_features, out_dim)
        nn.init.orthogonal_(w)
        self.register_buffer('w', w * math.sqrt(self.num_features))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        sq_norm = (x * x).sum(dim=-1, keepdim=True) / 2
        return torch.exp(x @ self.w.t() - sq_norm) / math.sqrt(self.num_features)

    def kernel_attention(self, k: torch.Tensor, q: torch.Tensor, v: torch.Tensor
                         ) -> torch.Tensor:
        kp, qp = self.feature_map(k), self.feature_map(q)  # (B, L, m)
        denom = (qp @ kp.sum(dim=1).unsqueeze(-1))  # (B, L, 1)
        kptv = v.transpose(1, 2) @ kp  # (B, out_dim, m)
        return (qp @ kptv.transpose(1, 2)) / (denom + self.eps)

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        k, q, v = self.kqv(x).split(self.out_dim, dim=-1)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # under mixed precision the random-feature kernel runs in fp32: it exponentiates a
            # difference of large terms and divides by sums that reach 1e-6
            with torch.autocast(device, enabled=False):
                y = self.kernel_attention(k.float(), q.float(), v.float())
        else:
            y = self.kernel_attention(k, q, v)
        return v + self.proj_drop(self.proj(y))
