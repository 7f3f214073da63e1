"""Layer-wise learning-rate decay: get_layer_depth in mmpretrain's contract on every family,
and mmpretrain's LearningRateDecayOptimWrapperConstructor on our fine-tuning config."""
import pytest
import torch

from conftest import ROOT, tiny_backbone

VIT_STYLE = dict(patch_size=16, dim=32, depth=3, num_heads=2, nc_groups=8, mlp_ratio=2.)


def forward_order(model, x):
    """Each parameter's position in the forward pass: the call index of its owning module."""
    order, first = [], {}

    def hook(module, args):
        if id(module) not in first:
            first[id(module)] = len(order)
            order.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    owner = {}
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            owner[id(p)] = first.get(id(m))
    return {name: owner[id(p)] for name, p in model.named_parameters()}


def backbones():
    from mmhiri.models import ViTAE
    yield 'HIRIViT', tiny_backbone('HIRIViT', out_indices=(0, 1, 2, 3, 4))
    yield 'ViTAEv2', tiny_backbone('ViTAEv2')
    yield 'ViTAE', tiny_backbone('ViTAE', out_indices=(0, 1, 2), out_type='avg_featmap')
    yield 'ViTAE-vit', ViTAE(VIT_STYLE, img_size=64, out_type='avg_featmap')


@pytest.mark.parametrize('name,model', list(backbones()), ids=lambda v: v
                         if isinstance(v, str) else '')
def test_every_parameter_has_a_depth_that_never_decreases(name, model):
    model.eval()
    order = forward_order(model, torch.rand(1, 3, 64, 64))
    depths = {n: model.get_layer_depth('backbone.' + n, 'backbone.') for n in order}
    num = {d[1] for d in depths.values()}
    assert len(num) == 1
    num = num.pop()
    blocks = sum(len(getattr(s, 'blocks')) for s in model.stages)
    assert num >= blocks + 2  # the first layer, every block, the head
    ranked = sorted(order, key=lambda n: (order[n], n))
    seen = [depths[n][0] for n in ranked]
    assert seen == sorted(seen), [(n, depths[n][0]) for n in ranked]
    assert seen[0] == 0 and max(seen) == num - 2  # the head alone at num - 1
    assert set(seen) == set(range(num - 1))  # no layer id skipped
    # names outside the backbone (neck, head) are the last layer
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (num - 1, num)
    with pytest.raises(ValueError, match='is not a parameter of the backbone'):
        model.get_layer_depth('backbone.nonexistent.weight', 'backbone.')


def test_decay_constructor_on_the_finetune_config():
    """The fine-tuning config's optimizer: learning rates grow with depth, each block its
    own rate, the head the base rate."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from mmhiri.apis import build_in_scope, load_config
    cfg = load_config(f'{ROOT}/configs/imagenet/vitae_b_224_finetune.py', cfg_options={
        'model.backbone.img_size': 64, 'model.backbone.init_cfg': None,
        'model.head.in_channels': 32})
    cfg.model.backbone.arch = VIT_STYLE  # the real ViTAE-B at 32 channels, 3 cells
    init_default_scope('mmpretrain')
    model = build_in_scope(cfg, cfg.model)
    ow_cfg = dict(cfg.optim_wrapper)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=ow_cfg.pop('constructor'), optim_wrapper_cfg=ow_cfg,
        paramwise_cfg=ow_cfg.pop('paramwise_cfg')))
    optim = constructor(model)
    base_lr, decay = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    lr_of = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            lr_of[names[id(p)]] = group['lr']
    assert set(lr_of) == set(names.values())
    num = model.backbone.get_layer_depth('backbone.stages.0.reduction.proj.weight',
                                         'backbone.')[1]
    assert lr_of['head.fc.weight'] == pytest.approx(base_lr)
    assert lr_of['backbone.stages.0.reduction.proj.weight'] == \
        pytest.approx(base_lr * decay ** (num - 1))
    cells = [lr_of[f'backbone.stages.0.blocks.{j}.ffn.fc1.weight'] for j in range(3)]
    assert cells == sorted(cells) and len(set(cells)) == 3
    # no weight decay on the norms, biases, class token and position table
    wd_of = {names[id(p)]: g['weight_decay'] for g in optim.optimizer.param_groups
             for p in g['params']}
    for n in ('backbone.stages.0.reduction.cls_token', 'backbone.stages.0.reduction.pos_embed',
              'backbone.avg_norm.weight', 'backbone.stages.0.blocks.0.norm1.weight',
              'head.fc.bias'):
        assert wd_of[n] == 0, n
    assert wd_of['backbone.stages.0.blocks.0.ffn.fc1.weight'] > 0
