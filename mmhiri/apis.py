"""Config loading and Runner construction shared by ``tools/train.py`` and ``tools/test.py``.

The framework (mmdet, mmseg, mmpose or mmpretrain) is read from the config's ``default_scope``,
which every framework's ``default_runtime`` base sets; the framework's registries then import
their modules lazily, as in the frameworks' own entry points.
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config

FRAMEWORKS = ('mmdet', 'mmseg', 'mmpose', 'mmpretrain')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load ``path`` and apply ``--cfg-options``; fail with a clear message if it is missing or
    targets no known framework."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path!r}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in FRAMEWORKS:
        raise ValueError(
            f'{path}: default_scope is {scope!r}; expected one of {FRAMEWORKS}. Inherit the '
            "framework's runtime, e.g. _base_ = ['mmdet::_base_/default_runtime.py'].")
    return cfg


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
                 for_test: bool = False):
    """Apply the usual command-line switches to ``cfg`` and build its Runner."""
    import torch
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmhiri  # noqa: F401  (registers our models; allows safe checkpoint loading)

    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])

    if amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper asserts one); '
                             'none is visible here. Run without --amp on CPU.')
        if for_test:
            cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        else:
            optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
            if optim_wrapper == 'OptimWrapper':
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
            elif optim_wrapper != 'AmpOptimWrapper':
                raise SystemExit(f'--amp: the config uses optim_wrapper type {optim_wrapper!r}; '
                                 'only OptimWrapper can be switched to AmpOptimWrapper')

    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True

    if no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise SystemExit(f'--resume: checkpoint not found: {resume!r}')
        cfg.resume = True
        cfg.load_from = resume

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
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


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
