"""Mixed precision: every path of ours under bf16 autocast on CPU (outputs and gradients
against fp32, no dtype errors), the --amp optim wrappers, and (marked ``cuda``, skipped
without a GPU) fp16 with loss scaling, deploy mode and torch.compile on CUDA."""
import copy
import json
import math

import pytest
import torch
import torch.nn as nn

from conftest import ROOT, run_script, tiny_backbone
from test_speed_paths import NAMES, built

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)


def cosine(a, b):
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def projection_loss(outs, seed=0):
    """A fixed random projection of the outputs: unlike their mean square (about 1 behind
    HIRI-ViT's train-mode output BatchNorms, whatever the weights), its gradients carry
    signal into every weight."""
    g = torch.Generator().manual_seed(seed)
    return sum((o.float() * torch.randn(o.shape, generator=g)).mean() for o in outs)


def step(model, x, autocast):
    """Forward + backward; (outputs, {name: grad})."""
    model.zero_grad()
    with torch.autocast(**BF16, enabled=autocast):
        outs = model(x)
        loss = projection_loss(outs)
    loss.backward()
    return [o.detach().float() for o in outs], {
        n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare(model, x, out_tol=0.99, grad_tol=0.97):
    ref_out, ref_grad = step(model, x, False)
    out, grad = step(model, x, True)
    for a, b in zip(out, ref_out):
        assert torch.isfinite(a).all()
        assert cosine(a, b) > out_tol and rel(a, b) < 0.1, (cosine(a, b), rel(a, b))
    assert ref_grad.keys() == grad.keys()
    names = sorted(ref_grad)
    assert cosine(torch.cat([grad[n].flatten() for n in names]),
                  torch.cat([ref_grad[n].flatten() for n in names])) > 0.99
    # per weight tensor; gradients that are zero in exact arithmetic (a bias in front of a
    # train-mode BatchNorm: its mean subtraction removes any constant) are rounding noise
    norms = torch.tensor([float(ref_grad[n].norm()) for n in names])
    floor = 1e-3 * float(norms.median())
    worst = min((cosine(grad[n], ref_grad[n]), n) for n, nrm in zip(names, norms)
                if ref_grad[n].dim() >= 2 and nrm > floor)
    assert worst[0] > grad_tol, worst
    for g in grad.values():
        assert torch.isfinite(g).all()


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('variant', ['default', 'explicit', 'stock-autograd', 'with_cp'])
def test_bf16_autocast_training_step_matches_fp32(name, variant):
    """Fused and explicit attention (full, window, and ViTAE's Performer cells), the
    recomputation of BN + activation and of the CFFN (memory_efficient), and with_cp."""
    torch.manual_seed(0)
    kwargs = dict(out_indices=None if name != 'ViTAE' else (-1, ), drop_path_rate=0.)
    if variant == 'with_cp':
        kwargs['with_cp'] = True
    model = tiny_backbone(name, **kwargs).train()
    model.init_weights()
    if variant == 'explicit':
        model.set_fused_attn(False)
    if variant == 'stock-autograd':
        model.set_memory_efficient(False)
    x = torch.randn(2, 3, 67, 93)
    compare(model, x)


def test_performer_kernel_runs_in_fp32_under_autocast():
    """ViTAE's reduction cells exponentiate a difference of large terms and divide by sums
    that reach 1e-6: under autocast that part runs in fp32, so it matches fp32 closely (a
    bf16 kernel was off by far more)."""
    from mmhiri.models.layers.attention import PerformerAttention
    torch.manual_seed(0)
    attn = PerformerAttention(32, 32)
    x = torch.randn(2, 50, 32)
    with torch.no_grad():
        want = attn(x)
        with torch.autocast(**BF16):
            got = attn(x)
            k, q, v = attn.kqv(x).split(32, dim=-1)
            bf16_kernel = v + attn.proj(attn.kernel_attention(k, q, v))
    assert rel(got, want) < rel(bf16_kernel.float(), want)
    assert rel(got, want) < 2e-2


def test_dist_sync_batchnorm_keeps_fp32_statistics_under_autocast(monkeypatch):
    """DistSyncBatchNorm's cross-rank statistics in fp32 under autocast: two identical ranks
    (an all-reduce that doubles) give the one-process BatchNorm of the same input."""
    import torch.distributed.nn.functional as dist_fn

    import mmhiri.utils.distributed as distributed
    monkeypatch.setattr(distributed, '_world', lambda: 2)
    monkeypatch.setattr(dist_fn, 'all_reduce', lambda t, *a, **k: t * 2)
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8)
    sync = distributed.DistSyncBatchNorm.convert(copy.deepcopy(bn))
    assert type(sync) is distributed.DistSyncBatchNorm
    x = (torch.randn(2, 8, 9, 11) * 30 + 100).bfloat16()  # large mean: bf16 sums lose it
    want = bn(torch.cat([x, x]).float())[:2]  # two ranks with the same images
    got = sync(x)
    assert got.dtype == torch.bfloat16
    assert rel(got.float(), want) < 1e-2
    assert torch.allclose(sync.running_mean, bn.running_mean, rtol=1e-4)
    assert torch.allclose(sync.running_var, bn.running_var, rtol=1e-3)


