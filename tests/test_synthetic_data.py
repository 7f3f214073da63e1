"""The synthetic datasets: deterministic, valid COCO / ADE20K / COCO-keypoint files, and the stock
mmdet / mmseg / mmpose training entry points run our configs on them."""
import filecmp
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from mmhiri.datasets import synthetic


def _files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    synthetic.generate_all(str(root), num_train=16, num_val=4, seed=3)
    return root


def test_same_seed_gives_identical_files(data, tmp_path):
    synthetic.generate_all(str(tmp_path), num_train=16, num_val=4, seed=3)
    files = _files(data)
    assert files == _files(tmp_path) and len(files) == 3 * 20 + 2 + 2 + 20  # + seg labels
    _, mismatch, errors = filecmp.cmpfiles(data, tmp_path, files, shallow=False)
    assert not mismatch and not errors
    synthetic.generate_instances(str(tmp_path / 'other'), 16, 4, seed=4)
    assert not filecmp.cmp(data / 'instances/annotations/instances_train.json',
                           tmp_path / 'other/annotations/instances_train.json', shallow=False)


def _self_eval(coco, iou_type, sigmas=None):
    """COCOeval of the ground truth scored against itself (score 1): must give AP 1."""
    from pycocotools.cocoeval import COCOeval
    dets = []
    for ann in coco.loadAnns(coco.getAnnIds()):
        det = {k: ann[k] for k in ('image_id', 'category_id', 'bbox', 'segmentation', 'keypoints')
               if k in ann}
        dets.append(dict(det, score=1.0))
    ev = COCOeval(coco, coco.loadRes(dets), iou_type)
    if sigmas is not None:
        ev.params.kpt_oks_sigmas = np.array(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0]


def test_instances_validate_with_pycocotools(data):
    from pycocotools.coco import COCO
    coco = COCO(str(data / 'instances/annotations/instances_train.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(synthetic.CLASSES)
    assert len(coco.getImgIds()) == 16 and len(coco.getAnnIds()) >= 16
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        assert osp.isfile(data / 'instances/images/train' / img['file_name'])
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)  # the polygon's mask fills its box (1 px rasterisation slack)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(int(mask.sum()) - ann['area']) <= 0.15 * ann['area']
    assert _self_eval(coco, 'bbox') == pytest.approx(1.0)
    assert _self_eval(coco, 'segm') == pytest.approx(1.0)


def test_semantic_maps_are_the_same_scenes(data):
    import cv2
    from pycocotools.coco import COCO
    coco = COCO(str(data / 'instances/annotations/instances_val.json'))
    for img in coco.loadImgs(coco.getImgIds()):
        stem = osp.splitext(img['file_name'])[0]
        seg = cv2.imread(str(data / f'semantic/annotations/validation/{stem}.png'),
                         cv2.IMREAD_UNCHANGED)
        assert seg.shape == (img['height'], img['width']) and seg.dtype == np.uint8
        expected = np.ones_like(seg)  # 1 = background, 2.. = the shape classes
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
            expected[coco.annToMask(ann) > 0] = ann['category_id'] + 1
        # the same shapes (polygon rasterisation of pycocotools and OpenCV differ on edges)
        assert (seg == expected).mean() > 0.97
        assert set(np.unique(seg)) <= {1, 2, 3, 4}
        assert osp.isfile(data / f'semantic/images/validation/{stem}.jpg')


def test_keypoints_validate_with_pycocotools(data):
    from pycocotools.coco import COCO
    coco = COCO(str(data / 'keypoints/annotations/keypoints_val.json'))
    cat = coco.loadCats(coco.getCatIds())[0]
    assert cat['keypoints'] == list(synthetic.KEYPOINTS)
    for ann in coco.loadAnns(coco.getAnnIds()):
        k = np.array(ann['keypoints']).reshape(-1, 3)
        x, y, w, h = ann['bbox']
        assert k.shape == (5, 3) and (k[:, 2] == 2).all() and ann['num_keypoints'] == 5
        assert (k[:, 0] >= x - 1).all() and (k[:, 0] <= x + w + 1).all()
        assert (k[:, 1] >= y - 1).all() and (k[:, 1] <= y + h + 1).all()
        assert k[0, 1] < k[3, 1] and k[0, 0] < k[1, 0]  # top-left above bottom-left, left of TR
        assert np.allclose(k[4, :2], k[:4, :2].mean(0), atol=0.02)  # centre
    assert _self_eval(coco, 'keypoints', sigmas=[0.025] * 5) == pytest.approx(1.0)


def _stock_train(framework, config, work_dir, options):
    """Run the framework's own tools/train.py (shipped in its package) on one of our configs."""
    import importlib
    pkg = osp.dirname(importlib.import_module(framework).__file__)
    script = osp.join(pkg, '.mim', 'tools', 'train.py')
    assert osp.isfile(script), script
    # seeded: the loss thresholds below must not depend on the draw of the initial weights
    out = subprocess.run(
        [sys.executable, script, config, '--work-dir', str(work_dir), '--cfg-options', *options,
         'randomness.seed=0'],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return _losses(log)


def _losses(log):
    """The total losses the mmengine logger printed, in order."""
    return [float(m.group(1)) for m in re.finditer(r'\((?:train)\).*?\s loss: ([\d.]+)', log)]


@pytest.mark.slow
def test_stock_mmseg_train_on_semantic_shapes(data, tmp_path):
    root = str(data / 'semantic')
    losses = _stock_train('mmseg', 'configs/demo/upernet_hiri_demo.py', tmp_path, [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', 'train_cfg.max_iters=40',
        'train_cfg.val_interval=40', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=40', 'param_scheduler.0.end=5',
        'param_scheduler.1.begin=5', 'param_scheduler.1.end=40'])
    assert len(losses) >= 8, losses
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    assert osp.isfile(tmp_path / 'iter_40.pth')


@pytest.mark.slow
def test_stock_mmpose_train_on_keypoint_shapes(data, tmp_path):
    root = str(data / 'keypoints') + '/'
    losses = _stock_train('mmpose', 'configs/demo/simplebaseline_hiri_demo.py', tmp_path, [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/keypoints_val.json',
        f'test_evaluator.ann_file={root}annotations/keypoints_val.json',
        'train_cfg.max_epochs=12', 'train_cfg.val_interval=12', 'train_dataloader.batch_size=4',
        'default_hooks.logger.interval=2', 'default_hooks.checkpoint.interval=12',
        'param_scheduler.0.end=5', 'param_scheduler.1.end=12',
        'param_scheduler.1.milestones=[100]'])
    assert len(losses) >= 10, losses
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert osp.isfile(tmp_path / 'epoch_12.pth')


@pytest.mark.slow
def test_stock_mmdet_train_on_instance_shapes(data, tmp_path):
    root = str(data / 'instances') + '/'
    losses = _stock_train('mmdet', 'configs/demo/mask_rcnn_hiri_demo.py', tmp_path, [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1'])
    assert len(losses) == 4 and all(np.isfinite(losses)), losses
    assert osp.isfile(tmp_path / 'epoch_1.pth')
