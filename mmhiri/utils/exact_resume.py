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
  trained;
* **a run without ``randomness.seed``** draws its seed once (mmengine, the same on every rank)
  and records it in every checkpoint's ``meta.seed``; mmengine restores it on resume only after
  the loaders were built with a fresh one (another shuffle). :func:`use_recorded_seed` puts the
  recorded seed into the config before the Runner is built, so the sampler, the sample seeds
  and the per-iteration seeds all continue the run.

Loader workers also die with their trainer (``PR_SET_PDEATHSIG`` on Linux) instead of
outliving a ``kill -9``. ``tools/train.py`` wires all of this in for epoch-based configs
(:func:`make_resumable`); the config itself stays stock.
"""
import ctypes
import hashlib
import random
import signal
import sys
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import DATA_SAMPLERS, DATASETS, HOOKS

from mmhiri.datasets.checks import CheckedDataset, DataError  # noqa: F401  (DataError: here too)

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


@DATASETS.register_module()
class SeededDataset(CheckedDataset):
    """Wraps the training dataset; with ``seed_samples`` every sample is loaded with Python,
    NumPy and torch seeded from ``(seed, epoch, index)``. The epoch lives in shared memory, so
    persistent workers see the value the trainer sets (:class:`ExactResumeHook`).

    A sample or an annotation file that cannot be read stops the run with its path in the
    message (a bare ``cv2.error`` or ``JSONDecodeError`` named neither), and so do annotations
    of undeclared categories unless ``unknown_categories='drop'``
    (:class:`mmhiri.datasets.checks.CheckedDataset`)."""

    def __init__(self, dataset, seed: int = 0, seed_samples: bool = True,
                 unknown_categories: Optional[str] = 'error'):
        import multiprocessing as mp
        super().__init__(dataset, role='training', unknown_categories=unknown_categories)
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

    def __getitem__(self, idx):
        tie_worker_to_parent()
        if self.seed_samples:
            seed_all(derive_seed('sample', self.seed, self._epoch.value, idx))
        return super().__getitem__(idx)


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


def recorded_seed(checkpoint: str) -> Optional[int]:
    """The seed the run that wrote ``checkpoint`` used (mmengine records it in ``meta.seed``,
    drawn or configured), or None if the file does not say."""
    from mmhiri.utils.safe_load import load_without_copy
    try:
        ckpt = load_without_copy(checkpoint)
    except Exception:  # noqa: BLE001  (an unreadable file is reported when it is loaded)
        return None
    seed = ((ckpt.get('meta') if isinstance(ckpt, dict) else None) or {}).get('seed')
    return int(seed) if isinstance(seed, int) else None


def use_recorded_seed(cfg) -> None:
    """A resumed run takes the seed of the run it continues, before the Runner builds anything
    from it: mmengine restores the checkpoint's seed only after the loaders (their sampler's
    shuffle, worker seeds) were built with a new one."""
    seed = recorded_seed(cfg.load_from)
    if seed is None:
        return
    randomness = dict(cfg.get('randomness') or {})
    configured = randomness.get('seed')
    if configured is not None and configured != seed:
        print(f'--resume: {cfg.load_from} was trained with seed {seed}; the resumed run uses '
              f'it, not randomness.seed={configured}', file=sys.stderr)
    elif configured is None:
        print(f'--resume: seeding with the recorded seed of the run, {seed}', file=sys.stderr)
    cfg.randomness = dict(randomness, seed=seed)


def make_resumable(cfg, unknown_categories: Optional[str] = 'error') -> None:
    """Wire :class:`ExactResumeHook` and :class:`SeededDataset` (all loops; samples seeded in
    epoch-based ones) and, for epoch-based training, :class:`ResumableBatchSampler` into
    ``cfg`` in place; a resumed run (``cfg.resume`` with ``cfg.load_from``) takes the seed the
    checkpoint records (:func:`use_recorded_seed`). ``unknown_categories``: what the training
    dataset does with annotations of undeclared categories (``'error'`` or ``'drop'``, see
    :class:`mmhiri.datasets.checks.CheckedDataset`)."""
    loader = cfg.get('train_dataloader')
    if not loader or not cfg.get('train_cfg'):
        return
    if cfg.get('resume') and cfg.get('load_from'):
        use_recorded_seed(cfg)
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
    if unknown_categories != 'error':
        loader.dataset['unknown_categories'] = unknown_categories
    if epoch_based:
        inner = loader.get('batch_sampler')
        loader.batch_sampler = dict(type='ResumableBatchSampler', batch_sampler=inner)
