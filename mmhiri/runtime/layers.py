"""Layers that run one of several exact implementations, chosen by measurement.

Each is a drop-in for a layer of ``mmhiri.models`` (same parameters and buffers, not copies;
the same state_dict keys), made by :func:`mmhiri.runtime.optimize`. Outside eager inference
(gradients wanted, ``torch.compile``, ``torch.export``, ONNX export, ``torch.jit.trace``, or
training mode for attention) each runs the standard op, so nothing it does can reach a
backward pass or an exported graph.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.layers.attention import MultiheadAttention, WindowAttention
from . import cpu
from .choice import MeasuredChoice, size_bucket


def routable(x: torch.Tensor, *params) -> bool:
    """Eager inference on concrete sizes, nothing needing gradients."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or \
            torch.onnx.is_in_onnx_export():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(
            p is not None and p.requires_grad for p in params)):
        return False
    return True


def _onednn_fp32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32 and \
        cpu.onednn_conv_ops() is not None


class _PackedWeight:
    """A derived copy of the layer's weight, cached under a key that includes the weight's
    storage and version (``load_state_dict`` copies in place) and the input size it was
    derived for; never saved, copied or pickled."""

    _cache = None

    def _derived(self, key, derive) -> torch.Tensor:
        w = self.weight
        key = (key, w.data_ptr(), w._version, w.dtype, w.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, derive(w.detach()))
        return self._cache[1]

    def __getstate__(self):
        state = super().__getstate__().copy()
        state['_cache'] = None
        return state


