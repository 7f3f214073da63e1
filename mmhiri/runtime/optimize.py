"""Prepare a model of ours for inference on the device it is on."""
import time
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..models.backbones.base import BaseBackbone
from ..models.layers.ffn import Mlp
from .layers import ROUTED_ATTENTION, RoutedConv2d, RoutedLinear

LAYOUTS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


class InputLayout:
    """Forward pre-hook: the backbone's input in the chosen memory format (not while a graph
    is traced or exported: the layout change would tie the recorded sizes to guards)."""

    def __init__(self, layout: str):
        self.layout = layout

    def __call__(self, module, args):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or not args or \
                not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
            return None
        return (args[0].contiguous(memory_format=LAYOUTS[self.layout]), *args[1:])


def _exact_gelu(act: nn.Module) -> bool:
    return type(act) is nn.GELU and act.approximate == 'none'


def install_routes(module: nn.Module, device: torch.device) -> None:
    """Below ``module``: attention layers choose their product by measurement on every
    device; on CPU, linear layers (an FFN's with its exact GELU) and convolutions choose
    their kernel too. Parameters are shared, state_dict keys unchanged."""
    on_cpu = device.type == 'cpu'
    for name, child in list(module.named_children()):
        if on_cpu and isinstance(child, Mlp) and type(child.fc1) is nn.Linear and \
                _exact_gelu(child.act):
            child.fc1 = RoutedLinear.from_linear(child.fc1, gelu=True)
            child.act = nn.Identity()
            install_routes(child, device)
        elif type(child) in ROUTED_ATTENTION:
            routed = ROUTED_ATTENTION[type(child)].from_attention(child)
            setattr(module, name, routed)
            install_routes(routed, device)
        elif on_cpu and type(child) is nn.Linear:
            setattr(module, name, RoutedLinear.from_linear(child))
        elif on_cpu and RoutedConv2d.applies_to(child):
            setattr(module, name, RoutedConv2d.from_conv(child))
        else:
            install_routes(child, device)


def _time(fn, repeats: int, device: torch.device) -> float:
    best = float('inf')
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def choose_layout(backbone: BaseBackbone, example: torch.Tensor, repeats: int = 3) -> Dict:
    """Time the whole backbone on ``example`` with contiguous and with channels-last weights
    and input (each after one untimed call, which also makes the routed layers' choices for
    that layout); keep the faster. Returns the seconds per call of each."""
    times = {}
    device = example.device
    with torch.no_grad():
        for layout, fmt in LAYOUTS.items():
            backbone.to(memory_format=fmt)
            x = example.contiguous(memory_format=fmt)
            backbone(x)
            times[layout] = _time(lambda: backbone(x), repeats, device)
    best = min(times, key=times.get)
    backbone.to(memory_format=LAYOUTS[best])
    _set_input_layout(backbone, best)
    return times


def _set_input_layout(backbone: BaseBackbone, layout: str) -> None:
    handle = getattr(backbone, '_input_layout_handle', None)
    if handle is not None:
        handle.remove()
    backbone._input_layout_handle = backbone.register_forward_pre_hook(InputLayout(layout))
    backbone.runtime_layout = layout


def backbones_of(model: nn.Module):
    """The mmhiri backbones in ``model`` (itself, or a detector/segmentor/... holding one)."""
    inner = getattr(model, 'module', model)  # DDP-style wrappers
    return [m for m in inner.modules() if isinstance(m, BaseBackbone)]


def optimize(model: nn.Module, example: Optional[torch.Tensor] = None, *, fold: bool = True,
             layout: str = 'auto') -> nn.Module:
    """Prepare ``model`` for inference on the device its parameters are on, in place.

    For every backbone of ours in ``model`` (the model itself, or a detector, segmentor, pose
    model or classifier holding one):

    1. ``fold``: :meth:`~mmhiri.models.backbones.base.BaseBackbone.switch_to_deploy` (the
       exact re-parameterisation: BatchNorms folded into convolutions);
    2. routes: attention layers choose, per row-length bucket, between the fused kernel, the
       explicit product and (CPU, fp32) oneDNN convolutions; on CPU linear layers and
       convolutions choose between the standard op and oneDNN on pre-packed weights (and the
       transposed form of channel-reducing grouped convolutions). Each choice is made by
       timing the candidates on the first real input of its kind (:mod:`.choice`), so it
       holds for the machine at hand, not the one the code was written on;
    3. ``layout='auto'`` with an ``example`` input: contiguous or channels-last weights and
       input, whichever runs ``example`` faster (``'contiguous'`` / ``'channels_last'``
       force one). Without an example the layout stays as it is and the routes choose on
       the first real inputs.

    Outputs equal the folded model's up to float rounding; a call that needs gradients, a
    traced, compiled or exported graph, and every training-mode forward run the standard
    ops. Returns ``model``.
    """
    backbones = backbones_of(model)
    if not backbones:
        raise TypeError(f'optimize: {type(model).__name__} holds no HIRIViT, ViTAE or ViTAEv2 '
                        'backbone')
    if layout not in ('auto', *LAYOUTS):
        raise ValueError(f"optimize: layout must be 'auto', 'contiguous' or 'channels_last', "
                         f'got {layout!r}')
    if model.training:
        raise RuntimeError('optimize() prepares a model for inference: call .eval() first')
    for backbone in backbones:
        if fold:
            backbone.switch_to_deploy()
        param = next(backbone.parameters())
        if not getattr(backbone, 'runtime_routes', False):
            install_routes(backbone, param.device)
            backbone.runtime_routes = True
        if layout in LAYOUTS:
            backbone.to(memory_format=LAYOUTS[layout])
            _set_input_layout(backbone, layout)
        elif example is not None:
            choose_layout(backbone, example.to(param.device))
        if example is not None:
            with torch.no_grad():
                backbone(example.to(param.device))
    return model


def report(model: nn.Module) -> Dict[str, Dict[str, int]]:
    """Per kind of routed layer, how many (layer, input kind) decisions each candidate won,
    and the layout chosen: what the runtime picked on this machine."""
    out: Dict[str, Dict[str, int]] = {}
    for backbone in backbones_of(model):
        for m in backbone.modules():
            choice = getattr(m, 'choice', None)
            if choice is None:
                continue
            kind = type(m).__name__
            counts = out.setdefault(kind, {})
            for name, n in choice.summary().items():
                counts[name] = counts.get(name, 0) + n
        layout = getattr(backbone, 'runtime_layout', None)
        if layout:
            out.setdefault('layout', {})
            out['layout'][layout] = out['layout'].get(layout, 0) + 1
    return out
