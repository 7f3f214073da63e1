"""The knobs every mmhiri backbone shares: ``out_indices``, ``frozen_stages``, ``norm_eval``,
``with_cp``, ``init_cfg``, input checks and per-stage feature metadata."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.common import sizes_are_symbolic


class NonFiniteInputError(ValueError):
    """A backbone input holding NaN or infinite values (refused unless ``check_finite``
    is off)."""



def resolve_arch(arch: Union[str, dict], arch_zoo: Dict[str, dict],
                 required_keys: Sequence[str], owner: str) -> dict:
    """Look ``arch`` up in ``arch_zoo`` (case-insensitive) or check a user dict's keys."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'{owner}: unknown arch {arch!r}; expected one of '
                             f'{sorted(arch_zoo)} or a dict with keys {list(required_keys)}')
        return dict(arch_zoo[key])
    if not isinstance(arch, dict):
        raise TypeError(f'{owner}: arch must be a str or a dict, got {type(arch).__name__}')
    missing = [k for k in required_keys if k not in arch]
    if missing:
        raise ValueError(f'{owner}: custom arch is missing keys {missing} '
                         f'(required: {list(required_keys)})')
    return dict(arch)


def check_stage_lists(arch: dict, keys: Sequence[str], num_stages: int, owner: str) -> None:
    """Every per-stage list of ``arch`` must have one entry per stage."""
    bad = {k: arch[k] for k in keys if not isinstance(arch[k], (list, tuple))
           or len(arch[k]) != num_stages}
    if bad:
        raise ValueError(f'{owner}: these arch entries need {num_stages} items (one per stage): '
                         f'{bad}')


