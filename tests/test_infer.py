"""tools/infer.py: every framework's Inferencer end to end on a real photograph, a folder and a
video, and one clear message for each wrong input.

Most checkpoints are the configs' own models at their initial weights (a trained one is not in a
clean clone): the predictions are noise, so the tests check files, formats and sizes only. One
test trains the demo Mask R-CNN briefly with tools/train.py (the `make demo` path) and runs the
command on the checkpoint the Runner wrote.
"""
import importlib.util
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script

DET = 'configs/demo/mask_rcnn_hiri_demo.py'
SEG = 'configs/demo/upernet_hiri_demo.py'
POSE = 'configs/demo/simplebaseline_hiri_demo.py'
CLS = 'configs/imagenet/vitae_t_224.py'  # ViTAE-T as shipped (4.8 M parameters)


def _load_infer():
    spec = importlib.util.spec_from_file_location('infer', os.path.join(ROOT, 'tools', 'infer.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


infer = _load_infer()


@pytest.fixture(scope='module')
def photo():
    """grace_hopper.jpg, a photograph matplotlib ships (mpl-data/sample_data)."""
    import matplotlib.cbook
    return str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))


@pytest.fixture(scope='module')
def folder(photo, tmp_path_factory):
    """The photograph and a smaller copy of it, of another size and format."""
    d = tmp_path_factory.mktemp('photos')
    shutil.copy(photo, d / 'grace_hopper.jpg')
    img = cv2.imread(photo)
    cv2.imwrite(str(d / 'hopper_small.png'), cv2.resize(img, (200, 234)))
    (d / 'notes.txt').write_text('not an image: the folder listing skips it')
    return d


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """``checkpoint(config)``: the model ``config`` builds, at its initial weights, saved as
    tools/train.py saves it (``state_dict`` and ``meta.dataset_meta`` where the config names
    its classes)."""
    import torch
    from mmengine.registry import DefaultScope

    import mmhiri  # noqa: F401
    from mmhiri.apis import load_config
    root, made = tmp_path_factory.mktemp('ckpt'), {}

    def make(config):
        if config not in made:
            cfg = load_config(os.path.join(ROOT, config))
            registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
            with DefaultScope.overwrite_default_scope(cfg.default_scope):
                model = registry.build(cfg.model)
            model.init_weights()
            meta = {'dataset_meta': dict(cfg.metainfo)} if 'metainfo' in cfg and \
                'classes' in cfg.metainfo else {}
            made[config] = str(root / (os.path.basename(config)[:-3] + '.pth'))
            torch.save({'state_dict': model.state_dict(), 'meta': meta}, made[config])
        return made[config]
    return make


def run(config, weights, out, *inputs, options=()):
    infer.main([*map(str, inputs), os.path.join(ROOT, config), '--weights', weights,
                '--out-dir', str(out), *options])


def outputs(out, stem, ext):
    """The JSON of ``stem`` and its drawing's size (h, w)."""
    with open(out / 'preds' / f'{stem}.json') as f:
        pred = json.load(f)
    vis = cv2.imread(str(out / 'vis' / f'{stem}{ext}'))
    assert vis is not None, f'{stem}{ext} not written'
    return pred, vis.shape[:2]


H, W = 600, 512  # grace_hopper.jpg
SMALL = (234, 200)


def test_detection_image_and_folder(photo, folder, checkpoint, tmp_path, capsys):
    # at most 10 detections an image: random weights give 100 low-scoring ones, slow to encode
    run(DET, checkpoint(DET), tmp_path, photo, folder,
        options=['--batch-size', '2', '--cfg-options', 'model.test_cfg.rcnn.max_per_img=10'])
    log = capsys.readouterr().out
    assert '[3/3]' in log and 'DetInferencer' in log
    # the folder's copy of the photograph shares its stem: it gets _1
    for stem, ext, size in [('grace_hopper', '.jpg', (H, W)), ('grace_hopper_1', '.jpg', (H, W)),
                            ('hopper_small', '.png', SMALL)]:
        pred, vis_size = outputs(tmp_path, stem, ext)
        assert vis_size == size
        assert pred['classes'] == ['circle', 'square', 'triangle']
        n = len(pred['labels'])
        assert len(pred['scores']) == len(pred['bboxes']) == len(pred['masks']) == n
        assert n <= 10 and all(lab in (0, 1, 2) for lab in pred['labels'])
        if n:
            boxes = np.array(pred['bboxes'])
            assert boxes.shape == (n, 4) and (boxes[:, 2:] <= [size[1] + 1, size[0] + 1]).all()
            assert pred['masks'][0]['size'] == list(size)
    assert not (tmp_path / 'preds' / 'notes.json').exists()


