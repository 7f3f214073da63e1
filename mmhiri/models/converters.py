"""Official ViTAE / ViTAEv2 checkpoints -> mmhiri keys (pure, idempotent functions).

The official layout is ``layers.{i}.RC.*`` (reduction cell) and ``layers.{i}.NC.{j}.*`` (normal
cells), with the PCM as an ``nn.Sequential`` whose indices differ between ViTAE and ViTAEv2.
Ours is ``stages.{i}.reduction.*`` and ``stages.{i}.blocks.{j}.*`` with named PCM layers.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

import torch

OURS_PREFIXES = ('stages.', 'avg_norm.', 'out_norm')


class ConversionError(ValueError):
    """Raised with the offending key names when a checkpoint cannot be converted."""


def unwrap_checkpoint(ckpt, prefer_ema: bool = True) -> Tuple[Dict[str, torch.Tensor], str]:
    """Return the flat state_dict inside an official checkpoint and where it was found.

    Accepts a raw state_dict or a dict holding ``state_dict_ema`` (preferred when
    ``prefer_ema``, as the official evaluation does), ``state_dict`` or ``model``; strips
    ``module.`` prefixes (DDP)."""
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f'expected a checkpoint dict, got {type(ckpt).__name__}')
    order = ['state_dict_ema', 'state_dict', 'model'] if prefer_ema else \
        ['state_dict', 'model', 'state_dict_ema']
    source = 'raw state_dict'
    for key in order:
        if isinstance(ckpt.get(key), Mapping):
            ckpt, source = ckpt[key], key
            break
    bad = [k for k, v in ckpt.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(
            f'{source} holds non-tensor entries {bad[:5]}; expected a state_dict or a dict '
            "with one of 'state_dict_ema', 'state_dict', 'model'")
    sd = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                     for k, v in ckpt.items())
    return sd, source


def is_converted(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True if the keys are already mmhiri's (bare, or under ``backbone.``)."""
    keys = [k[len('backbone.'):] if k.startswith('backbone.') else k for k in state_dict]
    return bool(keys) and any(k.startswith('stages.') for k in keys) and \
        not any(k.startswith('layers.') for k in keys)


def _pcm_names(entries: Dict[str, torch.Tensor]) -> Dict[int, str]:
    """Name the indices of an official PCM Sequential: 4-D weights are convs (conv1, conv2, ...),
    a BatchNorm is named after the conv before it (bn1 after conv1)."""
    names, conv = {}, 0
    indices = sorted({int(k.split('.')[0]) for k in entries})
    for idx in indices:
        weight = entries.get(f'{idx}.weight')
        if weight is not None and weight.dim() == 4:
            conv += 1
            names[idx] = f'conv{conv}'
        elif f'{idx}.running_mean' in entries or (weight is not None and weight.dim() == 1):
            names[idx] = f'bn{conv}'
        else:
            raise ConversionError(f'cannot tell what PCM entry {idx} is: '
                                  f'{sorted(k for k in entries if k.startswith(f"{idx}."))}')
    return names


# (pattern on official keys, replacement); the stage index of layers.{i} is handled separately
_RULES = [
    (r'RC\.PRM\.convs\.(\d+)\.0\.(weight|bias)$', r'reduction.prm.convs.\1.\2'),
    (r'RC\.PRM\.proj\.(weight|bias)$', r'reduction.proj.\1'),
    (r'RC\.(cls_token|pos_embed)$', r'reduction.\1'),
    (r'RC\.attn\.(norm1|norm2)\.(weight|bias)$', r'reduction.\1.\2'),
    (r'RC\.attn\.attn\.(qkv|proj)\.(weight|bias)$', r'reduction.attn.\1.\2'),
    (r'RC\.attn\.mlp\.fc([12])\.(weight|bias)$', r'reduction.ffn.fc\1.\2'),
    (r'RC\.attn\.mlp\.0\.(weight|bias)$', r'reduction.ffn.fc1.\1'),
    (r'RC\.attn\.mlp\.2\.(weight|bias)$', r'reduction.ffn.fc2.\1'),
    (r'RC\.attn\.(kqv|proj)\.(weight|bias)$', r'reduction.attn.\1.\2'),
    (r'RC\.attn\.w$', r'reduction.attn.w'),
    (r'NC\.(\d+)\.(norm1|norm2)\.(weight|bias)$', r'blocks.\1.\2.\3'),
    (r'NC\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$', r'blocks.\1.attn.\2.\3'),
    (r'NC\.(\d+)\.mlp\.fc([12])\.(weight|bias)$', r'blocks.\1.ffn.fc\2.\3'),
]
_DROP = re.compile(r'.*relative_position_index$')
_PCM = re.compile(r'^layers\.(\d+)\.(RC|NC\.(\d+))\.PCM\.(\d+)\.(\w+)$')