@pytest.mark.parametrize('name', NAMES)
def test_deploy_and_optimized_models_under_autocast(name):
    from mmhiri.runtime import optimize
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        ref = model(x)
        folded = copy.deepcopy(model)
        folded.switch_to_deploy()
        routed = optimize(copy.deepcopy(model), example=x)
        for m in (model, folded, routed):
            with torch.autocast(**BF16):
                outs = m(x)
            for a, b in zip(outs, ref):
                assert cosine(a.float(), b) > 0.99 and rel(a.float(), b) < 0.1


def test_ema_distillation_step_under_cpu_autocast():
    """One EMA-distillation training step with the --amp optim wrapper: finite loss close to
    the fp32 step's, the teacher updated from the fp32 parameters."""
    pytest.importorskip('mmpretrain')
    from mmengine.optim import OptimWrapper
    from test_ema_distill import build, data_batch

    from mmhiri.utils.amp import CPUAutocastOptimWrapper
    losses = {}
    for amp in (False, True):
        torch.manual_seed(0)
        import numpy as np
        np.random.seed(0)
        model = build(distill=dict(alpha=.5, momentum=.3))
        model.init_weights()
        model.train()
        optim = torch.optim.SGD(model.parameters(), lr=1e-3)
        wrapper = CPUAutocastOptimWrapper(optimizer=optim) if amp else OptimWrapper(optim)
        torch.manual_seed(1)
        np.random.seed(1)
        out = model.train_step(data_batch(seed=0), wrapper)
        losses[amp] = float(sum(v for k, v in out.items() if 'loss' in k))
        teacher = [t for k, t in model.state_dict().items() if k.startswith('teacher.')]
        assert all(t.dtype in (torch.float32, torch.int64) for t in teacher)
    assert math.isfinite(losses[True])
    assert abs(losses[True] - losses[False]) < 0.05 * abs(losses[False])


def test_amp_optim_wrapper_configs():
    from mmhiri.utils.amp import amp_optim_wrapper
    base = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1), clip_grad=None)
    assert amp_optim_wrapper(base, None, cuda=True) == dict(
        type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic',
        optimizer=dict(type='SGD', lr=0.1), clip_grad=None)
    assert amp_optim_wrapper(base, 'bf16', cuda=True)['dtype'] == 'bfloat16'
    cpu = amp_optim_wrapper(base, None, cuda=False)
    assert cpu['type'] == 'CPUAutocastOptimWrapper' and cpu['dtype'] == 'bfloat16'
    assert 'loss_scale' not in cpu
    with pytest.raises(ValueError, match='--amp on CPU trains in bf16'):
        amp_optim_wrapper(base, 'fp16', cuda=False)
    with pytest.raises(ValueError, match="optim_wrapper type 'DeepSpeedOptimWrapper'"):
        amp_optim_wrapper(dict(type='DeepSpeedOptimWrapper'), None, cuda=False)


