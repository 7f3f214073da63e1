"""mmpretrain classification: our configs follow the papers' recipes, build and run; converted
official weights give the official logits through mmpretrain's ImageClassifier."""
import glob
import json
import os

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'imagenet', '*.py')))
TABLE2 = {'s': 34.8, 'b': 54.4, 'l': 94.4}  # HIRI-ViT classifier params (M)
TABLE1_V2 = {'s': 19.3, '48m': 48.7, 'b': 89.7}  # ViTAEv2 (M)
GPUS = 8  # the papers' machines: HIRI-ViT 8 V100s; ViTAE lr quoted per 512 images


def load(name):
    return Config.fromfile(os.path.join(ROOT, 'configs', 'imagenet', name))


def transforms(pipeline):
    return {t['type']: t for t in pipeline}


def build_classifier(cfg_model):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    import mmhiri  # noqa: F401  (what custom_imports does)
    return MODELS.build(cfg_model)


def test_every_imagenet_config_is_here():
    names = {os.path.basename(p) for p in CONFIGS}
    for a in 'sbl':
        for r in (224, 384, 448, 768):
            assert f'hiri_{a}_{r}.py' in names
    assert {'vitaev2_s_224.py', 'vitaev2_48m_224.py', 'vitaev2_b_224.py', 'vitae_t_224.py',
            'vitae_6m_224.py', 'vitae_13m_224.py', 'vitae_s_224.py'} <= names


def lr_at(cfg, total_batch):
    """The lr mmengine's auto_scale_lr gives at ``total_batch`` (linear in the batch)."""
    return cfg.optim_wrapper.optimizer.lr * total_batch / cfg.auto_scale_lr.base_batch_size


@pytest.mark.parametrize('name', [f'hiri_{a}_{r}.py' for a in 'sbl' for r in (224, 384, 448)])
def test_hiri_recipe(name):
    """§5.1: 300 epochs, AdamW lr 1e-3 at batch 1024 (8 x 128), wd 0.05, cosine after 5 warm-up
    epochs; crop, flip, RandAugment, Random Erasing, CutMix/Mixup; EMA distillation (Table 7
    row 11 is Table 2's model)."""
    cfg = load(name)
    assert cfg.train_dataloader.batch_size * GPUS == cfg.auto_scale_lr.base_batch_size == 1024
    assert lr_at(cfg, 1024) == 1e-3 and lr_at(cfg, 512) == 5e-4
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 5 and warmup.convert_to_iter_based
    assert cosine.type == 'CosineAnnealingLR' and cosine.begin == 5
    res = int(name[-6:-3])
    t = transforms(cfg.train_dataloader.dataset.pipeline)
    assert t['RandomResizedCrop']['scale'] == res and t['RandomFlip']['prob'] == 0.5
    assert t['RandAugment']['magnitude_level'] == 9 and t['RandomErasing']['erase_prob'] == 0.25
    assert transforms(cfg.val_dataloader.dataset.pipeline)['CenterCrop']['crop_size'] == res
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.model.type == 'mmhiri.EMADistillClassifier' and cfg.model.distill.alpha == 0.5
    assert 'mmhiri.engine' in cfg.custom_imports['imports']
    assert {'type': 'EMADistillHook'} in cfg.custom_hooks


@pytest.mark.parametrize('arch', 'sbl')
def test_hiri_768_finetune_recipe(arch):
    """§5.1 (Table 3): 30 epochs, lr 1e-5, wd 1e-8, cosine, from the 448 model."""
    cfg = load(f'hiri_{arch}_768.py')
    assert cfg.optim_wrapper.optimizer.lr == 1e-5 and lr_at(cfg, 1024) == 1e-5
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-8
    assert cfg.optim_wrapper.optimizer.betas[0] == 0.9
    assert cfg.train_cfg.max_epochs == 30
    assert [s.type for s in cfg.param_scheduler] == ['CosineAnnealingLR']
    assert cfg.param_scheduler[0].end == 30
    assert cfg.load_from == f'work_dirs/hiri_{arch}_448/epoch_300.pth'
    t = transforms(cfg.train_dataloader.dataset.pipeline)
    assert t['RandomResizedCrop']['scale'] == 768 and 'RandAugment' in t
    assert cfg.model.backbone.arch == arch


@pytest.mark.parametrize('name', ['vitae_t_224.py', 'vitae_6m_224.py', 'vitae_13m_224.py',
                                  'vitae_s_224.py', 'vitaev2_s_224.py', 'vitaev2_48m_224.py',
                                  'vitaev2_b_224.py'])
def test_vitae_recipe(name):
    """ViTAE §4.1: AdamW, cosine, 300 epochs, lr 5e-4 per 512 images at a total batch of 512
    (ViTAE) or 1024 (ViTAEv2), T2T-ViT's augmentation."""
    cfg = load(name)
    total = 1024 if name.startswith('vitaev2') else 512
    assert cfg.train_dataloader.batch_size * GPUS == cfg.auto_scale_lr.base_batch_size == total
    assert lr_at(cfg, total) == 5e-4 * total / 512 and lr_at(cfg, 512) == 5e-4
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == 10 and cosine.type == 'CosineAnnealingLR'
    t = transforms(cfg.train_dataloader.dataset.pipeline)  # T2T-ViT = DeiT augmentation
    assert t['RandAugment']['policies'] == 'timm_increasing' and 'RandomErasing' in t
    assert transforms(cfg.val_dataloader.dataset.pipeline)['ResizeEdge']['scale'] == 248
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.model.type == 'ImageClassifier'
    ema = [h for h in cfg.custom_hooks if h['type'] == 'EMAHook']
    assert ema and ema[0]['momentum'] == pytest.approx(1 - 0.99996 ** (total / 512), rel=1e-3)


