"""Deploy-time re-parameterisation: fold eval-mode BatchNorms into neighbouring convolutions.

An eval-mode BatchNorm is a per-channel affine map ``y = s * x + t``. It folds

* into the convolution **before** it (``fuse_conv_bn``): ``W' = s * W``, ``b' = s * b + t``;
* into every branch of a **sum** it follows (``scale_conv_``): ``BN(a + b) = s*a + s*b + t``,
  so each branch's last convolution is scaled and one of them takes ``t``;
* into a 1x1, unpadded convolution **after** it (``fuse_bn_conv``):
  ``W (s*x + t) + b = (W * s) x + (W t + b)``.

The blocks own the knowledge of which BN goes where (their ``switch_to_deploy``); these helpers
only do the arithmetic, in float64, so a folded model matches the unfolded one to float32
rounding. ``DeployLinear``, ``DeployConv2d`` and ``DeployGroupedConv`` are the deploy forms of
a linear layer, a convolution and a channel-reducing grouped convolution on CPU.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def concrete_cpu_input(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """True when a deploy layer may take its oneDNN route: a CPU tensor of ``dtype`` and of
    concrete size (no symbolic shapes from ``torch.compile(dynamic=True)`` or export), outside
    a ``torch.jit`` trace or an ONNX export (whose graphs keep the standard ops)."""
    return x.device.type == 'cpu' and x.dtype == dtype and \
        not any(isinstance(s, torch.SymInt) for s in x.shape) and \
        not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()


def _inference_only(*tensors: Optional[torch.Tensor]) -> bool:
    """No gradient can flow into any of ``tensors`` (oneDNN's fused and pre-packed ops have no
    backward; a deployed model that is differentiated runs the standard ops)."""
    return not torch.is_grad_enabled() or \
        not any(t is not None and t.requires_grad for t in tensors)


def _mkldnn_conv():
    """oneDNN's convolution on weights reordered ahead of time, with an optional fused exact
    GELU (the ops inductor's CPU weight pre-packing emits), where this torch build has them
    and they compute what ``F.conv2d`` (+ ``F.gelu``) does."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        reorder = torch.ops.mkldnn._reorder_convolution_weight
        conv = torch.ops.mkldnn._convolution_pointwise
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 5, 6, generator=g).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, generator=g)
        packed = reorder(w, [1, 1], [1, 1], [1, 1], 2, list(x.shape))
        want = F.conv2d(x, w, b, 1, 1, 1, 2)
        if torch.allclose(conv(x, packed, b, [1, 1], [1, 1], [1, 1], 2, 'none', [], ''),
                          want, atol=1e-5) and \
                torch.allclose(conv(x, packed, b, [1, 1], [1, 1], [1, 1], 2, 'gelu', [], 'none'),
                               F.gelu(want), atol=1e-5):
            return reorder, conv
    except (AttributeError, RuntimeError, TypeError):
        pass
    return None


_MKLDNN_CONV = _mkldnn_conv()


class _CachedWeight:
    """Mixin for a layer sharing another's parameters with a derived copy of its weights
    (``_derive``) cached under a key that includes the weights' storage and version, so that
    new weights (``load_state_dict`` copies in place) never run with a stale copy. The copy
    is not saved, copied or pickled."""

    _cache = None
    _shared_attrs: Tuple[str, ...] = ()

    @classmethod
    def _share(cls, layer: nn.Module):
        """A new ``cls`` with ``layer``'s ``weight``/``bias`` parameters (not copies) and
        settings (``_shared_attrs``)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for attr in cls._shared_attrs:
            setattr(new, attr, getattr(layer, attr))
        new.register_parameter('weight', layer.weight)
        new.register_parameter('bias', layer.bias)
        return new

    def __getstate__(self):
        state = super().__getstate__().copy()
        state['_cache'] = None
        return state

    def _derive(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _derived_weight(self, x: torch.Tensor, key=()) -> torch.Tensor:
        w = self.weight
        key = (key, w.data_ptr(), w._version, w.dtype, w.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._derive(w.detach(), x))
        return self._cache[1]


class DeployLinear(_CachedWeight, nn.Linear):
    """``nn.Linear`` (same parameters) that on CPU runs in oneDNN instead of the BLAS
    ``addmm``, which was the slower of the two for these token widths on the benchmark machine
    (the ``deploy`` rows of ``docs/benchmark.md`` include this): as a 1x1 convolution over a
    channels-last view of the tokens, on weights pre-packed for the last input size (eager
    mode; ``gelu=True`` fuses the exact GELU that follows) or through ``F.conv2d`` (under
    ``torch.compile`` with static shapes). Other devices, dynamic shapes (whose stride rules
    the view trick trips) and calls that need gradients run ``F.linear``. Used by
    ``switch_to_deploy``."""

    _shared_attrs = ('in_features', 'out_features')

    @classmethod
    def from_linear(cls, linear: nn.Linear, gelu: bool = False) -> 'DeployLinear':
        """``gelu=True``: the layer computes ``F.gelu(linear(x))`` (exact erf GELU)."""
        new = cls._share(linear)
        new.gelu = gelu
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + (', gelu=True' if self.gelu else '')

    def _derive(self, weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return _MKLDNN_CONV[0](weight[:, :, None, None], [0, 0], [1, 1], [1, 1], 1,
                               list(rows.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or not concrete_cpu_input(x, self.weight.dtype) or \
                not _inference_only(x, self.weight, self.bias):
            out = F.linear(x, self.weight, self.bias)
            return F.gelu(out) if self.gelu else out
        lead, c = x.shape[:-1], x.shape[-1]
        rows = x.reshape(1, -1, 1, c).permute(0, 3, 1, 2)  # (1, C, M, 1), channels-last
        if _MKLDNN_CONV is not None and not torch.compiler.is_compiling():
            packed = self._derived_weight(rows, key=tuple(rows.shape))
            out = _MKLDNN_CONV[1](rows, packed, self.bias, [0, 0], [1, 1], [1, 1], 1,
                                  *(('gelu', [], 'none') if self.gelu else ('none', [], '')))
        else:
            out = F.conv2d(rows, self.weight[:, :, None, None], self.bias)
            out = F.gelu(out) if self.gelu else out
        return out.permute(0, 2, 3, 1).reshape(*lead, self.out_features)


class _CachedWeightConv(_CachedWeight, nn.Conv2d):
    """A ``nn.Conv2d`` sharing another's parameters, with a cached derived weight."""

    _shared_attrs = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding',
                     'dilation', 'transposed', 'output_padding', 'groups', 'padding_mode',
                     '_reversed_padding_repeated_twice')


