"""Test-only hooks for the multi-process tests (imported through ``custom_imports``).

* ``RecordStateHook``: after every training iteration, each rank appends a digest of its whole
  model state (parameters and buffers, an EMA teacher included) to ``WORK_DIR/state_rankR.jsonl``
  and, at the end, saves its state dict to ``WORK_DIR/final_rankR.pth``;
* ``FailRankHook``: at iteration ``at_iter`` the process of rank ``rank`` kills itself
  (``how='kill'``) or stops answering (``how='hang'``).
"""
import hashlib
import json
import os
import os.path as osp
import signal
import time

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _state(runner):
    return getattr(runner.model, 'module', runner.model).state_dict()


@HOOKS.register_module()
class RecordStateHook(Hook):
    priority = 'LOWEST'  # after the buffer averaging and the EMA update

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        params, buffers = hashlib.sha256(), hashlib.sha256()
        named = dict(getattr(runner.model, 'module', runner.model).named_parameters())
        for name, value in sorted(_state(runner).items()):
            (params if name in named else buffers).update(
                name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        path = osp.join(runner.work_dir, f'state_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1, params=params.hexdigest(),
                                    wrapper=type(runner.model).__name__,
                                    local_numel=sum(p.numel() for p in runner.model.parameters()),
                                    buffers=buffers.hexdigest(),
                                    lr=[g['lr'] for g in
                                        runner.optim_wrapper.optimizer.param_groups])) + '\n')

    def after_train(self, runner):
        torch.save({k: v.detach().cpu() for k, v in _state(runner).items()},
                   osp.join(runner.work_dir, f'final_rank{get_rank()}.pth'))


@HOOKS.register_module()
class FailRankHook(Hook):

    def __init__(self, rank=1, at_iter=1, how='kill'):
        self.rank, self.at_iter, self.how = rank, at_iter, how

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() != self.rank or runner.iter != self.at_iter:
            return
        print(f'rank {self.rank}: {self.how} at iteration {runner.iter}', flush=True)
        if self.how == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        while True:  # 'hang': alive, but never joins the next collective
            time.sleep(60)