def _share_params(cls, layer: nn.Module, attrs: Tuple[str, ...]) -> nn.Module:
    """A new ``cls`` holding ``layer``'s own ``weight``/``bias`` parameters and settings."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    for attr in attrs:
        setattr(new, attr, getattr(layer, attr))
    new.register_parameter('weight', layer.weight)
    new.register_parameter('bias', layer.bias)
    new.training = layer.training
    return new


class RoutedLinear(_PackedWeight, nn.Linear):
    """``nn.Linear`` (optionally followed by an exact GELU) that chooses, per input size
    bucket, between ``F.linear`` and, on CPU in fp32, oneDNN's 1x1 convolution over a
    channels-last view of the tokens on pre-packed weights with the GELU fused."""

    candidates = ('linear', 'onednn')

    @classmethod
    def from_linear(cls, linear: nn.Linear, gelu: bool = False,
                    choice: MeasuredChoice = None) -> 'RoutedLinear':
        new = _share_params(cls, linear, ('in_features', 'out_features'))
        new.gelu = gelu
        new.choice = choice or MeasuredChoice(cls.candidates)
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + (', gelu=True' if self.gelu else '')

    def standard(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        return F.gelu(out) if self.gelu else out

    def onednn(self, x: torch.Tensor) -> torch.Tensor:
        lead, c = x.shape[:-1], x.shape[-1]
        rows = x.reshape(1, -1, 1, c).permute(0, 3, 1, 2)  # (1, C, M, 1), channels-last
        packed = self._derived(tuple(rows.shape), lambda w: cpu.pack_conv_weight(
            w[:, :, None, None], (0, 0), (1, 1), (1, 1), 1, rows.shape))
        out = cpu.packed_conv(rows, packed, self.bias, (0, 0), (1, 1), (1, 1), 1, self.gelu)
        return out.permute(0, 2, 3, 1).reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or not routable(x, self.weight, self.bias) or \
                not _onednn_fp32(x, self.weight):
            return self.standard(x)
        key = ('cpu', x.shape[-1], size_bucket(x.numel() // x.shape[-1]))
        return self.choice(key, {'linear': lambda: self.standard(x),
                                 'onednn': lambda: self.onednn(x)})


def reducing_grouped(conv: nn.Conv2d) -> bool:
    """A grouped, stride-1, 'same'-padded convolution with fewer outputs than inputs per
    group: the ones :func:`cpu.transposed_weight` applies to."""
    kh, kw = conv.kernel_size
    return conv.groups > 1 and conv.padding_mode == 'zeros' and conv.stride == (1, 1) and \
        conv.dilation == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and \
        conv.padding == (kh // 2, kw // 2) and conv.out_channels < conv.in_channels


class RoutedConv2d(_PackedWeight, nn.Conv2d):
    """``nn.Conv2d`` that chooses, per input size bucket and layout, between ``F.conv2d``
    and, on CPU in fp32, oneDNN on weights pre-packed for the input size and (for
    channel-reducing grouped convolutions) the equivalent transposed convolution."""

    candidates = ('conv', 'prepacked', 'transposed')
    _attrs = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation',
              'transposed', 'output_padding', 'groups', 'padding_mode',
              '_reversed_padding_repeated_twice')

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        return type(conv) is nn.Conv2d and conv.padding_mode == 'zeros' and \
            not isinstance(conv.padding, str)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, choice: MeasuredChoice = None) -> 'RoutedConv2d':
        new = _share_params(cls, conv, cls._attrs)
        new.reducing_grouped = reducing_grouped(conv)
        new.choice = choice or MeasuredChoice(cls.candidates)
        return new

    def prepacked(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._derived(('packed', tuple(x.shape)), lambda w: cpu.pack_conv_weight(
            w, self.padding, self.stride, self.dilation, self.groups, x.shape))
        return cpu.packed_conv(x, packed, self.bias, self.padding, self.stride, self.dilation,
                               self.groups)

    def transposed_form(self, x: torch.Tensor) -> torch.Tensor:
        w_t = self._derived('transposed', lambda w: cpu.transposed_weight(w, self.groups))
        return F.conv_transpose2d(x, w_t, self.bias, 1, self.padding, 0, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not routable(x, self.weight, self.bias) or \
                not _onednn_fp32(x, self.weight):
            return self._conv_forward(x, self.weight, self.bias)
        n, _, h, w = x.shape
        key = ('cpu', x.is_contiguous(memory_format=torch.channels_last),
               size_bucket(n * h * w))
        fns = {'conv': lambda: self._conv_forward(x, self.weight, self.bias),
               'prepacked': lambda: self.prepacked(x)}
        if self.reducing_grouped:
            fns['transposed'] = lambda: self.transposed_form(x)
        return self.choice(key, fns)


# a block of attention weights at most this large exists at once in the oneDNN product
ATTENTION_BLOCK_BYTES = {'onednn16': 16 << 20, 'onednn64': 64 << 20}


class _RoutedAttention:
    """Chooses, per row length bucket, between the fused kernel, the explicit product and, on
    CPU in fp32, :func:`cpu.onednn_attention` with two block sizes (which block size keeps
    glibc's allocator from unmapping and re-mapping the blocks depends on its settings)."""

    candidates = ('fused', 'explicit', 'onednn16', 'onednn64')

    @classmethod
    def from_attention(cls, attn: MultiheadAttention, choice: MeasuredChoice = None):
        new = cls.__new__(cls)
        new.__dict__.update(attn.__dict__)
        for name in ('_parameters', '_buffers', '_modules'):
            setattr(new, name, type(getattr(attn, name))(getattr(attn, name)))
        new.choice = choice or MeasuredChoice(cls.candidates)
        return new

    def _products(self, qkv: torch.Tensor) -> Dict[str, callable]:
        b, n = qkv.shape[:2]

        def fused():
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            ctx = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            return ctx.transpose(1, 2).reshape(b, n, self.out_dim)

        def explicit():
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            ctx = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
            return ctx.transpose(1, 2).reshape(b, n, self.out_dim)

        fns = {'fused': fused, 'explicit': explicit}
        if qkv.device.type == 'cpu' and qkv.dtype == torch.float32:
            for name, size in ATTENTION_BLOCK_BYTES.items():
                fns[name] = (lambda s: lambda: cpu.onednn_attention(qkv, self.scale, s))(size)
        return fns

    def attention_product(self, qkv: torch.Tensor) -> torch.Tensor:
        if self.training or not routable(qkv):
            return super().attention_product(qkv)
        b, n, _, heads, d = qkv.shape
        key = (qkv.device.type, qkv.dtype, heads, d, size_bucket(n), size_bucket(b))
        return self.choice(key, self._products(qkv))


class RoutedMultiheadAttention(_RoutedAttention, MultiheadAttention):
    """:class:`MultiheadAttention` whose product is chosen by measurement."""


class RoutedWindowAttention(_RoutedAttention, WindowAttention):
    """:class:`WindowAttention` whose product is chosen by measurement."""


ROUTED_ATTENTION = {MultiheadAttention: RoutedMultiheadAttention,
                    WindowAttention: RoutedWindowAttention}