def convert_vitae(state_dict: Mapping[str, torch.Tensor], with_head: bool = False
                  ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Convert an official ViTAE / ViTAEv2 state_dict (classification or detection variant).

    Returns ``(new_state_dict, dropped_keys)``. Without ``with_head`` the keys are the
    backbone's own (load with ``strict=True`` into ``ViTAE``/``ViTAEv2``) and ``head.*`` is
    dropped; with it, backbone keys get ``backbone.`` and ``head.{weight,bias}`` becomes
    ``head.fc.*`` (mmpretrain's ``LinearClsHead``). Unused ``relative_position_index`` buffers
    are dropped. A key no rule knows raises :class:`ConversionError` naming it. Already
    converted input is returned unchanged (idempotent).
    """
    if is_converted(state_dict):
        return _relayout(state_dict, with_head)
    sd = OrderedDict(state_dict)
    # an mmdet/mmseg detector checkpoint: keep the backbone
    if any(k.startswith('backbone.layers.') for k in sd):
        dropped = [k for k in sd if not k.startswith('backbone.')]
        sd = OrderedDict((k[len('backbone.'):], v) for k, v in sd.items()
                         if k.startswith('backbone.'))
    else:
        dropped = []
    vit_style = 'layers.0.RC.PRM.proj.weight' in sd

    pcms: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _PCM.match(k)
        if m:
            pcms.setdefault((m.group(1), m.group(2)), {})[f'{m.group(4)}.{m.group(5)}'] = v
    pcm_names = {cell: _pcm_names(entries) for cell, entries in pcms.items()}

    out, unknown = OrderedDict(), []
    backbone_prefix = 'backbone.' if with_head else ''
    for k, v in sd.items():
        if _DROP.match(k):
            dropped.append(k)
            continue
        if k.startswith('head.'):
            if with_head and k in ('head.weight', 'head.bias'):
                out['head.fc.' + k.split('.')[-1]] = v
            else:
                dropped.append(k)
            continue
        if k.startswith('fc_norm.'):
            out[backbone_prefix + 'avg_norm.' + k[len('fc_norm.'):]] = v
            continue
        m = _PCM.match(k)
        if m:
            stage, cell, nc_idx, idx, attr = m.groups()
            name = pcm_names[(stage, cell)][int(idx)]
            where = 'reduction' if cell == 'RC' else f'blocks.{nc_idx}'
            stage = '0' if vit_style else stage
            out[f'{backbone_prefix}stages.{stage}.{where}.pcm.{name}.{attr}'] = v
            continue
        m = re.match(r'^layers\.(\d+)\.(.*)$', k)
        new = None
        if m:
            stage, rest = m.groups()
            for pattern, repl in _RULES:
                if re.match(pattern, rest):
                    new = re.sub(pattern, repl, rest)
                    break
            if new is not None:
                stage = '0' if vit_style else stage
                new = f'{backbone_prefix}stages.{stage}.{new}'
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise ConversionError(f'{len(unknown)} keys are not official ViTAE/ViTAEv2 keys: '
                              f'{unknown[:20]}{" ..." if len(unknown) > 20 else ""}')
    return out, dropped


def _relayout(state_dict: Mapping[str, torch.Tensor], with_head: bool
              ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """An already converted state_dict in the layout ``with_head`` asks for: classifier keys
    (``backbone.*`` + ``head.fc.*``) or bare backbone keys (the head dropped and listed)."""
    bare = OrderedDict((k[len('backbone.'):] if k.startswith('backbone.') else k, v)
                       for k, v in state_dict.items())
    head = OrderedDict((k, v) for k, v in bare.items() if k.startswith('head.'))
    backbone = OrderedDict((k, v) for k, v in bare.items() if not k.startswith('head.'))
    if not with_head:
        return backbone, list(head)
    if not head:
        raise ConversionError('with_head: this converted checkpoint has no classifier head '
                              '(head.fc.*); convert the official checkpoint itself instead')
    out = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    out.update(head)
    return out, []


def official_archs():
    """(name, class, arch) of every size whose official checkpoints the converter targets."""
    from .backbones import ViTAE, ViTAEv2
    return [(f'ViTAEv2:{a}', ViTAEv2, a) for a in ('s', '48m', 'b')] + \
        [(f'ViTAE:{a}', ViTAE, a) for a in ('t', '6m', '13m', 's', 'b', 'l', 'h')]


def compare_keys(model_state: Mapping[str, torch.Tensor],
                 state_dict: Mapping[str, torch.Tensor]) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape mismatches) of ``state_dict`` against a model's."""
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
              f'{tuple(model_state[k].shape)}'
              for k in model_state if k in state_dict and state_dict[k].shape != model_state[k].shape]
    return missing, unexpected, shapes


def match_arch(backbone_state: Mapping[str, torch.Tensor]):
    """Find the official size whose backbone keys and shapes ``backbone_state`` has exactly.

    Returns ``(name, missing, unexpected, mismatched)`` of the best candidate (all three lists
    empty for an exact match). Models are built on the meta device: no memory, no init."""
    best = None
    for name, cls, arch in official_archs():
        with torch.device('meta'):
            own = cls(arch).state_dict()
        diff = compare_keys(own, backbone_state)
        score = sum(len(d) for d in diff)
        if best is None or score < best[0]:
            best = (score, name, *diff)
        if score == 0:
            break
    return best[1:]


def summarize(names: List[str], limit: int = 10) -> str:
    """``[a, b, ...] (+N more)``: key lists short enough to read in an error message."""
    more = f' (+{len(names) - limit} more)' if len(names) > limit else ''
    return f'{names[:limit]}{more}'


def check_load(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``model`` strictly; on mismatch raise one error that names the
    missing and unexpected keys and any shape mismatches."""
    missing, unexpected, shapes = compare_keys(model.state_dict(), state_dict)
    if missing or unexpected or shapes:
        raise ConversionError(
            f'checkpoint does not match {type(model).__name__}: missing {summarize(missing)}, '
            f'unexpected {summarize(unexpected)}, shape mismatches {summarize(shapes)}')
    model.load_state_dict(state_dict, strict=True)