def test_cpu_autocast_optim_wrapper_step_and_state():
    from mmhiri.utils.amp import CPUAutocastOptimWrapper
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 1))
    wrapper = CPUAutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        y = model(torch.randn(4, 8))
        assert y.dtype == torch.bfloat16
    before = model[0].weight.detach().clone()
    wrapper.update_params(y.float().square().mean())
    assert model[0].weight.dtype == torch.float32 and not torch.equal(before, model[0].weight)
    assert set(wrapper.state_dict()) == {'state', 'param_groups'}  # resumes with or without
    with pytest.raises(ValueError, match='dtype must be bfloat16 on CPU'):
        CPUAutocastOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(
            model.parameters(), lr=0.1))


def losses_from(work_dir):
    import glob
    logs = glob.glob(f'{work_dir}/*/vis_data/scalars.json')
    assert logs, work_dir
    rows = [json.loads(line) for line in open(logs[0])]
    return [r['loss'] for r in rows if 'loss' in r]


@pytest.mark.slow
def test_demo_trains_under_amp_on_cpu_close_to_fp32(tmp_path):
    """tools/train.py --amp on the demo config: bf16 autocast on CPU (no GPU needed), the
    logged loss curve close to the fp32 run's."""
    from mmhiri.datasets.synthetic import main as make_data
    make_data([str(tmp_path / 'data'), '--num-train', '8', '--num-val', '2', '--only',
               'instances'])
    curves = {}
    for amp in (False, True):
        work = tmp_path / ('amp' if amp else 'fp32')
        args = ['tools/train.py', 'configs/demo/mask_rcnn_hiri_demo.py', '--work-dir', str(work),
                '--no-validate', '--cfg-options',
                f'train_dataloader.dataset.data_root={tmp_path}/data/instances/',
                'train_cfg.max_epochs=3', 'default_hooks.logger.interval=1',
                'randomness.seed=0', 'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False']
        out = run_script(*(args + (['--amp'] if amp else [])))
        if amp:
            assert 'CPUAutocastOptimWrapper' in out.stdout + out.stderr
        curves[amp] = losses_from(work)
    assert len(curves[True]) == len(curves[False]) >= 6
    assert all(math.isfinite(v) for v in curves[True])
    for a, b in zip(curves[True], curves[False]):
        assert abs(a - b) <= 0.1 * abs(b) + 0.05, (curves[True], curves[False])


cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize('name', NAMES)
def test_cuda_fp16_amp_with_loss_scaling(name):
    """mmengine's AmpOptimWrapper (fp16, dynamic loss scale) trains our backbones on CUDA."""
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = tiny_backbone(name, out_indices=None if name != 'ViTAE' else (-1, )).cuda().train()
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=1e-3),
                              loss_scale='dynamic')
    x = torch.randn(2, 3, 67, 93, device='cuda')
    for _ in range(3):
        with wrapper.optim_context(model):
            loss = sum(o.float().square().mean() for o in model(x))
        wrapper.update_params(loss)
        assert math.isfinite(float(loss))
    assert wrapper.loss_scaler.get_scale() > 0


@cuda
@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_optimized_and_compiled_match_cpu(name, dtype):
    """Deploy mode on CUDA (BNs folded, attention route and layout chosen by measurement, no
    CPU-only route) and torch.compile of it, under autocast, against CPU fp32."""
    from mmhiri.runtime import optimize, report
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        ref = model(x)
        gpu = optimize(copy.deepcopy(model).cuda(), example=x.cuda())
        assert 'RoutedLinear' not in report(gpu) and 'RoutedConv2d' not in report(gpu)
        compiled = torch.compile(gpu)
        for m in (gpu, compiled):
            with torch.autocast('cuda', dtype=dtype):
                outs = m(x.cuda())
            for a, b in zip(outs, ref):
                assert cosine(a.float().cpu(), b) > 0.99


def test_predictions_reach_the_metrics_in_fp32():
    """tools/test.py --amp on CPU: bf16 predictions become fp32 before the metrics convert
    them to numpy (labels and other non-bf16 fields untouched)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from mmhiri.utils.amp import to_fp32
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.rand(3, 4, dtype=torch.bfloat16),
        scores=torch.rand(3, dtype=torch.bfloat16), labels=torch.tensor([0, 2, 1]))
    out = to_fp32([sample])
    inst = out[0].pred_instances
    assert inst.bboxes.dtype == inst.scores.dtype == torch.float32
    assert inst.labels.dtype == torch.int64
    assert inst.bboxes.numpy().shape == (3, 4)
