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
def test_deploy_matches_explicit_path_at_benchmark_size(name, monkeypatch):
    """The setting the benchmark times: real widths at 448x448, where deploy mode's attention
    runs through oneDNN (rows of 196 and 784 tokens) and its windows written out; outputs
    within 1e-4 of the explicit path (the implementation before the fast paths)."""
    import mmhiri.models as models
    import mmhiri.models.layers.attention as attention
    seen = set()
    real_product = attention.MultiheadAttention.product
    monkeypatch.setattr(attention.MultiheadAttention, 'product',
                        lambda self, qkv: seen.add(real_product(self, qkv)) or
                        real_product(self, qkv))
    torch.manual_seed(0)
    model = randomise_bn(getattr(models, name)('s')).eval()
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        model.set_fused_attn(False)
        ref = model(x)
        model.set_fused_attn(True)
        model.switch_to_deploy()
        seen.clear()
        out = model(x)
    assert 'onednn' in seen and (name != 'ViTAEv2' or 'explicit' in seen), seen
    assert max_rel(ref, out) < 1e-4


@pytest.mark.parametrize('name', NAMES)
def test_deploy_refuses_training(name):
    model = built(name)
    with pytest.raises(RuntimeError, match=r'call \.eval\(\) first'):
        model.train().switch_to_deploy()
    model.eval().switch_to_deploy()
    assert model.deploy
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


def test_fused_attention_flops_equal_explicit():
    from mmhiri.utils.flops import flop_analyzer
    model = tiny_backbone('ViTAEv2').eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        fused = flop_analyzer(model, x).by_operator()
        model.set_fused_attn(False)
        explicit = flop_analyzer(model, x).by_operator()
    assert fused['scaled_dot_product_attention'] == explicit['matmul'] > 0
    assert sum(fused.values()) == sum(explicit.values())


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