class BaseBackbone(BaseModule):
    """Base class of the mmhiri backbones.

    A subclass builds ``self.stem`` (an ``nn.Module`` or ``None``) and ``self.stages`` (an
    ``nn.ModuleList``), calls :meth:`_finish_init` at the end of its ``__init__``, and implements
    :meth:`forward` with :meth:`check_input` first.

    Args:
        stage_channels (Sequence[int]): Output channels of every stage.
        stage_strides (Sequence[int]): Output stride of every stage w.r.t. the input image.
        out_indices (Sequence[int] | int): Stages whose outputs are returned, in the order given.
            Negative indices count from the last stage. Defaults to all stages.
        frozen_stages (int): -1 freezes nothing; ``k >= 0`` freezes the stem and stages
            ``0..k`` (no gradients, norms in eval mode, also after ``.train()``).
            Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training (running statistics
            frozen). Defaults to False.
        with_cp (bool): Use gradient checkpointing per block to save memory. Defaults to False.
        in_channels (int): Channels of the input image. Defaults to 3.
        fused_attn (bool): Attention through ``F.scaled_dot_product_attention`` (True) or the
            explicit softmax(q k^T) v product (False); same parameters. Defaults to True.
        memory_efficient (bool): While training, recompute the light layers in backward
            instead of keeping their outputs: BatchNorm + activation pairs, and a CFFN's
            activation + depth-wise conv (less memory, same results, a few % more compute);
            False keeps everything as stock autograd does. Defaults to True.
        deploy (bool): Build the folded inference form (what :meth:`switch_to_deploy` turns
            a trained model into), e.g. to load a folded checkpoint. Such a model cannot
            train. Defaults to False.
        check_finite (bool): Refuse an input holding NaN or infinite values with one
            :class:`NonFiniteInputError` (one bad image would otherwise poison every
            BatchNorm's running statistics); False skips the check (one pass over the input)
            for speed. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``.
    """

    def __init__(self,
                 stage_channels: Sequence[int],
                 stage_strides: Sequence[int],
                 out_indices: Union[int, Sequence[int], None] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 in_channels: int = 3,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 fused_attn: bool = True,
                 memory_efficient: bool = True,
                 deploy: bool = False,
                 check_finite: bool = True):
        super().__init__(init_cfg=init_cfg)
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.stage_strides = tuple(int(s) for s in stage_strides)
        if len(self.stage_channels) != len(self.stage_strides):
            raise ValueError('stage_channels and stage_strides must have the same length')
        self.num_stages = len(self.stage_channels)
        self.out_indices = self._normalize_out_indices(out_indices)
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages < self.num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages must be an int in '
                             f'[-1, {self.num_stages - 1}], got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.in_channels = in_channels
        self.fused_attn = fused_attn
        self.memory_efficient = memory_efficient
        self.deploy = deploy
        self.check_finite = check_finite

    # ----------------------------------------------------------------- metadata
    def _normalize_out_indices(self, out_indices) -> Tuple[int, ...]:
        n = self.num_stages
        if out_indices is None:
            return tuple(range(n))
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'{type(self).__name__}: out_indices must be an int or a non-empty '
                            f'sequence of ints, got {out_indices!r}')
        result = []
        for i in out_indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                raise ValueError(f'{type(self).__name__}: out_indices entry {i!r} is out of '
                                 f'range for {n} stages (valid: {-n}..{n - 1})')
            result.append(i % n)
        if len(set(result)) != len(result):
            raise ValueError(f'{type(self).__name__}: out_indices {out_indices!r} '
                             'names a stage twice')
        return tuple(result)

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned maps, in ``out_indices`` order (what a neck's
        ``in_channels`` must be)."""
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Strides of the returned maps, in ``out_indices`` order."""
        return [self.stage_strides[i] for i in self.out_indices]

    @property
    def feature_info(self) -> List[dict]:
        """One dict per returned map: stage index, channels and stride."""
        return [dict(stage=i, num_chs=self.stage_channels[i], reduction=self.stage_strides[i])
                for i in self.out_indices]

    # ----------------------------------------------------------------- layer-wise lr decay
    def layer_prefixes(self) -> List[Tuple[str, int]]:
        """(parameter-name prefix, stage) of every layer, input to output: the stem (if any),
        then per stage its down-sampling / reduction module and each of its blocks."""
        layers = [('stem', -1)] if getattr(self, 'stem', None) is not None else []
        for i, stage in enumerate(self.stages):
            for name, child in stage.named_children():
                if isinstance(child, nn.ModuleList):
                    layers += [(f'stages.{i}.{name}.{j}', i) for j in range(len(child))]
                elif any(True for _ in child.parameters()):
                    layers.append((f'stages.{i}.{name}', i))
        return layers

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """The layer of ``param_name`` for layer-wise learning-rate decay, in mmpretrain's
        contract (``LearningRateDecayOptimWrapperConstructor``): ``(layer_id, num_layers)``
        with the first layer (stem, or the first reduction cell) 0, every block and every
        down-sampling / reduction module its own layer in forward order, a stage's output norm
        with that stage's last layer, and anything outside the backbone (names not starting
        with ``prefix``: neck, heads) ``num_layers - 1``."""
        layers = self.layer_prefixes()
        num_layers = len(layers) + 1
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        for i, (layer, _) in enumerate(layers):
            if name.startswith(layer + '.'):
                return i, num_layers
        stage = self._output_stage_of(name)
        if stage is not None:
            return max(i for i, (_, s) in enumerate(layers) if s <= stage), num_layers
        raise ValueError(f'{type(self).__name__}.get_layer_depth: {param_name!r} is not a '
                         f'parameter of the backbone (prefix {prefix!r})')

    def _output_stage_of(self, name: str) -> Optional[int]:
        """The stage whose output a non-layer parameter ``name`` normalises (``out_norm{i}``),
        or None."""
        if name.startswith('out_norm'):
            return int(name[len('out_norm'):].split('.')[0])
        return None

    # ----------------------------------------------------------------- input
    def check_input(self, x) -> torch.Tensor:
        """Raise one clear error for anything that is not a non-empty NCHW image batch of the
        model's dtype; return ``x``."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{name} expects a torch.Tensor of shape (N, {self.in_channels}, H, W), '
                            f'got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError(f'{name} expects a 4-D tensor (N, {self.in_channels}, H, W), '
                             f'got shape {tuple(x.shape)}')
        if torch.jit.is_tracing():  # traced sizes are tensors: nothing below can be recorded
            return x
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{name} expects {self.in_channels} input channels (N, '
                             f'{self.in_channels}, H, W), got shape {tuple(x.shape)}')
        if x.numel() == 0:
            raise ValueError(f'{name} got an empty input of shape {tuple(x.shape)}; '
                             'N, H and W must all be >= 1')
        if not x.is_floating_point():
            raise TypeError(f'{name} expects a floating-point image tensor, got {x.dtype}')
        if self.check_finite and not sizes_are_symbolic() and not torch.isfinite(x).all():
            nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            raise NonFiniteInputError(
                f'{name} got a non-finite input: {nan} NaN and {inf} infinite values in a '
                f'{"x".join(map(str, x.shape))} batch (one bad image would make the outputs '
                'and, in training, every BatchNorm\'s running statistics NaN). Check the data; '
                'check_finite=False skips this check')
        param = next(self.parameters(), None)
        if param is not None and x.dtype != param.dtype and \
                not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f'{name} has {param.dtype} parameters but got a {x.dtype} input; '
                            'cast one to the other (model.to(dtype) or x.to(dtype)) or run '
                            'under torch.autocast')
        return x

    def finish_outputs(self, outs: Dict[int, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """The maps of ``out_indices``, in that order, contiguous NCHW (as mmdet's own
        backbones return them): necks and heads are not ours, and some of their ops read the
        memory as NCHW whatever the strides (mmcv's RoIAlign on CPU gave wrong values for the
        token stages' transposed views, and a deployed Mask R-CNN, all channels-last, scored
        0.001 bbox mAP)."""
        maps = tuple(outs[i] for i in self.out_indices)
        if torch.onnx.is_in_onnx_export():  # no strides in ONNX; the copy would pin sizes
            return maps
        return tuple(m.contiguous() for m in maps)

    # ----------------------------------------------------------------- pretrained weights
    def init_weights(self):
        """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads through
        :meth:`load_pretrained`, which refuses a checkpoint that does not fit; other
        ``init_cfg`` types go to mmengine."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'),
                                 map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def _may_be_missing(self, key: str) -> bool:
        """Tensors a fitting checkpoint may lack: output norms of stages the pretraining did
        not return (a classifier has only the last one); they keep their initial values."""
        return key.startswith('out_norm')

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None,
                        map_location: str = 'cpu') -> None:
        """Load backbone weights from ``checkpoint`` (a path or URL mmengine can read; a
        whole-model checkpoint with ``prefix='backbone.'``).

        The threshold: every tensor of the stem and stages must be in the checkpoint with the
        model's shape (output norms may be missing, see :meth:`_may_be_missing`). Anything
        less stops with the counts of matched, missing, mismatched and unexpected tensors and
        their first names, instead of training from a silently half-loaded model. Unexpected
        extra tensors are reported and ignored."""
        from mmengine.logging import print_log
        from mmengine.runner.checkpoint import CheckpointLoader

        from ..converters import compare_keys, summarize, unwrap_checkpoint
        name = type(self).__name__
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
        state, _ = unwrap_checkpoint(ckpt, prefer_ema=False)
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        own = self.state_dict()
        missing, unexpected, shapes = compare_keys(own, state)
        required_missing = [k for k in missing if not self._may_be_missing(k)]
        matched = len(own) - len(missing) - len(shapes)
        counts = (f'{matched} of {len(own)} tensors match, {len(missing)} missing '
                  f'{summarize(missing, 5)}, {len(shapes)} with another shape '
                  f'{summarize(shapes, 5)}, {len(unexpected)} unexpected '
                  f'{summarize(unexpected, 5)}')
        if required_missing or shapes:
            hint = (f" (no key starts with {prefix!r})" if prefix and not state else
                    " (a whole-model checkpoint needs prefix='backbone.')"
                    if not prefix and any(k.startswith('backbone.') for k in unexpected) else '')
            raise ValueError(
                f'{name}: the checkpoint {checkpoint!r} does not fit this backbone{hint}: '
                f'{counts}. Every stem and stage tensor must load; official ViTAE weights '
                'need tools/model_converters/vitae2mmhiri.py first.')
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        print_log(f'{name}: loaded {checkpoint} ({counts})', logger='current')

    # ----------------------------------------------------------------- freezing
    def _frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages``: the stem and stages 0..k (subclasses may add
        per-stage modules such as output norms through :meth:`_stage_extras`)."""
        if self.frozen_stages < 0:
            return []
        modules = [self.stem] if getattr(self, 'stem', None) is not None else []
        for i in range(self.frozen_stages + 1):
            modules.append(self.stages[i])
            modules.extend(self._stage_extras(i))
        return modules

    def _stage_extras(self, i: int) -> List[nn.Module]:
        """Modules outside ``self.stages[i]`` that belong to stage ``i`` (e.g. its output
        norm); frozen together with it."""
        norm = getattr(self, f'out_norm{i}', None)
        return [norm] if norm is not None else []

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def _finish_init(self) -> None:
        """Call at the end of a subclass's ``__init__``."""
        self.set_fused_attn(self.fused_attn)
        self.set_memory_efficient(self.memory_efficient)
        self._freeze_stages()

    # ----------------------------------------------------------------- speed
    def _set_everywhere(self, attr: str, value: bool) -> None:
        setattr(self, attr, bool(value))
        for m in self.modules():
            if m is not self and hasattr(m, attr):
                setattr(m, attr, bool(value))

    def set_fused_attn(self, enabled: bool = True) -> None:
        """Switch every attention layer between the fused kernel and the explicit product."""
        self._set_everywhere('fused_attn', enabled)

    def set_memory_efficient(self, enabled: bool = True) -> None:
        """Switch the recomputation of light layers in backward on or off."""
        self._set_everywhere('memory_efficient', enabled)

    def switch_to_deploy(self) -> None:
        """Fold the model into its inference form, in place: every BatchNorm into a
        convolution next to it (before it, after it, or into each branch of the sum it
        normalises), and the skips a convolution can carry into it. Each block folds itself
        (its ``switch_to_deploy``); the result is the model ``deploy=True`` builds, with the
        same state_dict keys, so a folded checkpoint saves and loads like any other.

        Outputs equal the eval-mode model's up to float rounding. How the folded model then
        runs fast on a device (kernels, layouts, engines) is :mod:`mmhiri.runtime`'s
        (:func:`mmhiri.runtime.optimize`). Irreversible: a deployed model refuses
        ``train()``; rebuild it (or reload its unfolded checkpoint) to train again."""
        if self.training:
            raise RuntimeError(f'{type(self).__name__}.switch_to_deploy() folds the BatchNorms\' '
                               'running statistics: call .eval() first')
        for m in list(self.modules()):
            if m is not self and hasattr(m, 'switch_to_deploy'):
                m.switch_to_deploy()
        self.deploy = True

    def train(self, mode: bool = True):
        if mode and getattr(self, 'deploy', False):
            raise RuntimeError(f'{type(self).__name__} was switched to deploy mode (BatchNorms '
                               'folded into convolutions) and cannot train; build the model '
                               'again, or load its checkpoint, to train')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
