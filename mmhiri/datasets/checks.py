"""Datasets that say which file is wrong.

:class:`CheckedDataset` wraps the dataset of a loader (``tools/train.py`` wraps the validation
one, ``tools/test.py`` the test one; the training one is wrapped by its subclass
:class:`mmhiri.utils.exact_resume.SeededDataset`). A sample that cannot be loaded stops the run
with one line naming the sample's files (:class:`DataError`; a bare ``cv2.error`` or a
57-line loader-worker traceback named none), and so does a dataset that cannot be built (its
annotation file named).

COCO-style annotation files (every dataset that reads them through a ``COCOAPI`` class
attribute: mmdet's ``CocoDataset`` and its subclasses) are also checked for annotations whose
``category_id`` the file's ``categories`` do not declare: mmdet drops those without a word. With
``unknown_categories='error'`` such a file stops the run, naming the ids and how many
annotations use them; with ``'drop'`` they are dropped with a warning that says so; ``None``
skips the check.
"""
import copy
import logging
import os.path as osp
from collections import Counter
from typing import List

import torch
from mmengine.logging import print_log
from mmengine.registry import DATASETS

#: how :class:`CheckedDataset` treats undeclared category ids
UNKNOWN_CATEGORIES = ('error', 'drop', None)


class DataError(RuntimeError):
    """A sample or annotation file that cannot be read (the message names it)."""

    def first_line(self) -> str:
        """The message without the worker traceback a DataLoader wraps around it."""
        lines = [ln for ln in str(self).splitlines() if ln.strip()]
        ours = [ln for ln in lines if ln.startswith(f'{__name__}.DataError: ')]
        return ours[-1].split('DataError: ', 1)[1] if ours else lines[0] if lines else ''


def one_line(e: BaseException) -> str:
    """An exception's message on one line."""
    return ' '.join(str(e).split())


def sample_files(info) -> List[str]:
    """The file paths a sample's data info names (image, segmentation map, ...)."""
    if not isinstance(info, dict):
        return []
    return [str(v) for k, v in info.items()
            if isinstance(v, str) and (k.endswith('_path') or k in ('filename', 'img'))]


def undeclared_categories(coco_dict: dict):
    """``(Counter {category_id: annotations}, annotations in all, declared ids)`` of the
    annotations of a COCO-format dict whose ``category_id`` is not in its ``categories``."""
    declared = {c.get('id') for c in coco_dict.get('categories') or []}
    anns = coco_dict.get('annotations') or []
    unknown = Counter(a.get('category_id') for a in anns if a.get('category_id') not in declared)
    return unknown, len(anns), sorted(declared, key=str)


class CategoryCheck:
    """Stands in for a dataset's ``COCOAPI``: builds the COCO object, then refuses (or, with
    ``drop``, reports) the annotations whose category the file does not declare."""

    def __init__(self, api, ann_file: str, role: str, drop: bool):
        self.api, self.ann_file, self.role, self.drop = api, ann_file, role, drop

    def __call__(self, *args, **kwargs):
        coco = self.api(*args, **kwargs)
        unknown, total, declared = undeclared_categories(getattr(coco, 'dataset', {}) or {})
        if not unknown:
            return coco
        n = sum(unknown.values())
        ids = ', '.join(f'{i} in {c}' for i, c in sorted(unknown.items(), key=lambda x: str(x[0])))
        what = (f'{self.role} annotations {self.ann_file!r}: {n} of {total} annotations '
                f'({100 * n / max(total, 1):.0f}%) use a category_id that its "categories" do not '
                f'declare (category_id {ids}; declared: {declared})')
        if not self.drop:
            raise DataError(f'{what}. mmdet would drop them silently: fix the file, or train '
                            'without them with tools/train.py --drop-unknown-categories')
        print_log(f'{what}: dropping them (--drop-unknown-categories)', logger='current',
                  level=logging.WARNING)
        return coco


def _leaves(dataset) -> list:
    """The datasets inside wrappers (RepeatDataset, ConcatDataset, ...), and the wrappers."""
    found = [dataset]
    inner = getattr(dataset, 'datasets', None)
    for d in (inner if isinstance(inner, (list, tuple)) else [getattr(dataset, 'dataset', None)]):
        if d is not None and d is not dataset:
            found += _leaves(d)
    return found


