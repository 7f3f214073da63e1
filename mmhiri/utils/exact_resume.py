"""Training that resumes after a kill to exactly the run it would have been.

A resumed mmengine run differs from the uninterrupted one in three ways, each fixed here:

* **main-process randomness** (stochastic depth, dropout, random batch augments) continues from
  the fresh seed, not from where the run stood. :class:`ExactResumeHook` re-seeds Python,
  NumPy and torch before every iteration from ``(seed, iteration, rank)``, so it is a function
  of the iteration, whatever happened before (a validation pass, a restart);
* **data augmentation in loader workers** depends on each worker's history (persistent workers
  keep their stream across epochs). :class:`SeededDataset` seeds every sample from
  ``(seed, epoch, index)`` in whichever process loads it (epoch-based loops; iteration-based
  loops replay the loader, which mmengine already does);
* **a checkpoint taken mid-epoch** made mmengine replay the whole epoch.
  :class:`ResumableBatchSampler` skips the batches of the resumed epoch that were already
  trained.

Loader workers also die with their trainer (``PR_SET_PDEATHSIG`` on Linux) instead of
outliving a ``kill -9``. ``tools/train.py`` wires all of this in for epoch-based configs
(:func:`make_resumable`); the config itself stays stock.
"""
import ctypes
import hashlib
import os
import random
import signal
import sys
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import DATA_SAMPLERS, DATASETS, HOOKS

_WORKER_TIED = False


def derive_seed(*parts) -> int:
    """A 32-bit seed that depends on every part (stable across processes and runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tie_worker_to_parent() -> None:
    """In a data-loader worker: ask the kernel to kill it when its parent dies (Linux)."""
    global _WORKER_TIED
    if _WORKER_TIED or not sys.platform.startswith('linux') or \
            torch.utils.data.get_worker_info() is None:
        return
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    _WORKER_TIED = True


class DataError(RuntimeError):
    """A training sample or annotation file that cannot be read (the message names it)."""

    def first_line(self) -> str:
        """The message without the worker traceback a DataLoader wraps around it."""
        lines = [ln for ln in str(self).splitlines() if ln.strip()]
        ours = [ln for ln in lines if ln.startswith(f'{__name__}.DataError: ')]
        return ours[-1].split('DataError: ', 1)[1] if ours else lines[0] if lines else ''


def _one_line(e: BaseException) -> str:
    return ' '.join(str(e).split())


def _files(info) -> List[str]:
    """The file paths a sample's data info names (image, segmentation map, ...)."""
    if not isinstance(info, dict):
        return []
    return [str(v) for k, v in info.items()
            if isinstance(v, str) and (k.endswith('_path') or k in ('filename', 'img'))]