def build_config(path):
    """The model a config builds (Config.fromfile runs its custom_imports)."""
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmhiri' in cfg.custom_imports['imports']
    return cfg, build_classifier(cfg.model).eval()


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_runs(path):
    cfg, model = build_config(path)
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 1000)
    name = os.path.basename(path)
    params = sum(p.numel() for p in model.parameters()) / 1e6  # an EMA teacher has none
    if name.startswith('hiri_'):
        assert abs(params / TABLE2[name[5]] - 1) < 0.02, params
    if name.startswith('vitaev2_'):
        assert abs(params / TABLE1_V2[name.split('_')[1]] - 1) < 0.01, params
    if cfg.model.type == 'mmhiri.EMADistillClassifier':
        teacher = model.teacher.state_dict()
        student = {k: v for k, v in model.state_dict().items() if not k.startswith('teacher.')}
        assert teacher.keys() == student.keys()
        assert sum(v.numel() for v in teacher.values()) == sum(
            v.numel() for v in student.values())


@pytest.mark.slow
@pytest.mark.parametrize('res', [224, 384, 448, 768])
def test_hiri_s_classifier_at_paper_resolutions(res):
    cfg = Config.fromfile(os.path.join(ROOT, f'configs/imagenet/hiri_s_{res}.py'))
    # the configured pipeline really crops to this resolution
    crops = [t for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] in ('CenterCrop', 'Resize')]
    assert (crops[-1].get('crop_size') or crops[-1].get('scale')) == res
    model = build_classifier(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, res, res), stage='backbone')
        logits = model(torch.rand(1, 3, res, res), mode='tensor')
    assert feats[0].shape == (1, 512, -(-res // 64), -(-res // 64))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def _official(fixtures_dir, name):
    d = os.path.join(fixtures_dir, name)
    kw = json.load(open(os.path.join(d, 'kwargs.json')))['resolved_kwargs']
    return (kw, torch.load(os.path.join(d, 'state_dict.pt')), torch.load(os.path.join(d, 'inputs.pt')),
            torch.load(os.path.join(d, 'outputs.pt')))


@pytest.mark.parametrize('name', ['vitaev2_cls_tiny', 'vitae_cls_tiny'])
def test_with_head_reproduces_official_logits(fixtures_dir, name, tmp_path):
    """tools/model_converters/vitae2mmhiri.py --with-head -> strict load into mmpretrain's
    ImageClassifier (our documented classifier configs) -> the official logits."""
    import subprocess
    import sys

    from test_vitae import v1_arch, v2_arch
    kw, _, inputs, outputs = _official(fixtures_dir, name)
    dst = tmp_path / 'converted.pth'
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/model_converters/vitae2mmhiri.py'),
                          os.path.join(fixtures_dir, name, 'state_dict.pt'), str(dst), '--with-head'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if name.startswith('vitaev2'):
        cfg = Config.fromfile(os.path.join(ROOT, 'configs/_base_/models/vitaev2_cls.py'))
        cfg.model.backbone.arch = v2_arch(kw)
    else:
        cfg = Config.fromfile(os.path.join(ROOT, 'configs/_base_/models/vitae_cls.py'))
        cfg.model.backbone.arch = v1_arch(kw)
    cfg.model.head.num_classes = kw['num_classes']
    cfg.model.head.in_channels = kw['token_dims'][-1]
    model = build_classifier(cfg.model)
    state = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    model.eval()
    for key, x in inputs.items():
        with torch.no_grad():
            logits = model(x, mode='tensor')
        torch.testing.assert_close(logits, outputs[key], atol=1e-5, rtol=0)
        print(f'{name} {key}: max |logits - official| = '
              f'{(logits - outputs[key]).abs().max().item():.2e}')


def test_synthetic_classification_set(tmp_path):
    """mmhiri.datasets.classification: byte-identical for a seed, read by CustomDataset with
    the generator's label order."""
    import hashlib

    from mmpretrain.datasets import CustomDataset

    from mmhiri.datasets.classification import generate_classification

    def digest(root):
        files = sorted(p for p in root.rglob('*.png'))
        return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in files]

    info = generate_classification(str(tmp_path / 'a'), num_classes=5, num_train=3, num_val=2,
                                   size=24, seed=1)
    generate_classification(str(tmp_path / 'b'), num_classes=5, num_train=3, num_val=2,
                            size=24, seed=1)
    generate_classification(str(tmp_path / 'c'), num_classes=5, num_train=3, num_val=2,
                            size=24, seed=2)
    a, b, c = (digest(tmp_path / k) for k in 'abc')
    assert len(a) == 5 * (3 + 2) and a == b
    assert [h for _, h in a] != [h for _, h in c]
    train = CustomDataset(data_root=info['root'], data_prefix='train', pipeline=[])
    assert train.CLASSES == info['classes'] and len(train) == 15
    for i in range(len(train)):
        item = train.get_data_info(i)
        assert train.CLASSES[item['gt_label']] == item['img_path'].split('/')[-2]
    with pytest.raises(ValueError):
        generate_classification(str(tmp_path / 'd'), num_classes=9)
