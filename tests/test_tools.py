"""tools/train.py and tools/test.py: train, resume and evaluate a config end to end."""
import re

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY_V2, run_script as run


@pytest.fixture(scope='module')
def cls_config(tmp_path_factory):
    """A two-class image folder and a tiny ViTAEv2 classifier config over it."""
    root = tmp_path_factory.mktemp('cls')
    rng = np.random.default_rng(0)
    for label, colour in enumerate([(220, 40, 40), (40, 40, 220)]):
        d = root / 'data' / f'class{label}'
        d.mkdir(parents=True)
        for i in range(4):
            img = np.clip(np.array(colour) + rng.normal(0, 20, (40, 40, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(d / f'{i}.png')
    cfg = root / 'tiny_cls.py'
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32),
                dict(type='PackInputs')]
    loader = dict(batch_size=4, num_workers=0,
                  dataset=dict(type='CustomDataset', data_root=str(root / 'data'),
                               pipeline=pipeline),
                  sampler=dict(type='DefaultSampler', shuffle=True))
    cfg.write_text(f"""
_base_ = ['{ROOT}/configs/_base_/models/vitaev2_cls.py', 'mmpretrain::_base_/default_runtime.py']
model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_V2!r})), head=dict(num_classes=2, in_channels=64, topk=(1,)),
             train_cfg=None)
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[64.] * 3, to_rgb=True)
train_dataloader = {loader!r}
val_dataloader = {loader!r}
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                     logger=dict(type='LoggerHook', interval=1))
""")
    return cfg


@pytest.mark.slow
def test_train_resume_test(cls_config, tmp_path):
    work = tmp_path / 'work'
    run('tools/train.py', str(cls_config), '--work-dir', str(work))
    assert (work / 'iter_2.pth').is_file()
    out = run('tools/train.py', str(cls_config), '--work-dir', str(work), '--resume',
              '--cfg-options', 'train_cfg.max_iters=3')
    log = out.stdout + out.stderr
    assert re.search(r'resumed epoch: \d+, iter: 2', log), log[-3000:]
    assert (work / 'iter_3.pth').is_file()
    out = run('tools/test.py', str(cls_config), str(work / 'iter_3.pth'), '--work-dir',
              str(tmp_path / 'test'), '--out', str(tmp_path / 'preds.pkl'),
              '--metrics-out', str(tmp_path / 'metrics.json'))
    assert 'accuracy/top1' in out.stdout + out.stderr
    # the same checkpoint in deploy mode: the same metrics
    out = run('tools/test.py', str(cls_config), str(work / 'iter_3.pth'), '--work-dir',
              str(tmp_path / 'test_deploy'), '--deploy',
              '--metrics-out', str(tmp_path / 'metrics_deploy.json'))
    assert 'ViTAEv2 switched to deploy mode' in out.stdout + out.stderr
    import json
    metrics = [json.loads((tmp_path / f).read_text())
               for f in ('metrics.json', 'metrics_deploy.json')]
    assert metrics[0] == metrics[1] and 'accuracy/top1' in metrics[0]
    import pickle
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8 and all('pred_label' in p for p in preds)


@pytest.mark.slow
def test_wrong_files_and_typos_are_refused_by_name(cls_config, tmp_path):
    import torch

    from conftest import tiny_backbone
    work = tmp_path / 'work'
    run('tools/train.py', str(cls_config), '--work-dir', str(work))
    # a second run into the same work dir without --resume used to overwrite it silently
    out = run('tools/train.py', str(cls_config), '--work-dir', str(work), check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert (f"work dir '{work}' already holds checkpoints (iter_1.pth, iter_2.pth, "
            'last_checkpoint). Pass --resume') in out.stderr
    out = run('tools/train.py', str(cls_config), '--work-dir', str(work), '--overwrite',
              '--cfg-options', 'train_cfg.max_iters=1')
    # another model's checkpoint: evaluating it gave exit 0 and accuracy from random weights
    other = tmp_path / 'other.pth'
    state = {'backbone.' + k: v for k, v in tiny_backbone('HIRIViT').state_dict().items()}
    torch.save({'state_dict': state, 'meta': {}}, other)
    out = run('tools/test.py', str(cls_config), str(other), '--work-dir', str(tmp_path / 't'),
              check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert re.search(rf"checkpoint '{other}' does not fit this ImageClassifier: 0 of \d+ model "
                     r'tensors match, \d+ missing', out.stderr), out.stderr[-2000:]
    # ... and as load_from before fine-tuning (the backbone must load; heads may differ)
    out = run('tools/train.py', str(cls_config), '--work-dir', str(tmp_path / 'w1'),
              '--cfg-options', f'load_from={other}', check=False)
    assert re.search(r'0 of \d+ backbone tensors match', out.stderr), out.stderr[-2000:]
    # --cfg-options typos stop before anything runs
    out = run('tools/train.py', str(cls_config), '--work-dir', str(tmp_path / 'w2'),
              '--cfg-options', 'nonexistent_key.foo=3', check=False)
    assert out.returncode != 0 and "the config has no 'nonexistent_key'" in out.stderr
    out = run('tools/train.py', str(cls_config), '--work-dir', str(tmp_path / 'w3'),
              '--cfg-options', 'default_hooks.checkpoint.intreval=1', check=False)
    assert out.returncode != 0
    assert ("default_hooks.checkpoint (CheckpointHook): unknown argument(s) ['intreval']"
            in out.stderr)
    assert not (tmp_path / 'w3').exists() or not list((tmp_path / 'w3').rglob('*.pth'))


def test_deploy_refuses_a_backbone_without_deploy_mode():
    import torch.nn as nn
    from mmhiri.apis import deploy_model

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 8, 3)

    with pytest.raises(SystemExit, match=r'backbone of this Detector \(Conv2d\) has no deploy'):
        deploy_model(Detector())


def test_clear_errors():
    out = run('tools/train.py', 'configs/does_not_exist.py', check=False)
    assert out.returncode != 0 and "config file not found: 'configs/does_not_exist.py'" in out.stderr
    if not __import__('torch').cuda.is_available():  # --amp trains in bf16 on CPU; fp16 no
        out = run('tools/train.py', 'configs/imagenet/vitae_t_224.py', '--amp-dtype', 'fp16',
                  check=False)
        assert out.returncode != 0 and 'Traceback' not in out.stderr
        assert '--amp on CPU trains in bf16' in out.stderr.strip().splitlines()[-1]
    # an mmdet config through our entry point: without COCO, one message naming the path
    out = run('tools/train.py', 'configs/mask_rcnn_hiri_s_1x.py', '--cfg-options',
              'train_dataloader.dataset.data_root=/nonexistent/coco/', check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert "expected '/nonexistent/coco/annotations/instances_train2017.json'" in out.stderr
    # with data present (here: the annotation paths pointed at existing files), the missing
    # ImageNet weights are named with the key to set
    out = run('tools/train.py', 'configs/mask_rcnn_hiri_s_1x.py', '--cfg-options',
              f'train_dataloader.dataset.data_root={ROOT}/',
              f'train_dataloader.dataset.ann_file={ROOT}/README.md',
              f'val_dataloader.dataset.ann_file={ROOT}/README.md', check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert "model.backbone.init_cfg: pretrained checkpoint not found: " \
        "'checkpoints/hiri_s_448_in1k.pth'" in out.stderr
    out = run('tools/test.py', 'configs/imagenet/vitae_t_224.py', 'nope.pth', check=False)
    assert out.returncode != 0 and "checkpoint not found: 'nope.pth'" in out.stderr


@pytest.mark.slow
def test_get_flops_script():
    out = run('tools/analysis/get_flops.py', 'configs/imagenet/vitaev2_s_224.py')
    m = re.search(r'whole model \(ImageClassifier\): ([\d.]+) M params, ([\d.]+) GFLOPs', out.stdout)
    assert m and abs(float(m.group(1)) - 19.36) < 0.01 and abs(float(m.group(2)) - 5.78) < 0.01
    out = run('tools/analysis/get_flops.py', 'configs/mask_rcnn_hiri_s_1x.py', '--shape', '250', '300')
    assert 'input: 1x3x256x320 (from 250x300, padded to /32)' in out.stdout
    assert re.search(r'backbone \(HIRIViT\): 30\.85 M params', out.stdout)
    assert re.search(r'whole model \(MaskRCNN\): 51\.01 M params', out.stdout)