def test_semantic_segmentation(folder, checkpoint, tmp_path):
    run(SEG, checkpoint(SEG), tmp_path, folder)
    for stem, ext, size in [('grace_hopper', '.jpg', (H, W)), ('hopper_small', '.png', SMALL)]:
        pred, vis_size = outputs(tmp_path, stem, ext)
        seg = np.array(pred['sem_seg'])
        assert vis_size == size and seg.shape == size
        assert pred['classes'] == ['background', 'circle', 'square', 'triangle']
        assert seg.min() >= 0 and seg.max() < 4
        label_map = cv2.imread(str(tmp_path / 'preds' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert (label_map == seg).all()


def test_pose_whole_image_as_the_box(folder, checkpoint, tmp_path):
    run(POSE, checkpoint(POSE), tmp_path, folder, options=['--no-save-vis'])
    assert not (tmp_path / 'vis').exists()
    for stem, size in [('grace_hopper', (H, W)), ('hopper_small', SMALL)]:
        with open(tmp_path / 'preds' / f'{stem}.json') as f:
            pred = json.load(f)
        assert pred['keypoint_names'] == ['top_left', 'top_right', 'bottom_right',
                                          'bottom_left', 'centre']
        (inst,) = pred['instances']  # no detector: one instance, the whole image
        assert np.allclose(inst['bbox'], [[0, 0, size[1], size[0]]])
        assert np.array(inst['keypoints']).shape == (5, 2)
        assert len(inst['keypoint_scores']) == 5


def test_classification_and_video(photo, checkpoint, tmp_path):
    video = tmp_path / 'clip.mp4'
    frame = cv2.resize(cv2.imread(photo), (160, 188))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 4, (160, 188))
    for i in range(3):
        writer.write(np.roll(frame, 8 * i, axis=1))
    writer.release()
    out = tmp_path / 'out'
    run(CLS, checkpoint(CLS), out, photo, video)
    pred, vis_size = outputs(out, 'grace_hopper', '.jpg')
    assert vis_size == (H, W)
    assert isinstance(pred['pred_label'], int) and 0 <= pred['pred_label'] < 1000
    assert pred['pred_class'] == pred['classes'][pred['pred_label']]
    assert len(pred['pred_scores']) == 1000 and abs(sum(pred['pred_scores']) - 1) < 1e-3
    assert pred['pred_score'] == max(pred['pred_scores'])
    with open(out / 'preds' / 'clip.json') as f:
        clip = json.load(f)
    assert clip['num_frames'] == 3 and clip['fps'] == 4
    assert [f['frame_id'] for f in clip['frames']] == [0, 1, 2]
    assert all('pred_label' in f for f in clip['frames'])
    cap = cv2.VideoCapture(str(out / 'vis' / 'clip.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == (188, 160)
    cap.release()


def test_deploy_mode_gives_the_same_predictions(photo, checkpoint, tmp_path, capsys):
    for config in (CLS, SEG):
        preds = []
        for options in ([], ['--deploy']):
            out = tmp_path / f'{os.path.basename(config)}{len(options)}'
            run(config, checkpoint(config), out, photo, options=['--no-save-vis', *options])
            with open(out / 'preds' / 'grace_hopper.json') as f:
                preds.append(json.load(f))
        assert 'in deploy mode' in capsys.readouterr().out
        if config == CLS:
            a, b = (np.array(p['pred_scores']) for p in preds)
            assert np.abs(a - b).max() < 1e-5
        else:  # label maps: equal but for near-ties of random weights
            a, b = (np.array(p['sem_seg']) for p in preds)
            assert (a == b).mean() > 0.999


def test_wrong_inputs_stop_with_one_message(photo, folder, checkpoint, tmp_path):
    def message(*args):
        with pytest.raises(SystemExit) as e:
            infer.main([*map(str, args), '--out-dir', str(tmp_path / 'out')])
        return e.value.code

    ckpt = checkpoint(DET)
    assert message(photo, DET, '--weights', 'nope.pth') == "error: checkpoint not found: 'nope.pth'"
    assert message(tmp_path / 'gone.jpg', DET, '--weights', ckpt) == \
        f"error: input not found: '{tmp_path / 'gone.jpg'}'"
    (tmp_path / 'empty').mkdir()
    assert message(tmp_path / 'empty', DET, '--weights', ckpt).startswith(
        f"error: no images in folder '{tmp_path / 'empty'}' (looked for .jpg")
    other = tmp_path / 'ocr.py'
    other.write_text(f"_base_ = ['{ROOT}/{DET}']\ndefault_scope = 'mmocr'\n")
    assert message(photo, other, '--weights', ckpt) == (
        f"error: {other}: default_scope is 'mmocr'; expected one of ('mmdet', 'mmseg', "
        "'mmpose', 'mmpretrain'). Inherit the framework's runtime, e.g. "
        "_base_ = ['mmdet::_base_/default_runtime.py'].")
    # an image whose header reads but whose data is cut off is named before the pipeline sees it
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(open(photo, 'rb').read()[:3000])
    with pytest.raises(SystemExit, match="cannot read image '.*truncated.jpg': the file is "
                                         'corrupt or truncated'):
        infer.read_image(str(truncated))


def test_messages_from_the_command_line(folder, checkpoint, tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a JPEG at all')
    out = run_script('tools/infer.py', str(folder), str(broken), DET, '--weights',
                     checkpoint(DET), '--out-dir', str(tmp_path / 'o'), check=False)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        f"error: cannot read image '{broken}': not an image file OpenCV can decode"
    # the detector's checkpoint for the segmentation config
    out = run_script('tools/infer.py', str(folder), SEG, '--weights', checkpoint(DET),
                     '--out-dir', str(tmp_path / 'o'), check=False)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: checkpoint '{checkpoint(DET)}' does not fit this "
                           'EncoderDecoder: ') and 'is it the checkpoint of this config?' in last
    assert not (tmp_path / 'o' / 'preds').exists() or not os.listdir(tmp_path / 'o' / 'preds')


@pytest.mark.slow
def test_a_checkpoint_tools_train_wrote(photo, folder, tmp_path):
    """The path `make demo` takes: tools/train.py trains the demo Mask R-CNN (here 2 iterations
    on 8 generated scenes), and tools/infer.py, run as a command, draws that Runner checkpoint's
    predictions on the photograph and the folder, naming the demo's classes (from the
    checkpoint's dataset_meta)."""
    from mmhiri.datasets.synthetic import main as make_data
    data = tmp_path / 'data'
    make_data([str(data), '--num-train', '8', '--num-val', '2', '--only', 'instances'])
    work = tmp_path / 'work'
    run_script('tools/train.py', DET, '--work-dir', str(work), '--no-validate', '--cfg-options',
               f'train_dataloader.dataset.data_root={data}/instances/',
               'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
               'train_cfg.max_epochs=1', 'randomness.seed=0')
    ckpt = work / 'epoch_1.pth'
    out = tmp_path / 'out'
    result = run_script('tools/infer.py', photo, str(folder), DET, '--weights', str(ckpt),
                        '--out-dir', str(out), '--cfg-options',
                        'model.test_cfg.rcnn.max_per_img=10')
    assert '[3/3]' in result.stdout, result.stdout[-2000:]
    for stem, ext in [('grace_hopper', '.jpg'), ('grace_hopper_1', '.jpg'),
                      ('hopper_small', '.png')]:
        pred, size = outputs(out, stem, ext)
        assert size == ((H, W) if stem != 'hopper_small' else SMALL)
        assert pred['classes'] == ['circle', 'square', 'triangle']
        assert len(pred['labels']) == len(pred['scores']) == len(pred['bboxes'])
