"""The fast paths give the outputs of the plain ones: fused vs explicit attention, deploy mode
(BatchNorms folded), channels_last, torch.compile; fused attention keeps no attention matrix."""
import copy

import pytest
import torch
import torch.nn as nn

from conftest import tiny_backbone

NAMES = ['HIRIViT', 'ViTAEv2', 'ViTAE']
SIZES = [(64, 64), (67, 93), (33, 47)]


def randomise_bn(model, seed=0):
    """Non-trivial BN statistics and affines, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def built(name, **kwargs):
    torch.manual_seed(0)
    model = tiny_backbone(name, **kwargs)
    model.init_weights()
    return randomise_bn(model).eval()


def max_rel(a, b):
    return max(((p - q).abs().max() / p.abs().max()).item() for p, q in zip(a, b))


@pytest.mark.parametrize('name', NAMES)
def test_fused_attention_matches_explicit_outputs_and_grads(name):
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    fused = [m for m in model.modules() if hasattr(m, 'fused_attn') and m is not model]
    assert fused and all(m.fused_attn for m in fused)
    for hw in SIZES:
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            a = model(x)
            model.set_fused_attn(False)
            assert not any(m.fused_attn for m in fused)
            b = model(x)
            model.set_fused_attn(True)
        assert max_rel(a, b) < 1e-5, hw
    # gradients too (train mode, no stochastic depth)
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ), drop_path_rate=0.)
    model.train()
    x = torch.randn(1, 3, 67, 93)
    grads = []
    for enabled in (True, False):
        model.zero_grad()
        model.set_fused_attn(enabled)
        sum(o.square().mean() for o in model(x)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        assert torch.allclose(g, grads[1][n], rtol=1e-4, atol=1e-6), n


def test_fused_attn_constructor_flag():
    model = tiny_backbone('ViTAEv2', fused_attn=False)
    assert not model.fused_attn
    assert not any(m.fused_attn for m in model.modules() if hasattr(m, 'fused_attn'))


@pytest.mark.parametrize('name', NAMES)
def test_deploy_matches_eval_model(name):
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    # every BN is folded; HIRI-ViT's output BNs (after the stages) have nothing to fold into
    left = [n for n, m in deployed.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(n.startswith('out_norm') for n in left), left
    assert len(left) < sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for hw in SIZES:
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            outs = deployed(x)
            assert max_rel(model(x), outs) < 1e-5, hw
        # necks and heads get the standard layout (mmcv's RoIAlign reads NCHW memory)
        assert all(o.is_contiguous() for o in outs)


@pytest.mark.slow
@pytest.mark.parametrize('name,arch', [('HIRIViT', a) for a in ('s', 'b', 'l')]
                         + [('ViTAEv2', a) for a in ('s', '48m', 'b')]
                         + [('ViTAE', a) for a in ('t', '6m', '13m', 's', 'b')])
def test_deploy_matches_eval_model_real_sizes(name, arch):
    import mmhiri.models as models
    torch.manual_seed(0)
    model = randomise_bn(getattr(models, name)(arch)).eval()
    x = torch.randn(1, 3, 65, 77)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        assert max_rel(ref, model(x)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize('name', ['HIRIViT', 'ViTAEv2'])
def test_optimized_matches_explicit_path_at_benchmark_size(name):
    """The setting the benchmark times: real widths at 448x448, folded and routed by
    measurement on this machine (rows of 49, 196 and 784 tokens); outputs within 1e-4 of
    the explicit path (the implementation before the fast paths)."""
    import mmhiri.models as models
    from mmhiri.runtime import optimize, report
    torch.manual_seed(0)
    model = randomise_bn(getattr(models, name)('s')).eval()
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        model.set_fused_attn(False)
        ref = model(x)
        model.set_fused_attn(True)
        optimize(model, example=x)
        out = model(x)
    assert sum(sum(v.values()) for k, v in report(model).items() if 'Attention' in k) > 0
    assert max_rel(ref, out) < 1e-4


@pytest.mark.parametrize('name', NAMES)
def test_deploy_refuses_training(name):
    model = built(name)
    with pytest.raises(RuntimeError, match=r'call \.eval\(\) first'):
        model.train().switch_to_deploy()
    model.eval().switch_to_deploy()
    assert model.deploy and all(m.deploy for m in model.modules() if hasattr(m, 'deploy'))
    with pytest.raises(RuntimeError, match='deploy mode.*cannot train'):
        model.train()
    model.eval()  # eval stays allowed
    model.switch_to_deploy()  # idempotent
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize('name', NAMES)
def test_channels_last_model_and_input(name):
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for hw in SIZES:
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            ref = model(x)
            assert max_rel(ref, cl(x.contiguous(memory_format=torch.channels_last))) < 1e-5
            assert max_rel(ref, model(x.contiguous(memory_format=torch.channels_last))) < 1e-5


@pytest.mark.parametrize('name', NAMES)
def test_no_attention_matrix_kept_for_backward(name):
    """Fused attention saves no L x L tensor for backward; the explicit path does (the test
    would catch a silent fallback)."""
    model = tiny_backbone(name).train()
    x = torch.rand(2, 3, 128, 96)  # no feature map is square; attention matrices are

    def largest_square(fused):
        model.set_fused_attn(fused)
        shapes = []

        def pack(t):
            shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        weights = {tuple(p.shape) for p in model.parameters()}
        return max((s[-1] for s in shapes
                    if len(s) >= 3 and s[-1] == s[-2] > 3 and s not in weights), default=0)

    assert largest_square(False) >= 12  # >= 4x3 tokens in every full-attention stage
    assert largest_square(True) == 0


@pytest.mark.parametrize('name', NAMES)
def test_compile_has_no_graph_break(name):
    import torch._dynamo
    model = built(name)
    for hw in [(64, 64), (67, 93)]:
        torch._dynamo.reset()
        explain = torch._dynamo.explain(model)(torch.rand(1, 3, *hw))
        assert explain.graph_break_count == 0, (hw, explain.break_reasons)
        assert explain.graph_count == 1


@pytest.mark.slow
def test_compiled_deploy_model_matches_eager():
    import torch._dynamo
    model = built('HIRIViT', out_indices=None)
    model.switch_to_deploy()
    torch._dynamo.reset()
    compiled = torch.compile(model)  # the second size recompiles with dynamic shapes
    for hw in [(64, 64), (67, 93)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            assert max_rel(model(x), compiled(x)) < 1e-5
    static = torch.compile(model, dynamic=False)
    x = torch.randn(1, 3, 61, 45)
    with torch.no_grad():
        assert max_rel(model(x), static(x)) < 1e-5


def test_input_dtype_mismatch_is_named():
    model = tiny_backbone('HIRIViT').eval()
    with pytest.raises(TypeError, match=r'torch.float32 parameters but got a torch.float64 input'):
        model(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert outs[0].dtype == torch.bfloat16


@pytest.mark.parametrize('name', NAMES)
def test_stock_flop_analyzer_counts_fused_attention(name):
    """mmengine's own FlopAnalyzer (what mmdet's get_flops.py uses) traces the model: while
    traced, attention runs the explicit product, so the stock count equals the explicit
    path's and includes the two attention matrix products."""
    from mmengine.analysis import FlopAnalyzer
    model = tiny_backbone(name).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        fused = FlopAnalyzer(model, x).unsupported_ops_warnings(False).by_operator()
        model.set_fused_attn(False)
        explicit = FlopAnalyzer(model, x).unsupported_ops_warnings(False).by_operator()
    assert fused == explicit and fused.get('matmul', 0) > 0
    assert 'scaled_dot_product_attention' not in fused


