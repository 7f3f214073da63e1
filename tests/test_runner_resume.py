"""Train with the real mmengine Runner on CPU, save, resume under torch's safe loading."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from conftest import TINY_V2


class ToyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        from mmhiri.registry import MODELS
        # no drop path: mmengine checkpoints do not carry the RNG state, and the test compares
        # a resumed run with an uninterrupted one bit for bit
        self.backbone = MODELS.build(
            dict(type='ViTAEv2', arch=TINY_V2, out_indices=(3, ), drop_path_rate=0.))
        self.head = nn.Linear(64, 3)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.rand(3, 32, 32, generator=g), labels=i % 3)


def make_runner(work_dir, max_iters, resume=False, load_from=None):
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    return Runner(
        model=ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=6),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume, load_from=load_from)


def test_train_save_resume(tmp_path):
    import mmhiri  # noqa: F401  (allows mmengine checkpoints under weights_only loading)
    first = make_runner(tmp_path / 'a', max_iters=4)
    first.train()
    ckpt = tmp_path / 'a' / 'iter_4.pth'
    assert ckpt.is_file()
    # torch >= 2.6 loads with weights_only=True by default; the checkpoint must pass as it is
    assert torch.load(ckpt, weights_only=True)['meta']['iter'] == 4

    # resuming restores iteration, weights and optimizer state, and trains no further step
    resumed = make_runner(tmp_path / 'b', max_iters=4, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4 and not (tmp_path / 'b' / 'iter_4.pth').exists()
    for (n, a), (_, b) in zip(first.model.state_dict().items(),
                              resumed.model.state_dict().items()):
        assert torch.equal(a, b), n
    opt_a = first.optim_wrapper.optimizer.state_dict()
    opt_b = resumed.optim_wrapper.optimizer.state_dict()
    assert opt_a['param_groups'][0]['lr'] == opt_b['param_groups'][0]['lr']
    assert opt_a['state'].keys() == opt_b['state'].keys() and opt_a['state']
    for k in opt_a['state']:
        for name in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(torch.as_tensor(opt_a['state'][k][name]),
                               torch.as_tensor(opt_b['state'][k][name]))

    # 4 iterations + resume + 2 more == 6 iterations in one go
    more = make_runner(tmp_path / 'c', max_iters=6, resume=True, load_from=str(ckpt))
    more.train()
    straight = make_runner(tmp_path / 'd', max_iters=6)
    straight.train()
    assert more.iter == straight.iter == 6
    for (n, a), (_, b) in zip(straight.model.state_dict().items(),
                              more.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)


def test_checkpoint_needs_our_allow_list(tmp_path):
    """Without mmhiri's allow-list the safe loader refuses an mmengine checkpoint (which is
    what breaks plain resume on torch >= 2.6); with it, it loads."""
    import mmhiri  # noqa: F401
    runner = make_runner(tmp_path, max_iters=2)
    runner.train()
    ckpt = str(tmp_path / 'iter_2.pth')
    code = ('import torch, sys\n'
            f'p = {ckpt!r}\n'
            'try:\n'
            '    torch.load(p, weights_only=True); print("plain: ok")\n'
            'except Exception as e:\n'
            '    print("plain: refused")\n'
            'import mmhiri\n'
            'torch.load(p, weights_only=True); print("with mmhiri: ok")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['plain:', 'refused', 'with', 'mmhiri:', 'ok']


def make_safe_runner(work_dir, max_iters, max_keep=1, load_from=None):
    import mmhiri.utils.checkpointing  # noqa: F401  (registers SafeCheckpointHook)
    torch.manual_seed(0)
    return Runner(
        model=ToyClassifier(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1,
                                           by_epoch=False, max_keep_ckpts=max_keep),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), resume=load_from is not None, load_from=load_from,
        # a name of its own: two Runners made in the same second would share the
        # timestamp-named message hub and logger
        experiment_name=f'{work_dir.name}_{max_iters}_{load_from is not None}')


def test_a_kill_during_a_save_loses_nothing(tmp_path, monkeypatch):
    """With max_keep_ckpts=1 a kill while iter_3.pth is written used to leave iter_2.pth
    deleted, iter_3.pth truncated and last_checkpoint naming it. Here the write dies after half
    of the bytes: the previous checkpoint and last_checkpoint are intact."""
    import os.path as osp

    import mmengine.fileio.backends.local_backend as lb

    from mmhiri.utils.checkpointing import find_resumable, is_complete_checkpoint
    runner = make_safe_runner(tmp_path, max_iters=2)
    runner.train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth']
    real_put = lb.LocalBackend.put

    def dying_put(self, obj, filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
        raise KeyboardInterrupt('killed while saving')

    runner = make_safe_runner(tmp_path, max_iters=3, load_from=str(tmp_path / 'iter_2.pth'))
    monkeypatch.setattr(lb.LocalBackend, 'put', dying_put)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    monkeypatch.setattr(lb.LocalBackend, 'put', real_put)
    assert is_complete_checkpoint(str(tmp_path / 'iter_2.pth'))[0]
    assert not (tmp_path / 'iter_3.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == osp.join(str(tmp_path), 'iter_2.pth')
    assert find_resumable(str(tmp_path)) == (str(tmp_path / 'iter_2.pth'), [])


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    import os
    import time

    from mmhiri.utils.checkpointing import find_resumable
    runner = make_safe_runner(tmp_path, max_iters=3, max_keep=3)
    runner.train()
    newest = tmp_path / 'iter_3.pth'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 3])  # what a kill in a plain torch.save leaves
    later = time.time() + 5
    os.utime(newest, (later, later))
    found, skipped = find_resumable(str(tmp_path))
    assert found == str(tmp_path / 'iter_2.pth')
    assert len(skipped) == 1 and skipped[0].startswith(str(newest)) and 'truncated' in skipped[0]
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    found, skipped = find_resumable(str(tmp_path))
    assert found == str(tmp_path / 'iter_1.pth') and '(empty)' in skipped[1]