@DATASETS.register_module()
class SeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset; with ``seed_samples`` every sample is loaded with Python, NumPy and
    torch seeded from ``(seed, epoch, index)``. The epoch lives in shared memory, so
    persistent workers see the value the trainer sets (:class:`ExactResumeHook`).

    A sample or an annotation file that cannot be read stops the run with its path in the
    message (a bare ``cv2.error`` or ``JSONDecodeError`` named neither)."""

    def __init__(self, dataset, seed: int = 0, seed_samples: bool = True):
        import multiprocessing as mp
        if isinstance(dataset, dict):
            try:
                dataset = DATASETS.build(dataset)
            except Exception as e:
                ann = dataset.get('ann_file') or ''
                root = dataset.get('data_root') or ''
                where = os.path.join(root, ann) if ann and not os.path.isabs(ann) else ann
                raise DataError(f'cannot build the training dataset {dataset.get("type")}'
                                + (f' from {where!r}' if where else '')
                                + f': {type(e).__name__}: {_one_line(e)}') from e
        self.dataset = dataset
        self.seed = seed
        self.seed_samples = seed_samples
        self._epoch = mp.RawValue('q', 0)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def __getstate__(self):  # copies (the Runner deep-copies loader configs) get their own
        state = dict(self.__dict__)  # shared value; forked workers share the original's
        state['_epoch'] = self._epoch.value
        return state

    def __setstate__(self, state):
        import multiprocessing as mp
        epoch = state.pop('_epoch')
        self.__dict__.update(state)
        self._epoch = mp.RawValue('q', epoch)

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # metainfo, get_data_info, ... of the wrapped dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, idx):
        tie_worker_to_parent()
        if self.seed_samples:
            seed_all(derive_seed('sample', self.seed, self._epoch.value, idx))
        try:
            return self.dataset[idx]
        except Exception as e:
            try:
                files = _files(self.dataset.get_data_info(idx))
            except Exception:  # noqa: BLE001  (the original error is the one to report)
                files = []
            raise DataError(f'training sample {idx}'
                            + (f' ({", ".join(files)})' if files else '')
                            + f' could not be loaded: {type(e).__name__}: {_one_line(e)}') from e


@DATA_SAMPLERS.register_module()
class ResumableBatchSampler:
    """The configured batch sampler (or plain batching), able to skip the first ``skip``
    batches of the next epoch it yields: the part of an epoch a mid-epoch checkpoint holds."""

    def __init__(self, sampler, batch_size: int, batch_sampler: Optional[dict] = None,
                 drop_last: bool = False):
        if batch_sampler is None:
            self.batch_sampler = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler, default_args=dict(sampler=sampler, batch_size=batch_size))
        self.sampler = sampler  # DistSamplerSeedHook sets the epoch here
        self.skip = 0

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.batch_sampler):
            if i >= skip:
                yield batch

    def __len__(self):
        return len(self.batch_sampler)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Makes randomness a function of (seed, iteration, rank) and (seed, epoch, sample), and skips
    the already-trained part of a resumed epoch. See the module docstring."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._epoch_start_iter = 0
        self._epoch_samples_before = 0  # samples of this epoch trained before a resume
        self._loaded = None

    def _samples_per_iter(self, runner) -> int:
        """Processes x the loader's batch size (the batch sampler's when it batches)."""
        loader = runner.train_loop.dataloader
        sampler = loader.batch_sampler
        size = loader.batch_size or getattr(sampler, 'batch_size', None) or \
            getattr(getattr(sampler, 'batch_sampler', None), 'batch_size', None) or 1
        return get_world_size() * int(size)

    def before_train(self, runner) -> None:
        loader = runner.train_loop.dataloader
        dataset, batch_sampler = loader.dataset, loader.batch_sampler
        if isinstance(dataset, SeededDataset):
            dataset.seed = runner.seed
        if not (isinstance(batch_sampler, ResumableBatchSampler)
                and hasattr(runner.train_loop, 'max_epochs')):
            return
        loaded, per_iter = self._loaded, self._samples_per_iter(runner)
        if loaded:  # the samples of this epoch the checkpoint trained, in batches of this run
            samples = loaded['epoch_samples'] if loaded.get('epoch') == runner.epoch else 0
            if loaded.get('samples_per_iter') != per_iter:
                runner.logger.warning(
                    f'resuming with {get_world_size()} process(es) x batch '
                    f'{per_iter // get_world_size()} a checkpoint written by '
                    f'{loaded.get("world_size")} x batch '
                    f'{loaded["samples_per_iter"] // max(1, loaded.get("world_size") or 1)}: '
                    'the iteration count carries over; the data order from here on is not '
                    'that of an uninterrupted run')
        else:  # a checkpoint without that record: this run's batch size assumed
            samples = max(0, runner.iter - runner.epoch * len(loader)) * per_iter
        done = samples // per_iter
        if 0 < done < len(loader):
            batch_sampler.skip = done
            self._epoch_start_iter = runner.iter
            self._epoch_samples_before = done * per_iter
            runner.logger.info(f'resuming inside epoch {runner.epoch + 1}: skipping its '
                               f'first {done} batches, already trained')

    def before_train_epoch(self, runner) -> None:
        dataset = runner.train_loop.dataloader.dataset
        if isinstance(dataset, SeededDataset):
            dataset.set_epoch(runner.epoch)
        if self._epoch_samples_before and self._epoch_start_iter == runner.iter:
            return  # the resumed epoch: its start was set in before_train
        self._epoch_start_iter, self._epoch_samples_before = runner.iter, 0

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record where in the epoch the run stands, in samples, so that a run with another
        number of processes or batch size resumes at the same place."""
        per_iter = self._samples_per_iter(runner)
        meta = checkpoint.setdefault('meta', {})
        done = meta.get('iter', runner.iter)  # mmengine's count, right inside and after epochs
        epoch = meta.get('epoch', runner.epoch)
        samples = self._epoch_samples_before + (done - self._epoch_start_iter) * per_iter \
            if epoch == runner.epoch else 0  # an epoch-end checkpoint resumes at the next one
        meta['mmhiri_data'] = dict(epoch=epoch, world_size=get_world_size(),
                                   samples_per_iter=per_iter, epoch_samples=samples)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = (checkpoint.get('meta') or {}).get('mmhiri_data')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # the rank too: processes of one run draw independent masks (stochastic depth, ...)
        seed_all(derive_seed('iteration', runner.seed, runner.iter, get_rank()))


def make_resumable(cfg) -> None:
    """Wire :class:`ExactResumeHook` and :class:`SeededDataset` (all loops; samples seeded in
    epoch-based ones) and, for epoch-based training, :class:`ResumableBatchSampler` into
    ``cfg`` in place."""
    loader = cfg.get('train_dataloader')
    if not loader or not cfg.get('train_cfg'):
        return
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') == 'ExactResumeHook' for h in hooks):
        hooks.append(dict(type='ExactResumeHook'))
    cfg.custom_hooks = hooks
    loop = cfg.train_cfg.get('type', '')
    epoch_based = 'max_epochs' in cfg.train_cfg or loop.endswith('EpochBasedTrainLoop')
    if loader.dataset.get('type') == 'SeededDataset':
        return
    # iteration-based loops replay the loader on resume (mmengine): samples need no seeds
    loader.dataset = dict(type='SeededDataset', dataset=loader.dataset,
                          seed_samples=epoch_based)
    if epoch_based:
        inner = loader.get('batch_sampler')
        loader.batch_sampler = dict(type='ResumableBatchSampler', batch_sampler=inner)
