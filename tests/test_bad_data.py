"""A training, validation or test image or an annotation file that cannot be read stops
tools/train.py and tools/test.py with its path (it used to be a bare cv2.error /
JSONDecodeError naming neither, or a loader-worker traceback); annotations of undeclared
categories stop training instead of vanishing."""
import json

import pytest

from conftest import run_script as run


@pytest.fixture(scope='module')
def instances(tmp_path_factory):
    from mmhiri.datasets.synthetic import main as make_data
    root = tmp_path_factory.mktemp('bad')
    make_data([str(root), '--num-train', '8', '--num-val', '2', '--only', 'instances'])
    return root / 'instances'


def train(data_root, work, *args, validate=False):
    options = [f'val_dataloader.dataset.data_root={data_root}/',
               f'val_evaluator.ann_file={data_root}/annotations/instances_val.json',
               'train_cfg.val_interval=1', 'train_dataloader.dataset.indices=1',
               'train_dataloader.batch_size=1'] if validate else []  # 1 iteration, validation
    return run('tools/train.py', 'configs/demo/mask_rcnn_hiri_demo.py', '--work-dir', str(work),
               *([] if validate else ['--no-validate']), *args, '--cfg-options',
               f'train_dataloader.dataset.data_root={data_root}/', 'train_cfg.max_epochs=1',
               *options, check=False)


@pytest.mark.slow
def test_zero_byte_training_image_is_named(instances, tmp_path):
    ann = json.loads((instances / 'annotations' / 'instances_train.json').read_text())
    name = ann['images'][3]['file_name']
    path = instances / 'images' / 'train' / name
    data = path.read_bytes()
    try:
        path.write_bytes(b'')
        out = train(instances, tmp_path / 'w')
    finally:
        path.write_bytes(data)
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert err[-1].startswith('error: training sample ') and str(path) in err[-1], err[-5:]
    assert 'could not be loaded' in err[-1]


@pytest.mark.slow
def test_truncated_annotation_file_is_named(instances, tmp_path):
    import shutil
    broken = tmp_path / 'instances'
    shutil.copytree(instances, broken)
    ann = broken / 'annotations' / 'instances_train.json'
    text = ann.read_text()
    ann.write_text(text[:len(text) // 2])
    out = train(broken, tmp_path / 'w')
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot build the training dataset CocoDataset from ')
    assert str(ann) in last and 'JSONDecodeError' in last, last


def _copy_with_unknown_categories(instances, tmp_path):
    """A copy of the data whose training JSON gives 3 annotations category 7 and 1 category 9
    (its categories declare 1, 2, 3)."""
    import shutil
    broken = tmp_path / 'instances'
    shutil.copytree(instances, broken)
    ann_file = broken / 'annotations' / 'instances_train.json'
    ann = json.loads(ann_file.read_text())
    for a, cat in zip(ann['annotations'][:4], [7, 7, 9, 7]):
        a['category_id'] = cat
    ann_file.write_text(json.dumps(ann))
    return broken, ann_file, len(ann['annotations'])


@pytest.mark.slow
def test_unknown_category_ids_stop_training(instances, tmp_path):
    """mmdet's CocoDataset drops annotations whose category_id its file does not declare,
    silently (12 of 34 in the measured case); tools/train.py stops naming the file, the ids
    and the counts."""
    broken, ann_file, total = _copy_with_unknown_categories(instances, tmp_path)
    out = train(broken, tmp_path / 'w')
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: training annotations '{ann_file}': 4 of {total} annotations "
        f'({100 * 4 / total:.0f}%) use a category_id that its "categories" do not declare '
        '(category_id 7 in 3, 9 in 1; declared: [1, 2, 3]). mmdet would drop them silently: fix '
        'the file, or train without them with tools/train.py --drop-unknown-categories')


def test_dropping_unknown_categories_knowingly(instances, tmp_path):
    """The training dataset tools/train.py --drop-unknown-categories configures keeps every
    annotation of a declared category, and says what it drops."""
    from mmengine.registry import DATASETS, init_default_scope

    from mmhiri.apis import load_config
    from mmhiri.datasets.checks import DataError
    from mmhiri.utils.exact_resume import SeededDataset, make_resumable
    broken, ann_file, total = _copy_with_unknown_categories(instances, tmp_path)
    cfg = load_config('configs/demo/mask_rcnn_hiri_demo.py', {
        'train_dataloader.dataset.data_root': f'{broken}/'})
    init_default_scope('mmdet')
    with pytest.raises(DataError, match=r"4 of \d+ annotations \(\d+%\) use a category_id"):
        SeededDataset(cfg.train_dataloader.dataset)
    make_resumable(cfg, unknown_categories='drop')  # what build_runner does for the flag
    # The message goes through the current MMLogger, whose stream handler holds whichever
    # sys.stdout existed when an earlier test created it: read it from a handler of our own.
    import logging

    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        kept = DATASETS.build(cfg.train_dataloader.dataset)
    finally:
        logger.removeHandler(handler)
    assert sum(len(kept.get_data_info(i)['instances']) for i in range(len(kept))) == total - 4
    assert any(f"training annotations '{ann_file}': 4 of {total} annotations" in message
               and 'dropping them' in message for message in records), records


@pytest.mark.slow
def test_missing_validation_and_test_images_are_named(instances, tmp_path):
    """A validation image missing on disk: validation inside tools/train.py and tools/test.py
    stop with one line naming it, as a missing training image does (it was a 57-line
    loader-worker traceback)."""
    import shutil
    broken = tmp_path / 'instances'
    shutil.copytree(instances, broken)
    ann = json.loads((broken / 'annotations' / 'instances_val.json').read_text())
    missing = broken / 'images' / 'val' / ann['images'][1]['file_name']
    missing.unlink()
    out = train(broken, tmp_path / 'w', validate=True)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: validation sample 1 ({missing}) could not be loaded: '), last
    ckpt = tmp_path / 'w' / 'epoch_1.pth'  # saved before validation started
    out = run('tools/test.py', 'configs/demo/mask_rcnn_hiri_demo.py', str(ckpt), '--work-dir',
              str(tmp_path / 't'), '--cfg-options',
              f'test_dataloader.dataset.data_root={broken}/',
              f'test_evaluator.ann_file={broken}/annotations/instances_val.json', check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: test sample 1 ({missing}) could not be loaded: '), last
