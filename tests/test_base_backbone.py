"""The knobs every backbone shares (mmhiri.models.backbones.base)."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import tiny_backbone

NAMES = ['HIRIViT', 'ViTAEv2', 'ViTAE']


@pytest.mark.parametrize('name', NAMES)
def test_out_indices_negative_and_order(name):
    model = tiny_backbone(name, out_indices=(-1, 0)).eval()
    n = model.num_stages
    assert model.out_indices == (n - 1, 0)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.out_channels == \
        [model.stage_channels[n - 1], model.stage_channels[0]]
    assert model.out_strides == [model.stage_strides[n - 1], model.stage_strides[0]]
    for o, s in zip(outs, model.out_strides):
        assert o.shape[-2:] == (-(-64 // s), -(-64 // s))
    assert [f['num_chs'] for f in model.feature_info] == model.out_channels


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('bad', [(7, ), (-9, ), (0, 0), (), 'a'])
def test_out_indices_rejected(name, bad):
    with pytest.raises((ValueError, TypeError), match='out_indices'):
        tiny_backbone(name, out_indices=bad)


@pytest.mark.parametrize('name', NAMES)
def test_bad_input_has_one_clear_error(name):
    model = tiny_backbone(name).eval()
    with pytest.raises(ValueError, match=r'4-D tensor \(N, 3, H, W\).*\(3, 64, 64\)'):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r'expects 3 input channels.*\(1, 4, 64, 64\)'):
        model(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match='empty input'):
        model(torch.rand(0, 3, 64, 64))
    with pytest.raises(ValueError, match='empty input'):
        model(torch.rand(1, 3, 0, 64))
    with pytest.raises(TypeError, match='torch.Tensor'):
        model([[1.0]])
    with pytest.raises(TypeError, match='floating-point'):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize('name', NAMES)
def test_frozen_stages(name):
    model = tiny_backbone(name, frozen_stages=1)
    model.train()
    frozen = ([model.stem] if model.stem is not None else []) + list(model.stages[:2])
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in model.stages[2:]:
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    # still frozen after another .train(), and no gradient arrives
    model.train()
    out = model(torch.rand(2, 3, 64, 64))
    sum(o.float().mean() for o in out).backward()
    for module in frozen:
        assert all(p.grad is None for p in module.parameters())
    assert any(p.grad is not None for p in model.stages[-1].parameters())


@pytest.mark.parametrize('name', NAMES)
def test_frozen_stages_rejected(name):
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny_backbone(name, frozen_stages=9)


@pytest.mark.parametrize('name', NAMES)
def test_norm_eval(name):
    model = tiny_backbone(name, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bns))


@pytest.mark.parametrize('name', NAMES)
def test_with_cp_same_outputs_and_grads(name, monkeypatch):
    """In training mode (BN on batch statistics): checkpointing is really used, and outputs and
    gradients are those of the plain forward."""
    import mmhiri.models.layers.common as common
    calls = []
    real = common.cp.checkpoint

    def counting(fn, *args, **kwargs):
        if 'maybe_checkpoint' in fn.__qualname__:  # a block (light-layer recomputation aside)
            calls.append(1)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(common.cp, 'checkpoint', counting)
    torch.manual_seed(0)
    ref = tiny_backbone(name, out_indices=tuple(range(-2, 0)), drop_path_rate=0.)
    cp = tiny_backbone(name, out_indices=tuple(range(-2, 0)), drop_path_rate=0., with_cp=True)
    cp.load_state_dict(ref.state_dict())
    ref.train(), cp.train()
    x = torch.rand(2, 3, 61, 70)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1 = ref(x1)
    assert not calls
    out2 = cp(x2)
    assert len(calls) == sum(len(s.blocks) for s in cp.stages)
    for a, b in zip(out1, out2):
        torch.testing.assert_close(a, b)
    sum(o.square().mean() for o in out1).backward()
    sum(o.square().mean() for o in out2).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (n1, p1), (_, p2) in zip(ref.named_parameters(), cp.named_parameters()):
        assert (p1.grad is None) == (p2.grad is None), n1
        if p1.grad is not None:
            torch.testing.assert_close(p1.grad, p2.grad, msg=n1)
    # the recomputation in backward does not update BN running statistics a second time
    for (n1, b1), (_, b2) in zip(ref.named_buffers(), cp.named_buffers()):
        assert torch.equal(b1, b2), n1


@pytest.mark.parametrize('name', NAMES)
def test_frozen_bn_statistics_and_output_norms(name):
    model = tiny_backbone(name, frozen_stages=0, out_indices=(0, -1))
    model.train()
    frozen_bns = [m for mod in model._frozen_modules() for m in mod.modules()
                  if isinstance(m, _BatchNorm)]
    assert frozen_bns
    before = [m.running_mean.clone() for m in frozen_bns]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, frozen_bns))
    if name == 'HIRIViT':  # stage 0's output norm is frozen with it; the last one is not
        assert all(not p.requires_grad for p in model.out_norm0.parameters())
        assert all(p.requires_grad for p in model.out_norm4.parameters())


@pytest.mark.parametrize('name', NAMES)
def test_every_parameter_used_whatever_out_indices(name):
    """All stages run (as in mmdet's backbones), so DDP never meets unused parameters."""
    model = tiny_backbone(name, out_indices=(0, ), drop_path_rate=0.)
    model.train()
    model(torch.rand(2, 3, 64, 64))[0].mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None and
              not n.startswith('out_norm')]
    # the last stage's output only matters through its own stage: gradients reach stage 0 only
    assert all(not n.startswith('stages.0.') for n in unused)


