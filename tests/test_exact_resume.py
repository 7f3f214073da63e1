"""Resuming after an interruption gives the uninterrupted run bit for bit (CPU): randomness in
the model, in the main process and in persistent loader workers, and checkpoints mid-epoch."""
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from conftest import TINY_V2


class AugData(Dataset):
    """Augmentation from the global Python, NumPy and torch generators, as pipelines do."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, 32, 32, generator=g)
        if random.random() < 0.5:
            img = img.flip(-1)
        img = img * float(np.random.uniform(0.8, 1.2)) + 0.05 * torch.randn(3, 32, 32)
        return dict(inputs=img, labels=i % 3)


class Net(BaseModel):

    def __init__(self):
        super().__init__()
        from mmhiri.registry import MODELS
        self.backbone = MODELS.build(
            dict(type='ViTAEv2', arch=TINY_V2, out_indices=(3, ), drop_path_rate=0.3))
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(64, 3)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.drop(self.backbone(inputs)[0].mean((2, 3))))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


def run(work_dir, max_epochs, workers, load_from=None):
    from mmhiri.utils.exact_resume import SeededDataset  # noqa: F401  (registers the parts)
    from mmhiri.utils import checkpointing  # noqa: F401
    torch.manual_seed(0)
    runner = Runner(
        model=Net(), work_dir=str(work_dir),
        experiment_name=f'{work_dir.name}_{max_epochs}_{load_from is not None}',
        train_dataloader=dict(
            dataset=SeededDataset(AugData()), batch_size=2, num_workers=workers,
            persistent_workers=workers > 0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_sampler=dict(type='ResumableBatchSampler'),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=8),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=3,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='ExactResumeHook')],
        randomness=dict(seed=0), resume=load_from is not None, load_from=load_from)
    runner.train()
    ckpt = torch.load(str(work_dir / f'iter_{runner.iter}.pth'), map_location='cpu',
                      weights_only=False) if (work_dir / f'iter_{runner.iter}.pth').exists() \
        else None
    return runner, ckpt


def same_state(a, b):
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k
        elif isinstance(v, dict):
            same_state(v, b[k])
        elif isinstance(v, (list, tuple)):
            for x, y in zip(v, b[k]):
                same_state(x, y) if isinstance(x, dict) else None


@pytest.mark.slow
@pytest.mark.parametrize('workers', [0, 2])
def test_resume_from_any_checkpoint_is_bit_exact(tmp_path, workers):
    """3 epochs of 5 iterations, a checkpoint every 3 iterations: iter_3, iter_6, iter_9 and
    iter_12 fall inside epochs 1, 2 and 2 and at the end of 3 (5 batches per epoch)."""
    ref_runner, _ = run(tmp_path / 'ref', 3, workers)
    ref = ref_runner.model.state_dict()
    ref_opt = ref_runner.optim_wrapper.state_dict()
    assert ref_runner.iter == 15
    for ckpt in ('iter_3.pth', 'iter_6.pth', 'iter_12.pth'):
        # the 'killed' run: a copy of the work dir up to that checkpoint
        resumed, _ = run(tmp_path / f'from_{ckpt[:-4]}', 3, workers,
                         load_from=str(tmp_path / 'ref' / ckpt))
        assert resumed.iter == 15, ckpt  # no epoch replayed
        for k, v in resumed.model.state_dict().items():
            assert torch.equal(v, ref[k]), (ckpt, k)
        same_state(resumed.optim_wrapper.state_dict(), ref_opt)


def _children(pid):
    import os
    kids = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def _alive(pid):
    import os
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _train(args, env, kill_when=None, timeout=600):
    """Run tools/train.py; with ``kill_when(work_dir)`` true, SIGKILL it at once. Returns
    (killed, loader workers that were alive at the kill)."""
    import subprocess
    import sys
    import time

    import tempfile

    from conftest import ROOT
    log = tempfile.TemporaryFile(mode='w+')  # a pipe nobody reads would block the trainer
    proc = subprocess.Popen([sys.executable, 'tools/train.py', *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if kill_when is not None and kill_when():
            workers = _children(proc.pid)
            proc.kill()
            proc.wait()
            return True, workers
        time.sleep(0.05)
    log.seek(0)
    assert proc.returncode == 0, log.read()[-3000:]
    return False, []


KILL_CASES = {
    # 16 images, 3 epochs of 4 iterations: checkpoints at iterations 3, 6, 9 fall mid-epoch
    'mmdet-mask-rcnn': ('configs/demo/mask_rcnn_hiri_demo.py', 'instances', [
        'train_dataloader.dataset.data_root={data}/instances/', 'train_cfg.max_epochs=3']),
    # iteration-based (mmengine replays the loader on resume), loader workers on
    'mmseg-upernet': ('configs/demo/upernet_hiri_demo.py', 'semantic', [
        'train_dataloader.dataset.data_root={data}/semantic', 'train_cfg.max_iters=12',
        'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']),
}


@pytest.mark.slow
@pytest.mark.parametrize('case', list(KILL_CASES))
def test_demo_survives_kill_9_bit_exactly(case, tmp_path):
    """A demo config, 12 iterations, a checkpoint every 3 with max_keep_ckpts=1: killed (SIGKILL)
    once while a checkpoint is being written and once between checkpoints, resumed each time
    with --resume, it ends with the weights and optimizer state of the uninterrupted run; the
    loader worker of the killed trainer does not outlive it."""
    import os
    import time

    from mmhiri.datasets.synthetic import main as make_data
    from mmhiri.utils.checkpointing import find_resumable
    config, kind, options = KILL_CASES[case]
    data = tmp_path / 'data'
    make_data([str(data), '--num-train', '16', '--num-val', '4', '--only', kind])
    # checkpoint writes take ~1 s in the trainers (tests/slow_checkpoint_writes.py, loaded by a
    # sitecustomize), so that the kill below lands inside one
    site = tmp_path / 'site'
    site.mkdir()
    (site / 'sitecustomize.py').write_text('import slow_checkpoint_writes  # noqa: F401\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED='0',
               PYTHONPATH=os.pathsep.join([str(site), os.path.dirname(__file__)]))

    def args(work):
        return [config, '--work-dir', str(work), '--no-validate', '--cfg-options',
                *[o.format(data=data) for o in options],
                'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=3',
                'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.logger.interval=1',
                'randomness.seed=0']

    ref = tmp_path / 'ref'
    _train(args(ref), env)
    work = tmp_path / 'killed'
    # 1) killed while iter_6.pth is half-written: iter_3.pth (max_keep_ckpts=1) survives
    tmp = work / '.iter_6.pth.tmp'
    killed, workers = _train(args(work), env,
                             kill_when=lambda: tmp.exists() and tmp.stat().st_size > 0)
    assert killed and workers, 'the run should have had a loader worker when killed'
    t0 = time.time()
    while any(_alive(w) for w in workers) and time.time() - t0 < 10:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), 'a loader worker outlived its trainer'
    assert find_resumable(str(work)) == (str(work / 'iter_3.pth'), [])
    # 2) resumed, then killed between checkpoints (after iter_9.pth, before iter_12.pth)
    killed, _ = _train(args(work) + ['--resume'], env,
                       kill_when=lambda: (work / 'iter_9.pth').exists() and time.sleep(1) is None)
    assert killed and not (work / 'iter_12.pth').exists()
    # 3) resumed to the end
    _train(args(work) + ['--resume'], env)

    a = torch.load(str(ref / 'iter_12.pth'), map_location='cpu', weights_only=False)
    b = torch.load(str(work / 'iter_12.pth'), map_location='cpu', weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 12
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        for k, v in sa.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[k])), k
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_12.pth']  # max_keep_ckpts=1


@pytest.mark.slow
def test_shipped_demo_config_without_a_seed_resumes_bit_exactly(tmp_path):
    """The demo config as shipped sets no randomness.seed: the run draws one and records it in
    its checkpoints. Killed (SIGKILL) inside epoch 2 and resumed with --resume, it continues
    with that seed everywhere (the sampler's shuffle, the samples, the iterations; the sampler
    used to get a new one) and ends with the weights and optimizer state of an uninterrupted
    run given that seed. 8 images, batch 4: 2 epochs of 2 iterations, a checkpoint at
    iteration 3, the first of epoch 2."""
    import os

    from mmhiri.datasets.synthetic import main as make_data
    data = tmp_path / 'data'
    make_data([str(data), '--num-train', '8', '--num-val', '1', '--only', 'instances'])
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED='0')

    def args(work, *options):
        return ['configs/demo/mask_rcnn_hiri_demo.py', '--work-dir', str(work), '--no-validate',
                '--cfg-options', f'train_dataloader.dataset.data_root={data}/instances/',
                'train_cfg.max_epochs=2', 'default_hooks.checkpoint.by_epoch=False',
                'default_hooks.checkpoint.interval=3', *options]

    work = tmp_path / 'killed'
    killed, _ = _train(args(work), env, kill_when=lambda: (work / 'iter_3.pth').exists())
    assert killed and not (work / 'iter_4.pth').exists()
    seed = torch.load(str(work / 'iter_3.pth'), map_location='cpu',
                      weights_only=False)['meta']['seed']
    _train(args(work) + ['--resume'], env)
    ref = tmp_path / 'ref'
    _train(args(ref, f'randomness.seed={seed}'), env)

    a = torch.load(str(ref / 'iter_4.pth'), map_location='cpu', weights_only=False)
    b = torch.load(str(work / 'iter_4.pth'), map_location='cpu', weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 4 and a['meta']['seed'] == b['meta']['seed']
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        for k, v in sa.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[k])), k
