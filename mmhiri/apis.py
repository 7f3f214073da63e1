"""Config loading and Runner construction shared by ``tools/train.py`` and ``tools/test.py``.

The framework (mmdet, mmseg, mmpose or mmpretrain) is read from the config's ``default_scope``,
which every framework's ``default_runtime`` base sets; the framework's registries then import
their modules lazily, as in the frameworks' own entry points.
"""
import os.path as osp
import sys
import warnings
from typing import Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

# mmengine's `pkg::` config lookup imports pkg_resources, which setuptools 80 (the newest that
# has it, see requirements/runtime_setuptools.txt) marks deprecated on every run.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

FRAMEWORKS = ('mmdet', 'mmseg', 'mmpose', 'mmpretrain')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load ``path`` and apply ``--cfg-options``; fail with a clear message if it is missing or
    targets no known framework."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path!r}')
    cfg = Config.fromfile(path)
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in FRAMEWORKS:
        raise ValueError(
            f'{path}: default_scope is {scope!r}; expected one of {FRAMEWORKS}. Inherit the '
            "framework's runtime, e.g. _base_ = ['mmdet::_base_/default_runtime.py'].")
    return cfg


def build_in_scope(cfg: Config, module_cfg: dict, registry: str = 'MODELS'):
    """Build ``module_cfg`` (the model or a part of it, e.g. ``cfg.model.backbone``) from the
    ``registry`` of ``cfg``'s framework, with that framework made the default scope (as its
    own tools do)."""
    import importlib

    from mmengine.registry import init_default_scope

    import mmhiri  # noqa: F401  (registers our models)
    init_default_scope(cfg.default_scope)
    registries = importlib.import_module(f'{cfg.default_scope}.registry')
    return getattr(registries, registry).build(module_cfg)


def check_cfg_options(cfg: Config, cfg_options: dict) -> None:
    """Every ``--cfg-options`` key must extend what the config has: all but its last part must
    exist (``nonexistent_key.foo=3`` is a typo, not a new setting), except for the Runner's
    own arguments the config leaves at their defaults (``randomness.seed=0``). New last parts
    are allowed (``model.backbone.with_cp=True``); hook arguments are checked by
    :func:`check_hook_args`."""
    import inspect

    from mmengine.runner import Runner
    top = getattr(cfg, '_cfg_dict', cfg)  # a Config wraps its ConfigDict
    runner_args = set(inspect.signature(Runner.__init__).parameters) - {'self'}
    for key in cfg_options:
        node, parts = top, key.split('.')
        if parts[0] not in top and parts[0] in runner_args:
            continue  # a Runner argument the config leaves at its default (randomness, ...)
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                where = '.'.join(parts[:i]) or 'the top level'
                known = sorted(node) if isinstance(node, dict) else \
                    f'indices 0..{len(node) - 1}' if isinstance(node, (list, tuple)) else []
                raise SystemExit(f'--cfg-options {key}: the config has no '
                                 f'{".".join(parts[:i + 1])!r} (keys at {where}: {known})')


def check_hook_args(cfg: Config) -> None:
    """Hook arguments a hook would not accept stop the run before it starts. Hooks that take
    ``**kwargs`` are checked where those go somewhere known: mmengine's ``CheckpointHook``
    hands them to ``Runner.save_checkpoint`` (a typo there used to surface only at the first
    save, after a whole epoch)."""
    import inspect

    from mmengine.hooks import CheckpointHook
    from mmengine.registry import HOOKS
    from mmengine.runner import Runner
    hooks = [(f'default_hooks.{k}', v) for k, v in (cfg.get('default_hooks') or {}).items()]
    hooks += [(f'custom_hooks.{i}', v) for i, v in enumerate(cfg.get('custom_hooks') or [])]
    for where, hook in hooks:
        if not isinstance(hook, dict) or not isinstance(hook.get('type'), str):
            continue
        cls = HOOKS.get(hook['type'])
        if not inspect.isclass(cls):
            continue
        params = inspect.signature(cls.__init__).parameters
        allowed = {n for n in params if n != 'self'}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            if not issubclass(cls, CheckpointHook):
                continue
            allowed |= set(inspect.signature(Runner.save_checkpoint).parameters) - \
                {'self', 'out_dir', 'filename'}
        unknown = sorted(set(hook) - allowed - {'type', '_scope_', 'priority'})
        if unknown:
            raise SystemExit(f'{where} ({hook["type"]}): unknown argument(s) {unknown}; '
                             f'{hook["type"]} takes {sorted(allowed)}')