def _set_lazy(cfg: dict) -> None:
    """``lazy_init=True`` on a dataset config and the configs of the datasets it wraps."""
    cfg['lazy_init'] = True
    subs = cfg.get('datasets') if isinstance(cfg.get('datasets'), (list, tuple)) \
        else [cfg.get('dataset')]
    for sub in subs:
        if isinstance(sub, dict) and 'type' in sub:
            _set_lazy(sub)


def build_checking_categories(cfg: dict, role: str, drop: bool):
    """Build the dataset ``cfg`` with :class:`CategoryCheck` in place of the ``COCOAPI`` of
    every dataset in it that has one: built lazily, checks put in, then loaded (unless ``cfg``
    asks for lazy loading itself: then the check runs when it loads)."""
    lazy_cfg = copy.deepcopy(cfg)
    _set_lazy(lazy_cfg)
    try:
        dataset = DATASETS.build(lazy_cfg)
    except TypeError as e:
        if 'lazy_init' not in str(e):
            raise
        return DATASETS.build(cfg)  # a dataset without lazy loading: nothing to check
    for leaf in _leaves(dataset):
        api = getattr(type(leaf), 'COCOAPI', None)
        if api is not None and not getattr(leaf, '_fully_initialized', True):
            leaf.COCOAPI = CategoryCheck(api, getattr(leaf, 'ann_file', '?'), role, drop)
    if not cfg.get('lazy_init', False) and hasattr(dataset, 'full_init'):
        dataset.full_init()
        for leaf in _leaves(dataset):
            if isinstance(leaf.__dict__.get('COCOAPI'), CategoryCheck):
                del leaf.COCOAPI  # read: the class's own again
    return dataset


@DATASETS.register_module()
class CheckedDataset(torch.utils.data.Dataset):
    """Wraps a dataset (a config or a dataset); a sample or an annotation file that cannot be
    read raises :class:`DataError` with its path in the message.

    Args:
        dataset (dict | Dataset): the dataset, or its config (built here).
        role (str): how messages call it: ``'training'``, ``'validation'``, ``'test'``.
        unknown_categories (str | None): ``'error'``, ``'drop'`` or ``None`` (see the module
            docstring); needs a config (a dataset built already has read its file).
    """

    def __init__(self, dataset, role: str = 'validation', unknown_categories=None):
        if unknown_categories not in UNKNOWN_CATEGORIES:
            raise ValueError(f'unknown_categories must be one of {UNKNOWN_CATEGORIES}, got '
                             f'{unknown_categories!r}')
        self.role = role
        self.dataset = self._build(dataset, unknown_categories) if isinstance(dataset, dict) \
            else dataset

    def _build(self, cfg: dict, unknown_categories):
        cfg = copy.deepcopy(cfg)
        try:
            if unknown_categories is None:
                return DATASETS.build(cfg)
            return build_checking_categories(cfg, self.role, unknown_categories == 'drop')
        except DataError:
            raise
        except Exception as e:
            ann, root = cfg.get('ann_file') or '', cfg.get('data_root') or ''
            where = osp.join(root, ann) if ann and not osp.isabs(ann) else ann
            raise DataError(f'cannot build the {self.role} dataset {cfg.get("type")}'
                            + (f' from {where!r}' if where else '')
                            + f': {type(e).__name__}: {one_line(e)}') from e

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # metainfo, get_data_info, ... of the wrapped dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, idx):
        try:
            return self.dataset[idx]
        except Exception as e:
            try:
                files = sample_files(self.dataset.get_data_info(idx))
            except Exception:  # noqa: BLE001  (the original error is the one to report)
                files = []
            raise DataError(f'{self.role} sample {idx}'
                            + (f' ({", ".join(files)})' if files else '')
                            + f' could not be loaded: {type(e).__name__}: {one_line(e)}') from e


def check_eval_data(cfg, for_test: bool = False) -> None:
    """Wrap the validation loader's dataset (``for_test``: the test loader's) of ``cfg`` in
    :class:`CheckedDataset`, in place."""
    key, role = ('test_dataloader', 'test') if for_test else ('val_dataloader', 'validation')
    loader = cfg.get(key)
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict) or \
            loader['dataset'].get('type') == 'CheckedDataset':
        return
    loader['dataset'] = dict(type='CheckedDataset', role=role, dataset=loader['dataset'])
