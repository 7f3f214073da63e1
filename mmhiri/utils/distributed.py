"""Training and testing on several processes (torchrun, Slurm), on GPUs or on CPUs.

mmengine's launchers assume CUDA: they call ``torch.cuda.set_device``, wrap the model with
``device_ids=[LOCAL_RANK]`` and convert ``sync_bn='torch'`` to torch's SyncBatchNorm, which
runs on GPUs only. :func:`prepare_distributed` (``build_runner`` calls it for any launcher but
``none``) keeps that stock path where CUDA is available; without CUDA it

* starts the process group itself with the ``gloo`` backend, from torchrun's or Slurm's
  environment, with ``env_cfg.dist_cfg.timeout`` (so a rank that hangs stops the job);
* wraps the model in DDP without ``device_ids`` (FSDP, through ``FlexibleRunner`` and
  ``strategy=dict(type='FSDPStrategy')``, with ``device_id='cpu'``);
* runs ``sync_bn`` and the config's own SyncBN layers as :class:`DistSyncBatchNorm` (batch
  statistics all-reduced over gloo).

Every distributed training run without ``sync_bn`` also gets :class:`SyncNormBuffersHook`:
DDP keeps one BatchNorm running mean/variance per rank (each sees only its own images), and a
checkpoint would silently keep rank 0's; the hook averages them over the ranks after every
iteration, so all ranks hold the same model and the checkpoint holds the mean.
"""
import datetime
import os
import subprocess
import sys
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import HOOKS, MODEL_WRAPPERS

DEFAULT_TIMEOUT_S = 1800  # mmengine's default for env_cfg.dist_cfg.timeout


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class DistSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch over all ranks (any
    device; torch's SyncBatchNorm needs a GPU). The per-channel sums go through a
    differentiable all-reduce, so gradients are those of one BatchNorm over the joint batch."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f'{type(self).__name__} expects an input of at least 2 dims '
                             f'(N, C, ...), got shape {tuple(x.shape)}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and _world() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):  # statistics in fp32 (half sums lose digits)
            x = x.float()
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = all_reduce(x.new_tensor([x.numel() // x.size(1)]))
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count  # two passes: no cancellation
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else \
                    1. / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(
                    var.detach() * (n / max(n - 1, 1.)), alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(dtype)

    @classmethod
    def convert(cls, module: nn.Module, sync_only: bool = False) -> nn.Module:
        """``module`` with every BatchNorm (1d/2d/3d, torch's SyncBatchNorm; with
        ``sync_only`` only the SyncBatchNorms a config asked for) replaced by this class,
        parameters and buffers kept."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls) \
                and (not sync_only or 'SyncBatchNorm' in type(module).__name__):
            new = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean = module.running_mean
                new.running_var = module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            new_child = cls.convert(child, sync_only)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for processes without a GPU (no ``device_ids``). The
    SyncBatchNorms a config declares (``norm_cfg=dict(type='SyncBN')``, as mmseg's heads do)
    and, with ``sync_bn=True``, all BatchNorms become :class:`DistSyncBatchNorm` first."""

    def __init__(self, module: nn.Module, sync_bn: bool = False, **kwargs):
        module = DistSyncBatchNorm.convert(module, sync_only=not sync_bn)
        kwargs.pop('device_ids', None)
        super().__init__(module=module, **kwargs)


@HOOKS.register_module()
class SyncNormBuffersHook(Hook):
    """Averages the floating-point buffers (BatchNorm running mean and variance) over the
    ranks after every training iteration and before validation. Without it every rank keeps
    the statistics of its own images and a checkpoint keeps rank 0's. One all-reduce of a few
    thousand numbers per iteration."""

    priority = 'ABOVE_NORMAL'  # before the checkpoint and EMA hooks read the model

    def _sync(self, runner) -> None:
        if _world() < 2:
            return
        model = getattr(runner.model, 'module', runner.model)
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.detach().reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat /= _world()
        offset = 0
        with torch.no_grad():
            for b in buffers:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._sync(runner)

    def before_val_epoch(self, runner) -> None:
        self._sync(runner)


def _slurm_env() -> None:
    """torch's env:// variables from Slurm's (as mmengine's Slurm launcher derives them)."""
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1').strip()
    os.environ.setdefault('MASTER_PORT', '29500')


def init_cpu_process_group(launcher: str, timeout_s: float) -> None:
    """Start a gloo process group from the launcher's environment (no CUDA calls)."""
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        _slurm_env()
    elif launcher == 'mpi':
        os.environ.setdefault('RANK', os.environ['OMPI_COMM_WORLD_RANK'])
        os.environ.setdefault('WORLD_SIZE', os.environ['OMPI_COMM_WORLD_SIZE'])
        os.environ.setdefault('LOCAL_RANK', os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
        os.environ.setdefault('MASTER_PORT', '29500')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise SystemExit(f'--launcher {launcher}: the environment lacks {missing}; start the '
                         'processes with tools/dist_train.sh (torchrun) or tools/slurm_train.sh')
    dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']),
                            timeout=datetime.timedelta(seconds=timeout_s))


def finish_distributed() -> None:
    """At the end of a successful multi-process run: wait for every rank, then close the
    process group. A rank that exits while another still tears its connections down can be
    aborted (SIGABRT) in gloo's destructor after all its work is done, failing the job."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def prepare_distributed(cfg, launcher: str, for_test: bool = False,
                        cuda: Optional[bool] = None) -> None:
    """Adapt ``cfg`` (in place) to a multi-process run; see the module docstring."""
    if launcher == 'none':
        return
    cuda = torch.cuda.is_available() if cuda is None else cuda
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT_S)
    sync_bn = cfg.get('sync_bn')
    if sync_bn not in (None, 'torch', 'mmcv'):
        raise SystemExit(f"sync_bn={sync_bn!r}: expected 'torch' (or 'mmcv' on GPUs) or None")
    if not cuda:
        backend = dist_cfg.get('backend', 'nccl')
        if backend != 'gloo':
            print(f'no CUDA device: using the gloo backend instead of {backend!r}',
                  file=sys.stderr)
        dist_cfg['backend'] = 'gloo'
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        if wrapper.get('type', 'MMDistributedDataParallel') in (
                'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel'):
            wrapper['type'] = 'CPUDistributedDataParallel'
            wrapper.setdefault('broadcast_buffers', False)
            wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
            wrapper['sync_bn'] = sync_bn is not None
            cfg.sync_bn = None  # converted by the wrapper, not by mmengine (CUDA-only)
            cfg.model_wrapper_cfg = wrapper
        strategy = cfg.get('strategy')
        if isinstance(strategy, dict) and 'FSDP' in str(strategy.get('type', '')):
            # FlexibleRunner + FSDPStrategy: mmengine passes device_id=LOCAL_RANK (a GPU)
            wrapper = dict(strategy.get('model_wrapper') or {})
            wrapper.setdefault('type', 'MMFullyShardedDataParallel')
            wrapper.setdefault('device_id', 'cpu')
            strategy['model_wrapper'] = wrapper
        init_cpu_process_group(launcher, float(dist_cfg['timeout']))
    if not for_test and sync_bn is None and cfg.get('train_cfg'):
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(isinstance(h, dict) and h.get('type') == 'SyncNormBuffersHook'
                   for h in hooks):
            hooks.append(dict(type='SyncNormBuffersHook'))
        cfg.custom_hooks = hooks