def build_runner(cfg: Config,
                 config_path: str,
                 work_dir: Optional[str] = None,
                 resume: Optional[str] = None,
                 load_from: Optional[str] = None,
                 amp: bool = False,
                 auto_scale_lr: bool = False,
                 no_validate: bool = False,
                 launcher: str = 'none',
                 dump: Optional[str] = None,
                 for_test: bool = False,
                 overwrite: bool = False,
                 deploy: bool = False,
                 allow_fresh_start: bool = False,
                 drop_unknown_categories: bool = False,
                 amp_dtype: Optional[str] = None,
                 backend: str = 'pytorch',
                 precision: str = 'fp32'):
    """Apply the usual command-line switches to ``cfg`` and build its Runner.

    ``backend`` / ``precision`` (testing only): the backbone and neck run in ONNX Runtime or
    OpenVINO (:class:`EngineHook`), in fp32 or (OpenVINO) bf16.

    ``amp`` / ``amp_dtype`` (``'fp16'`` or ``'bf16'``): mixed precision, see :func:`apply_amp`.

    ``deploy`` (testing only): the model's backbone runs in deploy mode once the checkpoint is
    loaded (:func:`deploy_model`, through :class:`DeployHook`).

    ``resume``: ``'auto'``, a checkpoint or a folder of them (:func:`choose_resume`); with
    nothing to resume it stops, unless ``allow_fresh_start``. ``drop_unknown_categories``: the
    training dataset drops annotations of categories its file does not declare instead of
    stopping (:class:`~mmhiri.datasets.checks.CheckedDataset`).

    Refuses, before anything runs: a training run into a work dir that already holds
    checkpoints, unless ``resume`` or ``overwrite``; a checkpoint to test, resume or load
    (``load_from``) that does not fit the model (see :func:`check_checkpoint_fits`)."""
    import torch
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmhiri  # noqa: F401  (registers our models; allows safe checkpoint loading)

    check_backend_args(backend, precision, deploy, for_test)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])

    if amp or amp_dtype:
        apply_amp(cfg, amp_dtype, for_test)
    elif not for_test and not torch.cuda.is_available():
        cpu_amp_if_configured(cfg)

    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True

    if no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if resume is not None:
        from .utils.checkpointing import choose_resume
        found = choose_resume(resume, cfg.work_dir, allow_fresh=allow_fresh_start)
        cfg.resume = found is not None
        cfg.load_from = found or cfg.get('load_from')  # a new run keeps its own load_from
        overwrite = overwrite or not cfg.resume  # a new run: nothing complete was there

    if load_from is not None:
        if not osp.isfile(load_from):
            raise SystemExit(f'checkpoint not found: {load_from!r}')
        cfg.load_from = load_from

    if dump is not None:
        if not dump.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl or .pickle file')
        cfg.test_evaluator = [*_as_list(cfg.test_evaluator),
                              dict(type='DumpResults', out_file_path=dump)]

    check_paths(cfg, for_test=for_test)
    from .utils.distributed import prepare_distributed
    prepare_distributed(cfg, launcher, for_test=for_test)  # gloo and CPU DDP without CUDA
    check_hook_args(cfg)
    use_safe_checkpoints(cfg)
    from .datasets.checks import check_eval_data
    check_eval_data(cfg, for_test=for_test)  # a sample that fails is named, in one line
    if not for_test:
        from .utils.exact_resume import make_resumable
        make_resumable(cfg, unknown_categories='drop' if drop_unknown_categories else 'error')
    if not for_test and not cfg.get('resume') and not overwrite:
        check_work_dir_is_free(cfg.work_dir)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if cfg.get('load_from'):
        check_checkpoint_fits(runner.model, cfg.load_from,
                              whole=for_test or bool(cfg.get('resume')))
    if deploy:
        if not for_test:
            raise SystemExit('--deploy is for testing and inference: a deployed model cannot '
                             'train')
        deployable_backbone(runner.model)  # refuse now, not after the checkpoint loads
        runner.register_hook(DeployHook())
    if backend != 'pytorch':
        deployable_backbone(runner.model)
        runner.register_hook(EngineHook(backend, precision, cfg.work_dir))
    return runner