@pytest.mark.parametrize('b,n,heads,d,chunk_bytes', [
    (1, 100, 4, 16, 64 << 20),  # one block
    (2, 77, 3, 8, 4096),  # odd length, batch > 1, uneven query blocks
    (3, 65, 1, 32, 1),  # one query per block
])
def test_onednn_attention_matches_fused(b, n, heads, d, chunk_bytes, monkeypatch):
    import torch.nn.functional as F
    import mmhiri.models.layers.attention as attention
    monkeypatch.setattr(attention, 'ONEDNN_ATTN_CHUNK_BYTES', chunk_bytes)
    torch.manual_seed(0)
    qkv = torch.randn(b, n, 3, heads, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    scale = 0.3
    want = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(
        b, n, heads * d)
    got = attention.onednn_attention(qkv, scale)
    assert got.shape == want.shape
    assert (got - want).abs().max() / want.abs().max() < 1e-5


@pytest.mark.parametrize('cin,cout,groups,k', [(64, 16, 4, 3), (48, 24, 3, 5), (32, 8, 8, 3)])
@pytest.mark.parametrize('channels_last', [False, True])
def test_deploy_grouped_conv_equals_the_conv(cin, cout, groups, k, channels_last):
    from mmhiri.models.layers.fusion import DeployGroupedConv
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups).eval()
    deployed = DeployGroupedConv.from_conv(conv)
    assert deployed.weight is conv.weight and deployed.bias is conv.bias
    assert set(deployed.state_dict()) == set(conv.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for hw in [(17, 23), (8, 8)]:
        x = torch.randn(2, cin, *hw).contiguous(memory_format=fmt)
        with torch.no_grad():
            want, got = conv(x), deployed(x)
        assert (got - want).abs().max() / want.abs().max() < 1e-5, hw
    # gradients to the weights go through the convolution itself
    x = torch.randn(1, cin, 9, 9)
    deployed(x).sum().backward()
    assert conv.weight.grad is not None
    # new weights (load_state_dict copies in place): the transposed copy follows
    state = {n: torch.randn_like(t) for n, t in conv.state_dict().items()}
    with torch.no_grad():
        deployed(x)
        deployed.load_state_dict(state)
        want = torch.nn.functional.conv2d(x, state['weight'], state['bias'], 1, k // 2, 1,
                                          groups)
        assert (deployed(x) - want).abs().max() <= 1e-5 * want.abs().max()
        assert (copy.deepcopy(deployed)(x) - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize('name', NAMES)
def test_deployed_model_can_be_differentiated(name):
    """oneDNN's pre-packed and fused ops have no backward: a deployed model whose input needs
    gradients (saliency maps) runs the standard ops and gives the eval model's gradients."""
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    for p in list(model.parameters()) + list(deployed.parameters()):
        p.requires_grad_(False)
    grads = []
    for m in (model, deployed):
        x = torch.randn(1, 3, 67, 93, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        sum(o.square().mean() for o in m(x)).backward()
        grads.append(x.grad)
    assert (grads[0] - grads[1]).abs().max() <= 1e-4 * grads[0].abs().max()


def test_deploy_grouped_conv_applies_only_where_it_is_exact():
    from mmhiri.models.layers.fusion import DeployGroupedConv
    applies = DeployGroupedConv.applies_to
    assert applies(nn.Conv2d(64, 16, 3, 1, 1, groups=4))
    assert not applies(nn.Conv2d(16, 64, 3, 1, 1, groups=4))  # widening
    assert not applies(nn.Conv2d(64, 16, 3, 1, 1))  # dense
    assert not applies(nn.Conv2d(64, 16, 3, 2, 1, groups=4))  # strided
    assert not applies(nn.Conv2d(64, 16, 3, 1, 0, groups=4))  # not 'same'
    assert not applies(nn.Conv2d(64, 16, 3, 1, 2, dilation=2, groups=4))
    with pytest.raises(ValueError, match='reduces channels'):
        DeployGroupedConv.from_conv(nn.Conv2d(16, 64, 3, 1, 1, groups=4))


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('threshold', [0, 10 ** 9])
def test_deploy_attention_products_match_eval_model(name, threshold, monkeypatch):
    """Deploy mode's attention on CPU: every row through the oneDNN product (threshold 0,
    small query blocks) or every row through the explicit one; outputs equal the eval model's."""
    import mmhiri.models.layers.attention as attention
    monkeypatch.setattr(attention, 'EXPLICIT_BELOW_TOKENS', threshold)
    monkeypatch.setattr(attention, 'ONEDNN_ATTN_CHUNK_BYTES', 4096)
    model = built(name, out_indices=None if name != 'ViTAE' else (-1, ))
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    seen = set()
    real_product = attention.MultiheadAttention.product

    def spy(self, qkv):
        out = real_product(self, qkv)
        if self.deploy:
            seen.add(out)
        return out

    monkeypatch.setattr(attention.MultiheadAttention, 'product', spy)
    for hw in SIZES:
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            assert max_rel(model(x), deployed(x)) < 1e-5, hw
    assert seen == {'onednn' if threshold == 0 else 'explicit'}


@pytest.mark.parametrize('cin,cout,k,stride,groups', [(8, 16, 3, 1, 1), (16, 16, 3, 2, 16),
                                                      (12, 24, 1, 1, 1), (6, 9, 7, 4, 3)])
def test_deploy_conv_equals_the_conv_and_follows_its_weights(cin, cout, k, stride, groups):
    from mmhiri.models.layers.fusion import DeployConv2d
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups).eval()
    deployed = DeployConv2d.from_conv(conv)
    assert deployed.weight is conv.weight and set(deployed.state_dict()) == set(conv.state_dict())
    with torch.no_grad():
        for fmt in (torch.channels_last, torch.contiguous_format):
            for hw in [(17, 23), (8, 8), (17, 23)]:  # a new size re-packs, the old one again
                x = torch.randn(2, cin, *hw).contiguous(memory_format=fmt)
                want, got = conv(x), deployed(x)
                assert got.shape == want.shape
                assert (got - want).abs().max() <= 1e-5 * want.abs().max(), (fmt, hw)
        # new weights (load_state_dict copies in place): the packed copy follows
        state = {n: torch.randn_like(t) for n, t in conv.state_dict().items()}
        deployed.load_state_dict(state)
        x = torch.randn(1, cin, 17, 23).contiguous(memory_format=torch.channels_last)
        want = torch.nn.functional.conv2d(x, state['weight'], state['bias'], stride, k // 2, 1,
                                          groups)
        assert (deployed(x) - want).abs().max() <= 1e-5 * want.abs().max()
        # copies and pickles leave the packed weights behind and still compute the conv
        import io
        clone = copy.deepcopy(deployed)
        buf = io.BytesIO()
        torch.save(deployed, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        for other in (clone, loaded):
            assert (other(x) - want).abs().max() <= 1e-5 * want.abs().max()
    # gradients to the weights go through the convolution itself
    deployed(torch.randn(1, cin, 9, 9)).sum().backward()
    assert conv.weight.grad is not None


def test_maps_feed_mmcv_roi_align_in_every_mode():
    """mmcv's RoIAlign on CPU reads its input's memory as NCHW whatever the strides: the token
    stages' transposed views gave wrong values, and a deployed Mask R-CNN (channels-last maps)
    scored 0.001 bbox mAP. The backbones hand on contiguous NCHW maps."""
    from mmcv.ops import roi_align
    model = built('HIRIViT', out_indices=None)
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
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


@pytest.mark.parametrize('gelu', [False, True])
def test_deploy_linear_equals_the_linear_and_follows_its_weights(gelu):
    from mmhiri.models.layers.fusion import DeployLinear
    torch.manual_seed(0)
    linear = nn.Linear(24, 40)
    deployed = DeployLinear.from_linear(linear, gelu=gelu)
    assert set(deployed.state_dict()) == set(linear.state_dict())

    def want(x, w=linear.weight, b=linear.bias):
        out = torch.nn.functional.linear(x, w, b)
        return torch.nn.functional.gelu(out) if gelu else out

    with torch.no_grad():
        for shape in [(2, 17, 24), (5, 24), (3, 4, 6, 24), (2, 17, 24)]:
            x = torch.randn(*shape)
            assert (deployed(x) - want(x)).abs().max() <= 1e-5 * want(x).abs().max(), shape
        x = torch.randn(8, 24).t().contiguous().t()  # strided rows
        assert (deployed(x) - want(x)).abs().max() <= 1e-5 * want(x).abs().max()
        state = {n: torch.randn_like(t) for n, t in linear.state_dict().items()}
        deployed.load_state_dict(state)
        x = torch.randn(2, 17, 24)
        ref = want(x, state['weight'], state['bias'])
        assert (deployed(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
        assert (copy.deepcopy(deployed)(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
    x.requires_grad_(True)  # gradients: the standard op
    deployed(x).sum().backward()
    assert x.grad is not None and linear.weight.grad is not None