class DeployGroupedConv(_CachedWeightConv):
    """A grouped, stride-1, 'same'-padded convolution with fewer output than input channels
    per group (the PCMs' hidden -> dim convs), run on CPU as the equivalent transposed
    convolution: ``conv2d(x, W)`` equals ``conv_transpose2d(x, W')`` where ``W'`` is ``W``
    flipped spatially with its per-group input and output channels swapped. oneDNN's
    channels-last kernels pad a group's output channels to a block of 16, so the 4 outputs per
    group of ViTAEv2's PCMs ran at a fraction of the speed of the transposed form (same sums;
    outputs were bit-identical on the benchmark machine). Same parameters as the conv it
    replaces; other devices and traced graphs call ``F.conv2d``. Used by
    ``switch_to_deploy``."""

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        if type(conv) is not nn.Conv2d or conv.groups == 1 or conv.padding_mode != 'zeros':
            return False
        kh, kw = conv.kernel_size
        return conv.stride == (1, 1) and conv.dilation == (1, 1) and kh % 2 == 1 and \
            kw % 2 == 1 and conv.padding == (kh // 2, kw // 2) and \
            conv.out_channels < conv.in_channels

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'DeployGroupedConv':
        if not cls.applies_to(conv):
            raise ValueError(f'{conv} is not a grouped, stride-1, same-padded convolution '
                             'that reduces channels')
        return cls._share(conv)

    def _derive(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The transposed convolution's weights (in_channels, out_channels / groups, kh, kw)."""
        g, k = self.groups, self.kernel_size
        co, ci = self.out_channels // g, self.in_channels // g
        w_t = weight.flip(-1, -2).reshape(g, co, ci, *k).transpose(1, 2)
        return w_t.reshape(self.in_channels, co, *k).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not concrete_cpu_input(x, self.weight.dtype) or not _inference_only(self.weight):
            return super().forward(x)
        w_t = self._derive(self.weight, x) if torch.compiler.is_compiling() else \
            self._derived_weight(x)
        return F.conv_transpose2d(x, w_t, self.bias, 1, self.padding, 0, self.groups)


class DeployConv2d(_CachedWeightConv):
    """``nn.Conv2d`` (same parameters) that on CPU keeps its weights reordered into oneDNN's
    layout for the last input size it saw, so a call runs the convolution alone (``F.conv2d``
    reorders the weights on every call, which dominated the small maps of late stages on the
    benchmark machine). The reordered copy is re-made when the input size, the weights'
    storage or their version change (``load_state_dict`` included), and is not saved or
    copied. Other devices, ``torch.compile`` (whose ``freezing`` pre-packs by itself), exports,
    and calls that need gradients run ``F.conv2d``. Used by ``switch_to_deploy``."""

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        return type(conv) is nn.Conv2d and conv.padding_mode == 'zeros' and \
            not isinstance(conv.padding, str)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'DeployConv2d':
        return cls._share(conv)

    def _derive(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        reorder = _MKLDNN_CONV[0]
        return reorder(weight, list(self.padding), list(self.stride), list(self.dilation),
                       self.groups, list(x.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _MKLDNN_CONV is None or x.dim() != 4 or not concrete_cpu_input(x, self.weight.dtype) or \
                torch.compiler.is_compiling() or not _inference_only(x, self.weight, self.bias):
            return super().forward(x)
        packed = self._derived_weight(x, key=tuple(x.shape))
        return _MKLDNN_CONV[1](x, packed, self.bias, list(self.padding), list(self.stride),
                               list(self.dilation), self.groups, 'none', [], '')


def layers_to_deploy_(module: nn.Module) -> None:
    """Below ``module``, replace every plain ``nn.Linear`` by a :class:`DeployLinear`, every
    channel-reducing grouped convolution by a :class:`DeployGroupedConv` and every other
    plain convolution by a :class:`DeployConv2d`, sharing their parameters (state_dict keys
    unchanged)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, DeployLinear.from_linear(child))
        elif DeployGroupedConv.applies_to(child):
            setattr(module, name, DeployGroupedConv.from_conv(child))
        elif DeployConv2d.applies_to(child):
            setattr(module, name, DeployConv2d.from_conv(child))
        else:
            layers_to_deploy_(child)