def check_backend_args(backend: str, precision: str, deploy: bool, for_test: bool) -> None:
    """``--backend`` / ``--precision`` / ``--deploy`` that do not go together stop before
    anything is built, with one line."""
    if backend == 'pytorch':
        if precision != 'fp32':
            raise SystemExit('--precision selects the engine precision of --backend openvino; '
                             'for PyTorch mixed precision pass --amp')
        return
    if not for_test:
        raise SystemExit('--backend is for testing: training runs in PyTorch')
    if deploy:
        raise SystemExit('--backend runs the folded backbone in its engine; --deploy is '
                         "PyTorch's deploy mode: pass one of them")
    check_engine(backend, precision)


def check_engine(backend: str, precision: str) -> None:
    """One clear error for an engine this environment lacks or a precision it does not run."""
    import importlib

    from .runtime.engines import check_choice
    try:
        check_choice(backend, precision)
    except ValueError as e:
        raise SystemExit(f'--backend {backend} --precision {precision}: {e}') from None
    for pkg in ('onnx', 'onnxscript', backend):
        try:
            importlib.import_module(pkg)
        except ImportError:
            raise SystemExit(f'--backend {backend} needs {pkg} (requirements/deploy.txt, '
                             'which make setup installs)') from None


@HOOKS.register_module()
class FP32PredictionsHook(Hook):
    """``tools/test.py --amp`` on CPU: the predictions the model returns under bf16 autocast
    reach the metric in fp32 (the frameworks' metrics convert them to numpy, which has no
    bf16; on CUDA, fp16 converts as it is)."""

    def before_test(self, runner) -> None:
        from .utils.amp import to_fp32
        model = getattr(runner.model, 'module', runner.model)
        test_step = model.test_step

        def fp32_test_step(data):
            return to_fp32(test_step(data))

        model.test_step = fp32_test_step


class EngineHook(Hook):
    """``tools/test.py --backend``: once the Runner has loaded the checkpoint, the model's
    backbone and neck are folded, exported to ONNX and run by the engine (ONNX Runtime or
    OpenVINO, CPU); the heads and the post-processing stay in PyTorch, so the metrics measure
    what the engine and its precision cost."""
    priority = 'VERY_LOW'

    def __init__(self, backend: str, precision: str, work_dir: str):
        self.backend, self.precision, self.work_dir = backend, precision, work_dir

    def before_test(self, runner) -> None:
        from .runtime.engines import BackboneNeck, build_engine
        model = getattr(runner.model, 'module', runner.model)
        model.eval()
        neck = model.neck if getattr(model, 'with_neck', False) else None
        engine = build_engine(BackboneNeck(model.backbone, neck), self.backend,
                              self.precision, work_dir=osp.join(self.work_dir, 'engine'),
                              name='backbone_neck', log=runner.logger.info)
        model.backbone = engine
        if neck is not None:
            model.neck = None
        runner.logger.info(f'--backend {self.backend} --precision {self.precision}: backbone '
                           f'{"+ neck " if neck is not None else ""}run by {self.backend}')