@pytest.mark.parametrize('momentum', [0.1, None])
def test_bn_act_keeps_less_and_matches_stock(momentum):
    from mmhiri.models.layers.common import bn_act
    torch.manual_seed(0)
    bn, act = nn.BatchNorm2d(8, momentum=momentum), nn.GELU()
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    ref_bn = copy.deepcopy(bn)
    x = torch.randn(2, 8, 9, 11, requires_grad=True)
    xr = x.detach().clone().requires_grad_()

    def saved(fn):
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        return out, sum(s for s in sizes if s >= x.numel())

    for _ in range(2):  # twice: the momentum=None running average counts batches
        y, kept = saved(lambda: bn_act(bn, act, x))
        yr, kept_ref = saved(lambda: act(ref_bn(xr)))
    assert kept < kept_ref
    assert torch.equal(y, yr)
    g = torch.randn_like(y)
    y.backward(g)
    yr.backward(g)
    assert torch.allclose(x.grad, xr.grad, atol=1e-6)
    assert torch.allclose(bn.weight.grad, ref_bn.weight.grad, atol=1e-5)
    assert torch.allclose(bn.bias.grad, ref_bn.bias.grad, atol=1e-5)
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        assert torch.equal(getattr(bn, name), getattr(ref_bn, name)), name


@pytest.mark.parametrize('name', NAMES)
def test_memory_efficient_training_matches_stock(name):
    """Recomputing the light layers changes nothing but memory: outputs, gradients and BN
    running statistics equal those of stock autograd."""
    torch.manual_seed(0)
    lean = tiny_backbone(name, out_indices=None if name != 'ViTAE' else (-1, ),
                         drop_path_rate=0.).train()
    stock = copy.deepcopy(lean)
    stock.set_memory_efficient(False)
    assert lean.memory_efficient and not stock.memory_efficient
    x = torch.randn(2, 3, 67, 93)
    outs = []
    for model in (lean, stock):
        out = model(x)
        sum(o.square().mean() for o in out).backward()
        outs.append(out)
    assert max_rel(outs[0], outs[1]) < 1e-6
    for (n, p), (_, q) in zip(lean.named_parameters(), stock.named_parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), n
    for (n, p), (_, q) in zip(lean.named_buffers(), stock.named_buffers()):
        assert torch.equal(p, q), n


def test_maps_feed_mmcv_roi_align_in_every_mode():
    """mmcv's RoIAlign on CPU reads its input's memory as NCHW whatever the strides: the token
    stages' transposed views gave wrong values, and a deployed Mask R-CNN (channels-last maps)
    scored 0.001 bbox mAP. The backbones hand on contiguous NCHW maps."""
    from mmcv.ops import roi_align
    from mmhiri.runtime import optimize
    model = built('HIRIViT', out_indices=None)
    deployed = optimize(copy.deepcopy(model), layout='channels_last')
    x = torch.randn(1, 3, 96, 128)
    rois = torch.tensor([[0., 4., 6., 60., 50.], [0., 30., 10., 120., 90.]])
    with torch.no_grad():
        ref = [roi_align(m.contiguous(), rois, (7, 7), 1. / s, 2, 'avg', True)
               for m, s in zip(model(x), model.out_strides)]
        for outs in (model(x), deployed(x)):
            assert all(m.is_contiguous() for m in outs)
            for m, s, want in zip(outs, model.out_strides, ref):
                got = roi_align(m, rois, (7, 7), 1. / s, 2, 'avg', True)
                assert (got - want).abs().max() <= 1e-5 * want.abs().max(), s