@pytest.mark.parametrize('name', NAMES)
def test_bool_and_uneven_arch_rejected(name):
    with pytest.raises(ValueError, match='out_indices'):
        tiny_backbone(name, out_indices=(True, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny_backbone(name, frozen_stages=True)


def test_uneven_per_stage_lists_are_named():
    from conftest import TINY_V1, TINY_V2
    from mmhiri.models import ViTAE, ViTAEv2
    with pytest.raises(ValueError, match=r"need 4 items.*'nc_heads': \[1, 2\]"):
        ViTAEv2(dict(TINY_V2, nc_heads=[1, 2]))
    with pytest.raises(ValueError, match=r"need 3 items.*'depths'"):
        ViTAE(dict(TINY_V1, depths=[0, 2]))
    with pytest.raises(ValueError, match='strides must be 1, 2 or 4'):
        ViTAEv2(dict(TINY_V2, strides=[4, 3, 2, 2]))


def test_unknown_arch_is_named():
    from mmhiri.models import HIRIViT, ViTAEv2
    with pytest.raises(ValueError, match=r"unknown arch 'xl'"):
        HIRIViT('xl')
    with pytest.raises(ValueError, match=r"missing keys \['token_dims', 'depths'"):
        ViTAEv2(dict(embed_dims=[8]))


@pytest.mark.parametrize('name', NAMES)
def test_pretrained_init_cfg_with_prefix(name, tmp_path):
    """The stock ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` loads a whole-model
    checkpoint (e.g. an mmpretrain classifier) into the backbone."""
    torch.manual_seed(1)
    source = tiny_backbone(name)
    state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(2, 2)
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = tiny_backbone(name, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                              prefix='backbone.'))
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize('name', NAMES)
def test_default_init(name):
    """Seeded builds are identical; Linear weights get the truncated normal (std 0.02), biases
    zero, norms one."""
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(tiny_backbone(name))
        models[-1].init_weights()
    for (n, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        assert torch.equal(a, b), n
    linears = [m for m in models[0].modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - 0.02) < 0.004
    assert all(not m.bias.any() for m in linears if m.bias is not None)
    norms = [m for m in models[0].modules() if isinstance(m, (torch.nn.LayerNorm, _BatchNorm))]
    assert all(torch.all(m.weight == 1) and not m.bias.any() for m in norms)


@pytest.mark.parametrize('name', NAMES)
def test_pretrained_that_does_not_fit_is_refused_with_counts(name, tmp_path):
    """Another model's weights used to load 0 tensors with a warning and train from scratch."""
    other = tiny_backbone('ViTAEv2' if name == 'HIRIViT' else 'HIRIViT')
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, path)
    model = tiny_backbone(name, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    n = len(model.state_dict())
    with pytest.raises(ValueError, match=rf"'{path}' does not fit this backbone: 0 of {n} "
                       r'tensors match, \d+ missing .* \d+ unexpected'):
        model.init_weights()


def test_pretrained_whole_model_without_prefix_says_so(tmp_path):
    source = tiny_backbone('ViTAEv2')
    path = tmp_path / 'det.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in source.state_dict().items()}}, path)
    model = tiny_backbone('ViTAEv2', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"needs prefix='backbone.'"):
        model.init_weights()
    wrong = tiny_backbone('ViTAEv2', init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                    prefix='model.'))
    with pytest.raises(ValueError, match=r"no key starts with 'model.'"):
        wrong.init_weights()


def test_pretrained_shape_mismatch_is_named(tmp_path):
    from conftest import TINY_V2
    wider = dict(TINY_V2, token_dims=[8, 16, 32, 128])
    from mmhiri.models import ViTAEv2
    path = tmp_path / 'wider.pth'
    torch.save(ViTAEv2(wider).state_dict(), path)
    model = tiny_backbone('ViTAEv2', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'[1-9]\d* with another shape \[.stages\.3\.'):
        model.init_weights()


def test_pretrained_classifier_backbone_into_dense_backbone(tmp_path):
    """A classifier's HIRI-ViT has the last output norm only; the dense backbone's other output
    norms may be missing (they keep their initial values); every stage tensor loads."""
    torch.manual_seed(0)
    cls_backbone = tiny_backbone('HIRIViT', out_indices=(4, ))
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               cls_backbone.state_dict().items()}}, path)
    dense = tiny_backbone('HIRIViT', out_indices=(1, 2, 3, 4), init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    dense.init_weights()
    for k, v in cls_backbone.state_dict().items():
        assert torch.equal(dense.state_dict()[k], v), k