def apply_amp(cfg: Config, dtype: Optional[str], for_test: bool) -> None:
    """``--amp``: training runs mmengine's ``AmpOptimWrapper`` on CUDA (fp16 with dynamic loss
    scaling, or ``dtype='bf16'``) and :class:`~mmhiri.utils.amp.CPUAutocastOptimWrapper`
    (bf16 autocast) on CPU; testing runs under autocast in that dtype."""
    import torch

    from .utils.amp import AMP_DTYPES, amp_optim_wrapper
    cuda = torch.cuda.is_available()
    if dtype is not None and dtype not in AMP_DTYPES:
        raise SystemExit(f'--amp-dtype must be one of {sorted(AMP_DTYPES)}, got {dtype!r}')
    if for_test:
        dtype = dtype or ('fp16' if cuda else 'bf16')
        if not cuda and dtype != 'bf16':
            raise SystemExit('--amp on CPU runs in bf16; use --amp-dtype bf16 or a GPU')
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        if not cuda:
            from .utils.amp import install_cpu_autocast_fallbacks
            install_cpu_autocast_fallbacks()
            cfg.custom_hooks = [*(cfg.get('custom_hooks') or []),
                                dict(type='FP32PredictionsHook')]
        return
    try:
        cfg.optim_wrapper = amp_optim_wrapper(dict(cfg.optim_wrapper), dtype, cuda)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def cpu_amp_if_configured(cfg: Config) -> None:
    """A config that asks for ``AmpOptimWrapper`` (mmengine asserts a GPU for it) trains on a
    CPU-only machine in bf16 autocast instead, with one line saying so."""
    wrapper = cfg.get('optim_wrapper') or {}
    kind = wrapper.get('type') if isinstance(wrapper, dict) else None
    if isinstance(kind, str) and kind.split('.')[-1] == 'AmpOptimWrapper':
        from .utils.amp import amp_optim_wrapper
        print('AmpOptimWrapper needs a GPU; none is visible: training in bf16 autocast on CPU '
              '(CPUAutocastOptimWrapper) instead', file=sys.stderr)
        cfg.optim_wrapper = amp_optim_wrapper(dict(wrapper), 'bf16', cuda=False)


def deployable_backbone(model):
    """The backbone of ``model`` (a detector, segmentor, pose model or classifier, possibly
    wrapped for distributed running); one clear error when it has no deploy mode."""
    inner = getattr(model, 'module', model)
    backbone = getattr(inner, 'backbone', None)
    if not hasattr(backbone, 'switch_to_deploy'):
        raise SystemExit(f'--deploy: the backbone of this {type(inner).__name__} '
                         f'({type(backbone).__name__}) has no deploy mode; only HIRIViT, ViTAE '
                         'and ViTAEv2 backbones have')
    return backbone


def deploy_model(model) -> str:
    """Put ``model`` in eval mode, fold its backbone (:meth:`switch_to_deploy`) and let the
    runtime choose its kernels on the first batches (:func:`mmhiri.runtime.optimize`);
    return the backbone's class name."""
    from .runtime import optimize
    backbone = deployable_backbone(model)
    inner = getattr(model, 'module', model)
    inner.eval()
    optimize(inner)
    return type(backbone).__name__


class DeployHook(Hook):
    """Switches the model's backbone to deploy mode when testing starts, after the Runner has
    loaded the checkpoint (``tools/test.py --deploy``)."""
    priority = 'VERY_LOW'

    def before_test(self, runner) -> None:
        name = deploy_model(runner.model)
        runner.logger.info(f'--deploy: {name} switched to deploy mode')


def use_safe_checkpoints(cfg: Config) -> None:
    """Save checkpoints through :class:`mmhiri.utils.checkpointing.SafeCheckpointHook`
    (temporary file, rename, then prune): a kill during a save loses nothing."""
    from .utils import checkpointing  # noqa: F401  (registers SafeCheckpointHook)
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(hook, dict) and hook.get('type') in ('CheckpointHook',
                                                       'mmengine.CheckpointHook'):
        hook['type'] = 'SafeCheckpointHook'


def check_work_dir_is_free(work_dir: str) -> None:
    """A new training run must not overwrite the checkpoints of an earlier one silently."""
    import glob
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    if found:
        names = ', '.join(osp.basename(f) for f in found[:5]) + (' ...' if len(found) > 5 else '')
        raise SystemExit(
            f'work dir {work_dir!r} already holds checkpoints ({names}). Pass --resume to '
            'continue that run, --overwrite to start a new one there anyway, or --work-dir '
            'to use another directory.')


