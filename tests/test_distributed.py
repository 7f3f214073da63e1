"""Training and testing on several processes, on this CPU machine (gloo), as a user runs them:
``tools/dist_train.sh``, ``tools/dist_test.sh``, ``tools/slurm_train.sh`` (under a stand-in
``srun``) and ``tools/train.py`` for the one-process side. The hooks that record what each rank
holds are in ``tests/dist_checks.py``."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY_HIRI

pytestmark = pytest.mark.slow

DEMO_DET = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_hiri_demo.py')
DEMO_SEG = osp.join(ROOT, 'configs', 'demo', 'upernet_hiri_demo.py')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env(**extra):
    e = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), PYTHONHASHSEED='0',
             PYTHONPATH=os.pathsep.join([osp.dirname(__file__), ROOT]))
    e.update(extra)
    return e


def run(cmd, timeout=600, check=True, **extra):
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env(**extra),
                         timeout=timeout)
    out.seconds = time.time() - t0
    if check and out.returncode != 0:
        pytest.fail(f'{" ".join(map(str, cmd))} exited {out.returncode}\n--- stdout (end) ---\n'
                    f'{out.stdout[-3000:]}\n--- stderr (end) ---\n{out.stderr[-8000:]}',
                    pytrace=False)
    return out


def dist_train(config, procs, *args, **kw):
    return run(['bash', 'tools/dist_train.sh', str(config), str(procs), *args], **kw)


def train(config, *args, **kw):
    return run([sys.executable, 'tools/train.py', str(config), *args], **kw)


def with_hooks(tmp_path, base, name, extra=''):
    """A config file that is ``base`` plus the recording hook (a user's own config would
    inherit the same way)."""
    path = tmp_path / f'{name}.py'
    path.write_text(f'_base_ = [{str(base)!r}]\n'
                    "custom_imports = dict(imports=['mmhiri', 'mmhiri.engine', 'dist_checks'], "
                    'allow_failed_imports=False)\n' + extra)
    return path


def records(work_dir, rank):
    with open(osp.join(work_dir, f'state_rank{rank}.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from mmhiri.datasets.synthetic import main as make_data
    root = tmp_path_factory.mktemp('dist_data')
    make_data([str(root), '--num-train', '16', '--num-val', '8', '--only', 'instances',
               'semantic'])
    return root


def det_options(data, *more):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data}/instances/',
            f'val_dataloader.dataset.data_root={data}/instances/',
            f'test_dataloader.dataset.data_root={data}/instances/',
            f'val_evaluator.ann_file={data}/instances/annotations/instances_val.json',
            f'test_evaluator.ann_file={data}/instances/annotations/instances_val.json',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            'train_cfg.max_epochs=1', 'default_hooks.checkpoint.by_epoch=False',
            'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=-1',
            'default_hooks.logger.interval=1', 'randomness.seed=0', *more]


@pytest.fixture(scope='module')
def det_two_ranks(data, tmp_path_factory):
    """The demo Mask R-CNN, 2 processes x batch 2 on 16 images: 4 iterations, a checkpoint
    every 2, the learning rate scaled to the total batch."""
    tmp = tmp_path_factory.mktemp('det2')
    config = with_hooks(tmp, DEMO_DET, 'det',
                        "custom_hooks = [dict(type='RecordStateHook')]\n")
    work = tmp / 'work'
    out = dist_train(config, 2, '--work-dir', str(work), '--no-validate', '--auto-scale-lr',
                     *det_options(data))
    print(f'2 processes x batch 2, 4 iterations: {out.seconds:.1f} s')
    return config, work, out


def test_two_ranks_hold_the_same_model_after_every_step(det_two_ranks):
    """Parameters and buffers (BatchNorm statistics, averaged by SyncNormBuffersHook) are
    identical on both ranks after every iteration; the checkpoint is that model; the
    learning rate is scaled by the real total batch (2 x 2 = 4 of the config's 16)."""
    _, work, out = det_two_ranks
    r0, r1 = records(work, 0), records(work, 1)
    assert [r['iter'] for r in r0] == [r['iter'] for r in r1] == [1, 2, 3, 4]
    for a, b in zip(r0, r1):
        assert a['params'] == b['params'], a['iter']
        assert a['buffers'] == b['buffers'], a['iter']
    assert len({r['buffers'] for r in r0}) == 4  # the statistics move every step
    final0 = torch.load(str(work / 'final_rank0.pth'))
    ckpt = torch.load(str(work / 'iter_4.pth'), map_location='cpu', weights_only=False)
    for k, v in final0.items():
        assert torch.equal(ckpt['state_dict'][k], v), k
    base_lr = 1e-3  # configs/demo/mask_rcnn_hiri_demo.py; auto_scale_lr.base_batch_size=16
    initial = [g['initial_lr'] for g in ckpt['optimizer']['param_groups']]
    assert initial == pytest.approx([base_lr * 4 / 16] * len(initial)), initial
    assert 'gloo' in out.stderr + out.stdout


def test_dist_test_reproduces_one_process_metrics(det_two_ranks, data, tmp_path):
    """COCO bbox/segm mAP and every prediction of ``dist_test.sh`` with 2 processes equal
    those of ``tools/test.py`` in one process, on the same checkpoint (boxes within 1e-5
    relative: the processes run with other thread counts, so sums round differently)."""
    import pickle

    import numpy as np
    config, work, _ = det_two_ranks
    ckpt = str(work / 'iter_4.pth')
    one = run([sys.executable, 'tools/test.py', str(config), ckpt, '--work-dir',
               str(tmp_path / 'one'), '--out', str(tmp_path / 'one.pkl'), '--metrics-out',
               str(tmp_path / 'one.json'), *det_options(data)])
    two = run(['bash', 'tools/dist_test.sh', str(config), ckpt, '2', '--work-dir',
               str(tmp_path / 'two'), '--out', str(tmp_path / 'two.pkl'), '--metrics-out',
               str(tmp_path / 'two.json'), *det_options(data)])
    m1, m2 = (json.loads((tmp_path / f'{n}.json').read_text()) for n in ('one', 'two'))
    print(f'1 process {one.seconds:.1f} s, 2 processes {two.seconds:.1f} s; '
          f'bbox mAP {m1["coco/bbox_mAP"]} / {m2["coco/bbox_mAP"]}, segm mAP '
          f'{m1["coco/segm_mAP"]} / {m2["coco/segm_mAP"]}')
    assert m1 == m2
    p1, p2 = (pickle.load(open(tmp_path / f'{n}.pkl', 'rb')) for n in ('one', 'two'))
    assert len(p1) == len(p2) == 8
    by_id = {p['img_id']: p for p in p2}
    assert sum(len(p['pred_instances']['scores']) for p in p1) > 0
    for p in p1:
        q = by_id[p['img_id']]
        for key in ('bboxes', 'scores', 'labels'):
            np.testing.assert_allclose(np.asarray(p['pred_instances'][key]),
                                       np.asarray(q['pred_instances'][key]), rtol=1e-5, atol=1e-4)


def test_dist_test_reproduces_one_process_miou(data, tmp_path):
    """The segmentation demo: mIoU of 2 processes equals 1 process on the same checkpoint."""
    opts = ['--cfg-options', *[f'{k}.dataset.data_root={data}/semantic'
                               for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')],
            'train_cfg.max_iters=2', 'train_cfg.val_interval=100', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', 'default_hooks.checkpoint.interval=2',
            'randomness.seed=0']
    train(DEMO_SEG, '--work-dir', str(tmp_path / 'train'), '--no-validate', *opts)
    ckpt = str(tmp_path / 'train' / 'iter_2.pth')
    for name, cmd in (('one', [sys.executable, 'tools/test.py', DEMO_SEG, ckpt]),
                      ('two', ['bash', 'tools/dist_test.sh', DEMO_SEG, ckpt, '2'])):
        run([*cmd, '--work-dir', str(tmp_path / name), '--metrics-out',
             str(tmp_path / f'{name}.json'), *opts])
    m1, m2 = (json.loads((tmp_path / f'{n}.json').read_text()) for n in ('one', 'two'))
    print(f'mIoU 1 process {m1["mIoU"]}, 2 processes {m2["mIoU"]}')
    assert m1 == m2 and 'mIoU' in m1


def test_checkpoints_resume_across_process_counts(det_two_ranks, data, tmp_path):
    """A mid-epoch checkpoint of the 2-process run resumes in one process (and the other way
    round) at the same place in the epoch, in samples: 2 iterations x 2 x 2 = 8 samples
    trained, so the one-process run (batch 2) skips 4 batches and trains the other 4."""
    config, work, _ = det_two_ranks
    one = train(config, '--work-dir', str(tmp_path / 'one'), '--no-validate',
                '--resume', str(work / 'iter_2.pth'), *det_options(data))
    log = one.stdout + one.stderr
    assert 'skipping its first 4 batches' in log, log[-3000:]
    assert 'written by 2 x batch 2' in log
    assert [r['iter'] for r in records(tmp_path / 'one', 0)] == [3, 4, 5, 6]
    # the other way: 1 process x batch 2 for 4 of its 8 iterations, then 2 processes
    first = train(config, '--work-dir', str(tmp_path / 'a'), '--no-validate',
                  *det_options(data, 'default_hooks.checkpoint.interval=4'))
    assert first.returncode == 0
    two = dist_train(config, 2, '--work-dir', str(tmp_path / 'b'), '--no-validate', '--resume',
                     str(tmp_path / 'a' / 'iter_4.pth'), *det_options(data))
    log = two.stdout + two.stderr
    assert 'skipping its first 2 batches' in log, log[-3000:]
    for rank in (0, 1):
        assert [r['iter'] for r in records(tmp_path / 'b', rank)] == [5, 6]
    assert records(tmp_path / 'b', 0)[-1]['params'] == records(tmp_path / 'b', 1)[-1]['params']


PLAIN_MODEL = """dict(type='ImageClassifier',
             data_preprocessor=dict(num_classes=4, mean=[127.5] * 3, std=[64.] * 3, to_rgb=True),
             backbone=dict(type='mmhiri.HIRIViT', arch=ARCH, out_indices=(4, ),
                           drop_path_rate=0.),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=4, in_channels=32,
                       loss=dict(type='CrossEntropyLoss')))"""


def cls_config(tmp_path, root, name, model=PLAIN_MODEL, hooks="dict(type='RecordStateHook')",
               extra=''):
    """A tiny HIRI-ViT classifier (BatchNorm in stages 1-3) on the generated shapes, with
    nothing random in the plain model: no augmentation, no shuffling, no stochastic depth."""
    path = tmp_path / f'{name}.py'
    path.write_text(f'''_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mmhiri', 'mmhiri.engine', 'dist_checks'],
                      allow_failed_imports=False)
ARCH = {TINY_HIRI!r}
model = {model}
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(batch_size=2, num_workers=0,
                        dataset=dict(type='CustomDataset', data_root={root!r},
                                     data_prefix='train', pipeline=pipeline),
                        sampler=dict(type='DefaultSampler', shuffle=False))
train_cfg = dict(by_epoch=False, max_iters=4)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
custom_hooks = [{hooks}]
default_hooks = dict(checkpoint=dict(interval=4, by_epoch=False), logger=dict(interval=1))
randomness = dict(seed=0)
''' + extra)
    return path


@pytest.fixture(scope='module')
def cls_data(tmp_path_factory):
    from mmhiri.datasets.classification import generate_classification
    return generate_classification(str(tmp_path_factory.mktemp('cls')), num_classes=4,
                                   num_train=8, num_val=0, size=128, seed=0)['root']


def test_sync_bn_two_ranks_reproduce_one_process(cls_data, tmp_path):
    """With ``sync_bn='torch'`` (the switch; gloo-capable DistSyncBatchNorm on CPU), 2
    processes x batch 1 train the model 1 process x batch 2 trains, within 1e-5 (of each
    tensor's scale, or absolute below 1) after 4 SGD steps; without it the BatchNorm
    statistics (per-rank batch of 1) are not those."""
    config = cls_config(tmp_path, cls_data, 'cls')
    ref = train(config, '--work-dir', str(tmp_path / 'one'))
    sync = dist_train(config, 2, '--work-dir', str(tmp_path / 'sync'), '--cfg-options',
                      'train_dataloader.batch_size=1', 'sync_bn=torch')
    plain = dist_train(config, 2, '--work-dir', str(tmp_path / 'plain'), '--cfg-options',
                       'train_dataloader.batch_size=1')
    print(f'1 x 2: {ref.seconds:.1f} s; 2 x 1 SyncBN: {sync.seconds:.1f} s; '
          f'2 x 1: {plain.seconds:.1f} s')
    a = torch.load(str(tmp_path / 'one' / 'final_rank0.pth'))

    def worst(work):
        b = torch.load(str(work / 'final_rank0.pth'))
        return max(float((a[k].double() - b[k].double()).abs().max()
                         / max(1., float(a[k].abs().max())))
                   for k in a if a[k].is_floating_point())

    for rank in (0, 1):  # both ranks agree in either mode
        assert records(tmp_path / 'sync', 0)[-1] == records(tmp_path / 'sync', rank)[-1]
    print(f'largest difference to 1 x 2: SyncBN {worst(tmp_path / "sync"):.2e}, '
          f'plain BN {worst(tmp_path / "plain"):.2e}')
    assert worst(tmp_path / 'sync') < 1e-5
    assert worst(tmp_path / 'plain') > 1e-3


def test_ema_teacher_identical_across_ranks(cls_data, tmp_path):
    """HIRI-ViT's EMA distillation (teacher in the state dict) under 2 processes: parameters,
    buffers and the teacher agree on both ranks after every step."""
    config = cls_config(tmp_path, cls_data, 'ema', model="""dict(
    type='mmhiri.EMADistillClassifier',
    data_preprocessor=dict(num_classes=4, mean=[127.5] * 3, std=[64.] * 3, to_rgb=True),
    backbone=dict(type='mmhiri.HIRIViT', arch=ARCH, out_indices=(4, ), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='StackedLinearClsHead', num_classes=4, in_channels=32, mid_channels=[64],
              act_cfg=dict(type='GELU'),
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=.8), dict(type='CutMix', alpha=1.)]),
    distill=dict(alpha=.8, momentum=.05, eval_teacher=True))""",
                        hooks="dict(type='EMADistillHook'), dict(type='RecordStateHook')")
    dist_train(config, 2, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               'train_dataloader.batch_size=2')
    r0, r1 = records(tmp_path / 'w', 0), records(tmp_path / 'w', 1)
    assert len(r0) == len(r1) == 4 and r0 == r1
    a = torch.load(str(tmp_path / 'w' / 'final_rank0.pth'))
    b = torch.load(str(tmp_path / 'w' / 'final_rank1.pth'))
    teacher = [k for k in a if k.startswith('teacher.')]
    assert teacher and all(torch.equal(a[k], b[k]) for k in teacher)
    assert any(not torch.equal(a[k], a[k[len('teacher.'):]]) for k in teacher)


def test_fsdp_shards_and_trains_like_ddp(cls_data, tmp_path):
    """mmengine's FlexibleRunner with its FSDP strategy, on CPU (gloo; the wrapper's
    ``device_id='cpu'`` is set by our launcher code):
    each of 2 ranks holds about half of the parameters, and the full checkpoint after 4 steps
    equals DDP's (2 x batch 1, same data) within 1e-6."""
    fsdp = cls_config(tmp_path, cls_data, 'fsdp', extra='''
runner_type = 'FlexibleRunner'
strategy = dict(type='FSDPStrategy', state_dict_cfg='full')
''')
    ddp = cls_config(tmp_path, cls_data, 'ddp')
    for config, work in ((fsdp, 'fsdp'), (ddp, 'ddp')):
        dist_train(config, 2, '--work-dir', str(tmp_path / work), '--cfg-options',
                   'train_dataloader.batch_size=1')
    sharded = [records(tmp_path / 'fsdp', r)[-1] for r in (0, 1)]
    full = records(tmp_path / 'ddp', 0)[-1]
    print(f"parameters per rank: FSDP {[r['local_numel'] for r in sharded]}, "
          f"DDP {full['local_numel']}")
    assert {r['wrapper'] for r in sharded} == {'MMFullyShardedDataParallel'}
    assert all(r['local_numel'] <= full['local_numel'] // 2 + 64 for r in sharded)
    a, b = (torch.load(str(tmp_path / w / 'iter_4.pth'), map_location='cpu',
                       weights_only=False)['state_dict'] for w in ('fsdp', 'ddp'))
    assert set(a) == set(b)
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in b) <= 1e-6


@pytest.mark.parametrize('how', ['kill', 'hang'])
def test_a_failed_rank_stops_the_job(data, tmp_path, how):
    """Rank 1 is killed (SIGKILL) or stops answering at iteration 1: the job ends with an
    error within the collective timeout (set to 20 s here, env_cfg.dist_cfg.timeout), it does
    not hang."""
    config = with_hooks(tmp_path, DEMO_DET, 'fail',
                        f"custom_hooks = [dict(type='FailRankHook', how={how!r})]\n")
    out = dist_train(config, 2, '--work-dir', str(tmp_path / 'w'), '--no-validate',
                     *det_options(data, 'env_cfg.dist_cfg.timeout=20'), check=False,
                     timeout=240)
    log = out.stdout + out.stderr
    print(f'{how}: exit {out.returncode} after {out.seconds:.1f} s')
    assert out.returncode != 0
    assert f'rank 1: {how} at iteration 1' in log
    assert 'ChildFailedError' in log or 'failed' in log.lower(), log[-3000:]


def test_slurm_train_script_on_cpu(cls_data, tmp_path):
    """``tools/slurm_train.sh`` under a stand-in ``srun`` that starts the tasks on this machine
    with Slurm's variables (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST) and a
    stand-in ``scontrol``: the two tasks form a gloo group and train the same model."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    (bin_dir / 'srun').write_text('''#!/usr/bin/env bash
# stand-in srun: --ntasks=N then the command; every task gets Slurm's variables
N=1
while [[ "$1" == -* ]]; do
    case "$1" in --ntasks=*) N="${1#--ntasks=}";; -p) shift;; esac
    shift
done
echo "srun: $N tasks: $*" >&2
pids=()
for ((i = 0; i < N; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$N SLURM_LOCALID=$i SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
''')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    config = cls_config(tmp_path, cls_data, 'slurm')
    out = run(['bash', 'tools/slurm_train.sh', 'cpu', 'test', str(config),
               str(tmp_path / 'w'), '--cfg-options', 'train_dataloader.batch_size=1'],
              GPUS='2', GPUS_PER_NODE='0', CPUS_PER_TASK='1',
              PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', MASTER_PORT=str(free_port()))
    assert 'srun: 2 tasks' in out.stderr
    r0, r1 = records(tmp_path / 'w', 0), records(tmp_path / 'w', 1)
    assert len(r0) == 4 and r0 == r1