def check_checkpoint_fits(model, checkpoint: str, whole: bool) -> None:
    """Stop with counts when ``checkpoint`` does not fit ``model``.

    Threshold: with ``whole`` (testing, resuming) every model tensor must be in the checkpoint
    with the model's shape; otherwise (``load_from`` before fine-tuning, where a new head is
    normal) every backbone tensor must. The message gives the matched / missing / mismatched /
    unexpected counts and the first names."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .models.converters import ConversionError, compare_keys, summarize, unwrap_checkpoint
    try:
        state, _ = unwrap_checkpoint(
            CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu'), prefer_ema=False)
    except ConversionError as e:
        raise SystemExit(f'{checkpoint!r} holds no state_dict of tensors: {e}')
    own = getattr(model, 'module', model).state_dict()
    if not whole:
        own = {k: v for k, v in own.items() if k.startswith('backbone.')} or own
    missing, unexpected, shapes = compare_keys(own, state)
    if missing or shapes:
        matched = len(own) - len(missing) - len(shapes)
        scope = 'model' if whole or not any(k.startswith('backbone.') for k in own) \
            else 'backbone'
        raise SystemExit(
            f'checkpoint {checkpoint!r} does not fit this {type(getattr(model, "module", model)).__name__}: '
            f'{matched} of {len(own)} {scope} tensors match, {len(missing)} missing '
            f'{summarize(missing, 5)}, {len(shapes)} with another shape {summarize(shapes, 5)}'
            f' ({len([k for k in state if k not in own])} checkpoint tensors unused). Every '
            f'{scope} tensor must load: is it the checkpoint of this config?')


def _datasets(dataset):
    """The leaf dataset configs inside wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset, dict):
        return []
    if 'datasets' in dataset:
        return [d for sub in dataset['datasets'] for d in _datasets(sub)]
    if 'dataset' in dataset:
        return _datasets(dataset['dataset'])
    return [dataset]


def _pretrained_paths(node, key='model'):
    """(config key, checkpoint) of every ``init_cfg`` of type 'Pretrained' in ``node``."""
    found = []
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            found.append((key, node['checkpoint']))
        for k, v in node.items():
            found.extend(_pretrained_paths(v, f'{key}.{k}'))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found.extend(_pretrained_paths(v, f'{key}.{i}'))
    return found


def check_paths(cfg: Config, for_test: bool = False) -> None:
    """Stop with one clear message when a dataset or a local pretrained checkpoint the run
    needs is missing, naming the expected path and how to point elsewhere."""
    loaders = ['test_dataloader'] if for_test else ['train_dataloader', 'val_dataloader']
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for i, ds in enumerate(_datasets(cfg[loader].get('dataset'))):
            root = ds.get('data_root') or ''
            ann = ds.get('ann_file') or ''
            expected = osp.join(root, ann) if ann and not osp.isabs(ann) else (ann or root)
            if expected and not osp.exists(expected):
                raise SystemExit(
                    f'{loader}: dataset {ds.get("type", "?")} not found: expected '
                    f'{expected!r} (data_root={root!r}, ann_file={ann!r}). Put the data there '
                    f'or override it, e.g. --cfg-options {loader}.dataset.data_root=/path/')
    if for_test or cfg.get('resume') or cfg.get('load_from'):
        return  # the checkpoint being loaded replaces the pretrained weights
    for key, ckpt in _pretrained_paths(cfg.get('model')):
        if '://' not in ckpt and not osp.isfile(ckpt):
            raise SystemExit(
                f'{key}: pretrained checkpoint not found: {ckpt!r}. Pass the ImageNet weights '
                f'with --cfg-options {key}.checkpoint=/path/to/weights.pth, or train from '
                f'scratch with --cfg-options {key.rsplit(".", 1)[0]}.init_cfg=None')


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]
