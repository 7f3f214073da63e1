"""Run a checkpoint of any mmhiri config (mmdet, mmseg, mmpose or mmpretrain) on your own images
and videos, through that framework's own Inferencer.

    python tools/infer.py INPUT [INPUT ...] CONFIG --weights CKPT [--out-dir outputs]
        [--device cpu] [--pred-score-thr 0.3] [--batch-size 1] [--no-save-vis] [--no-save-pred]
        [--cfg-options k=v ...]

INPUT: an image, a folder of images (its own files only, not subfolders; .jpg .jpeg .png .ppm
.bmp .pgm .tif .tiff .webp) or a video (.mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg .wmv .flv).
The framework comes from the config's ``default_scope``: mmdet -> DetInferencer, mmseg ->
MMSegInferencer, mmpose -> MMPoseInferencer (the 2D pose model alone: no detector, the whole
image is the person/animal box), mmpretrain -> ImageClassificationInferencer.

Written under --out-dir, whatever the framework (the Inferencers' own ``out_dir`` layouts differ,
so this script writes the files from what they return):

* ``vis/NAME``: the input with the prediction drawn, at the input's size (a video gives
  ``vis/STEM.mp4``, mp4v, the input's frame rate);
* ``preds/STEM.json``: the Inferencer's prediction dict (``return_datasamples=False``) with
  ``input`` and the class / keypoint names added. mmdet: ``labels``, ``scores``, ``bboxes`` (x1
  y1 x2 y2, input pixels, every detection the model keeps; --pred-score-thr only filters the
  drawing) and ``masks`` (COCO RLE) for instance segmentation; mmseg: ``sem_seg``, the per-pixel
  class index (H rows of W), also written as ``preds/STEM.png``; mmpose: ``instances``, each
  with ``keypoints`` (K x 2, input pixels), ``keypoint_scores``, ``bbox``, ``bbox_score``;
  mmpretrain: ``pred_label``, ``pred_score``, ``pred_class`` and ``pred_scores`` (all classes).
  A video gives one ``preds/STEM.json`` with ``frames``: a list of these dicts with ``frame_id``.

Two inputs with one file stem get ``STEM_1``, ``STEM_2``, ... in the outputs.

Before any input runs, the memory each batch needs is estimated from the sizes in the files'
headers (nothing decoded) and the model (:class:`InferenceMemory`): the decoded image and the
drawing (3 bytes a pixel each, the drawing twice: the image it is drawn on and the canvas), what
the framework makes at the input's full size (mmdet with masks: one byte a pixel for each of
``max_per_img`` masks; mmseg: the class scores resized to the input, 4 bytes a pixel a class, and
the label map, 8 bytes a pixel) and the backbone and neck at the size the test pipeline gives
them (:func:`mmhiri.utils.memory.fit_forward_memory`). A batch that needs more than is available
stops the run with one line, naming the input and the largest size that would fit.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import tempfile
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from mmhiri.apis import load_config  # noqa: E402

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv',
                    '.flv')
VIS_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')  # else .png
INFERENCERS = {'mmdet': 'DetInferencer', 'mmseg': 'MMSegInferencer',
               'mmpose': 'MMPoseInferencer', 'mmpretrain': 'ImageClassificationInferencer'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run a checkpoint of an mmhiri config on images, folders or videos',
        epilog='Outputs: OUT_DIR/vis/ (drawn predictions) and OUT_DIR/preds/ (JSON).')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='image file(s), folder(s) of images, or video file(s)')
    parser.add_argument('config', help='config file (its default_scope picks the framework)')
    parser.add_argument('--weights', required=True, help='checkpoint of that config')
    parser.add_argument('--out-dir', default='outputs', help='output folder (default: outputs)')
    parser.add_argument('--device', help='e.g. cpu, cuda:0 (default: cuda:0 if CUDA, else cpu)')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='smallest score drawn: boxes (mmdet), keypoints (mmpose); '
                        'unused by mmseg and mmpretrain (default: 0.3)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images (or video frames) per forward pass; mmpose runs one at a '
                        'time whatever this is (default: 1)')
    parser.add_argument('--deploy', action='store_true',
                        help="run the backbone in deploy mode (switch_to_deploy: BatchNorms "
                        "folded, channels-last, oneDNN on CPU)")
    parser.add_argument('--no-save-vis', action='store_true', help='do not write vis/')
    parser.add_argument('--no-save-pred', action='store_true', help='do not write preds/')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, e.g. model.test_cfg.rcnn.max_per_img=20')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    return args


# ----------------------------------------------------------------------------- inputs
def collect_inputs(paths):
    """``[(kind, path)]`` with kind 'image' or 'video', in the order given (folders sorted).

    Stops with one message for a path that does not exist, a folder without images and an image
    OpenCV cannot read (checked from the file's header here, decoded before each batch)."""
    import cv2
    items = []
    for path in paths:
        if osp.isdir(path):
            names = sorted(n for n in os.listdir(path)
                           if n.lower().endswith(IMG_EXTENSIONS)
                           and osp.isfile(osp.join(path, n)))
            if not names:
                raise SystemExit(f'no images in folder {path!r} (looked for '
                                 f'{" ".join(IMG_EXTENSIONS)}; videos must be given as files)')
            items += [('image', osp.join(path, n)) for n in names]
        elif osp.isfile(path):
            items.append(('video' if path.lower().endswith(VIDEO_EXTENSIONS) else 'image', path))
        else:
            raise SystemExit(f'input not found: {path!r}')
    for kind, path in items:
        if kind == 'image' and not cv2.haveImageReader(path):
            raise SystemExit(f'cannot read image {path!r}: not an image file OpenCV can decode')
    return items


def read_image(path):
    import mmcv
    try:
        img = mmcv.imread(path)
    except Exception:  # noqa: BLE001  (mmcv raises for some corrupt files, returns None for others)
        img = None
    if img is None:
        raise SystemExit(f'cannot read image {path!r}: the file is corrupt or truncated')
    return img


def image_size(path):
    """``(h, w)`` from the image file's header (nothing decoded), or None if PIL cannot tell."""
    from PIL import Image
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # huge is what this is for
    try:
        with Image.open(path) as im:
            w, h = im.size
        return h, w
    except Exception:  # noqa: BLE001  (OpenCV may read what PIL cannot: no estimate then)
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def video_size(path):
    """``(h, w)`` of a video's frames, or None if OpenCV cannot tell."""
    import cv2
    cap = cv2.VideoCapture(path)
    try:
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()
    return (h, w) if h > 0 and w > 0 else None


def plan(items, batch_size):
    """The runs in order: ``('images', [paths])`` batches of consecutive images and
    ``('video', path)``."""
    steps, images = [], []
    for kind, path in items + [('end', None)]:
        if kind == 'image':
            images.append(path)
            continue
        steps += [('images', images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        images = []
        if kind == 'video':
            steps.append(('video', path))
    return steps


# ----------------------------------------------------------------------------- memory
def network_input_size(cfg, h, w):
    """``(h, w)`` the model sees for an ``h`` x ``w`` image: the test pipeline's ``Resize``
    (``scale`` with or without ``keep_ratio``, or ``scale_factor``), ``ResizeEdge``,
    ``CenterCrop`` and ``TopdownAffine``, as the transforms compute them (other transforms keep
    the size), padded to the preprocessor's ``pad_size_divisor``."""
    dataset = cfg.test_dataloader.dataset
    pipeline = dataset.get('pipeline') or (dataset.get('dataset') or {}).get('pipeline') or []
    for t in pipeline:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind == 'Resize' and t.get('scale') is not None:
            sw, sh = (t['scale'], ) * 2 if isinstance(t['scale'], int) else t['scale']
            if t.get('keep_ratio', False):
                f = min(max(sw, sh) / max(h, w), min(sw, sh) / min(h, w))
                h, w = int(h * f + 0.5), int(w * f + 0.5)
            else:
                h, w = sh, sw
        elif kind == 'Resize' and t.get('scale_factor') is not None:
            fw, fh = (t['scale_factor'], ) * 2 if isinstance(t['scale_factor'], (int, float)) \
                else t['scale_factor']
            h, w = int(h * fh + 0.5), int(w * fw + 0.5)
        elif kind == 'ResizeEdge':
            edge = t.get('edge', 'short')
            side = {'short': min(h, w), 'long': max(h, w), 'height': h, 'width': w}[edge]
            f = t['scale'] / side
            h, w = int(h * f + 0.5), int(w * f + 0.5)
        elif kind in ('CenterCrop', 'RandomCrop') and t.get('crop_size') is not None:
            c = t['crop_size']
            cw, ch = (c, c) if isinstance(c, int) else c
            h, w = min(h, ch), min(w, cw)
        elif kind == 'TopdownAffine':
            w, h = t['input_size']
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    div = pre.get('pad_size_divisor', 1) or 1
    return -(-h // div) * div, -(-w // div) * div


class InferenceMemory:
    """The memory a batch of inputs needs (see the module docstring), checked against what is
    available: host memory, and on a CUDA device its free memory for the model's part."""

    def __init__(self, cfg, model, device, draw):
        self.cfg, self.model, self.device, self.draw = cfg, model, str(device), draw
        self._network = None

    def network(self, h, w):
        """``((nh, nw), bytes)``: the network's input size for an h x w image and the bytes of
        the backbone and neck there (fitted once, at two small sizes)."""
        import torch

        from mmhiri.utils.memory import MemoryFit, fit_forward_memory
        if self._network is None:
            div = network_input_size(self.cfg, 1, 1)[0]  # a 1x1 input padded: the divisor
            probes = [(-(-s // div) * div, ) * 2 for s in (128, 256)]
            model, dtype = self.model, next(self.model.parameters()).dtype
            try:
                self._network = fit_forward_memory(lambda a, b: model.extract_feat(
                    torch.rand(1, 3, a, b, device=self.device, dtype=dtype)), probes)
            except Exception:  # noqa: BLE001  (a model that takes one size only: not counted)
                self._network = MemoryFit([(0., 0.)])
        nh, nw = network_input_size(self.cfg, h, w)
        return (nh, nw), self._network(nh * nw)

    def full_size_outputs(self, h, w):
        """``[(what, bytes)]`` the framework makes at the input's full size."""
        cfg, model = self.cfg, self.model
        test_cfg = cfg.model.get('test_cfg') or {}
        if cfg.default_scope == 'mmdet':
            roi_head = getattr(model, 'roi_head', None)
            if getattr(roi_head, 'with_mask', False) or hasattr(model, 'mask_head'):
                n = ((test_cfg.get('rcnn') or {}) if roi_head is not None else test_cfg).get(
                    'max_per_img', 100)
                return [(f'{n} masks at the image size', n * h * w)]
        if cfg.default_scope == 'mmseg':
            head = getattr(model, 'decode_head', None)
            c = getattr(head, 'out_channels', None) or getattr(head, 'num_classes', 1)
            return [(f'the scores of {c} classes at the image size', 4 * c * h * w),
                    ('the label map', 8 * h * w)]
        return []

    def terms(self, sizes):
        """``[(what, bytes, on the device, grows with the input)]`` for a batch of inputs of
        ``sizes`` (``(h, w)`` each)."""
        device = self.device.startswith('cuda')
        terms = [('the decoded image' + ('s' if len(sizes) > 1 else ''),
                  sum(3 * h * w for h, w in sizes), False, True)]
        if self.draw:
            terms.append(('the drawing', sum(6 * h * w for h, w in sizes), False, True))
        outputs = {}
        for h, w in sizes:
            for what, n in self.full_size_outputs(h, w):
                outputs[what] = outputs.get(what, 0) + n
        terms += [(what, n, device, True) for what, n in outputs.items()]
        big = max(sizes, key=lambda s: s[0] * s[1])
        (nh, nw), net = self.network(*big)
        bounded = network_input_size(self.cfg, 2 * big[0], 2 * big[1]) == (nh, nw)
        terms.append((f'the backbone and neck at {nw}x{nh}', net * len(sizes), device,
                      not bounded))
        return terms

    def check(self, what, sizes, available=None, device_free=None):
        """Stop with one line when the batch ``what`` (inputs of ``sizes``) needs more memory
        than is available (default: :func:`mmhiri.utils.memory.available_memory`, and
        :func:`~mmhiri.utils.memory.device_free_memory` on a CUDA device)."""
        from mmhiri.utils.memory import available_memory, device_free_memory, fits, gb
        terms = self.terms(sizes)
        for on_device in (False, True):
            here = [t for t in terms if t[2] == on_device]
            if not here:
                continue
            if on_device:
                room = device_free_memory(self.device) if device_free is None else device_free
                where = f'free memory on {self.device}'
            else:
                room = available_memory() if available is None else available
                where = 'memory'
            total = sum(t[1] for t in here)
            ok, scale = fits(total, room, sum(t[1] for t in here if not t[3]))
            if ok:
                continue
            h, w = max(sizes, key=lambda s: s[0] * s[1])
            hints = [f'downscale it to at most {int(w * scale)}x{int(h * scale)}'
                     if scale * min(h, w) >= 1 else 'it does not fit at any size']
            if any('masks' in t[0] for t in here):
                hints.append('keep fewer detections (--cfg-options '
                             'model.test_cfg.rcnn.max_per_img=N)')
            if self.draw and not on_device:
                hints.append('skip the drawing (--no-save-vis)')
            raise SystemExit(
                f'{what} needs at least {gb(total)} to run ('
                + ', '.join(f'{t[0]} {gb(t[1])}' for t in here)
                + f'); {gb(room)} of {where} is available: ' + ', or '.join(hints))


def check_memory(items, batch_size, memory):
    """Stop before anything runs when a batch of ``items`` does not fit in memory
    (:class:`InferenceMemory`)."""
    for kind, paths in plan(items, batch_size):
        if kind == 'video':
            size = video_size(paths)
            if size:
                memory.check(f'video {paths!r} ({size[1]}x{size[0]} frames, {batch_size} a '
                             'batch)', [size] * batch_size)
            continue
        sizes = [image_size(p) for p in paths]
        known = [s for s in sizes if s]
        if not known:
            continue
        h, w = max(known, key=lambda s: s[0] * s[1])
        what = f'image {paths[0]!r} ({w}x{h})' if len(paths) == 1 else \
            f'the batch of {len(paths)} images from {paths[0]!r} (largest {w}x{h})'
        memory.check(what, known)


# ----------------------------------------------------------------------------- weights
def check_weights(cfg, weights):
    """Stop with one message unless ``weights`` is a readable checkpoint whose tensors fit the
    model ``cfg`` builds (``mmhiri.apis.check_checkpoint_fits``, every tensor). Returns the
    checkpoint's ``meta`` dict."""
    from mmhiri.apis import build_in_scope, check_checkpoint_fits
    from mmhiri.utils.safe_load import load_without_copy
    if not osp.isfile(weights):
        raise SystemExit(f'checkpoint not found: {weights!r}')
    try:  # torch.load (mmhiri allows mmengine's classes): the meta, without a log line
        ckpt = load_without_copy(weights)
    except Exception as e:  # noqa: BLE001
        refused = [ln.strip() for ln in str(e).splitlines() if 'Unsupported global' in ln]
        if refused:
            raise SystemExit(f'cannot read checkpoint {weights!r}: torch\'s safe loading '
                             f'refuses it ({refused[0]})')
        raise SystemExit(f'cannot read checkpoint {weights!r}: not a PyTorch checkpoint, or '
                         f'corrupt or truncated ({type(e).__name__} in torch.load)')
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    del ckpt
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.default_scope == 'mmpretrain':  # as mmpretrain's get_model builds it
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor', None))
    check_checkpoint_fits(build_in_scope(cfg, model_cfg), weights, whole=True)
    return meta


def config_dataset_meta(cfg):
    """The class names (and palette) of the config's test dataset, or {} if it cannot say."""
    from mmhiri.apis import build_in_scope
    try:
        ds = copy.deepcopy(cfg.test_dataloader.dataset)
        ds['lazy_init'] = True
        return dict(build_in_scope(cfg, ds, registry='DATASETS').metainfo)
    except Exception:  # noqa: BLE001  (a dataset that needs its files: keep the default)
        return {}


# ----------------------------------------------------------------------------- inferencers
class Predictor:
    """The framework's Inferencer behind one call: image paths in, ``(prediction dict, RGB
    drawing or None)`` per image out."""

    def __init__(self, cfg, weights, device, ckpt_meta, score_thr, draw):
        self.scope = cfg.default_scope
        self.score_thr = score_thr
        self.draw = draw
        # without dataset_meta in the checkpoint, mmdet names COCO's classes and mmseg
        # Cityscapes'; the config's own test dataset knows better
        cfg_meta = {} if 'dataset_meta' in ckpt_meta or self.scope == 'mmpose' \
            else config_dataset_meta(cfg)
        from mmengine.registry import init_default_scope
        init_default_scope(self.scope)  # mmpretrain's Inferencer builds its pipeline in it
        with warnings.catch_warnings():
            if cfg_meta.get('classes'):
                warnings.filterwarnings('ignore', message='dataset_meta or class names')
            if self.scope == 'mmdet':
                from mmdet.apis import DetInferencer
                self.inferencer = DetInferencer(model=cfg, weights=weights, device=device,
                                                show_progress=False)
            elif self.scope == 'mmseg':
                from mmseg.apis import MMSegInferencer
                self.inferencer = MMSegInferencer(model=cfg, weights=weights, device=device)
                self.inferencer.show_progress = False
            elif self.scope == 'mmpose':
                from mmpose.apis import MMPoseInferencer
                self.inferencer = MMPoseInferencer(pose2d=cfg, pose2d_weights=weights,
                                                   device=device, det_model='whole_image')
            else:
                import mmpretrain.utils.progress
                from mmpretrain.apis import ImageClassificationInferencer
                mmpretrain.utils.progress.disable_progress_bar = True  # we count inputs
                self.inferencer = ImageClassificationInferencer(
                    model=cfg, pretrained=weights, device=device)
        if cfg_meta.get('classes'):
            print(f'{weights}: no dataset_meta in the checkpoint; class names from the '
                  "config's test dataset", file=sys.stderr)
            self._set_classes(cfg_meta)
        self.meta = self._names()

    @property
    def model(self):
        """The framework's model behind the Inferencer (MMPoseInferencer wraps another)."""
        return getattr(self.inferencer, 'inferencer', self.inferencer).model

    def _set_classes(self, cfg_meta):
        inf = self.inferencer
        classes = list(cfg_meta['classes'])
        if self.scope == 'mmpretrain':
            inf.classes = classes
            return
        meta = dict(inf.model.dataset_meta or {}, classes=classes)
        if cfg_meta.get('palette') is not None:
            meta['palette'] = cfg_meta['palette']
        elif self.scope == 'mmseg':  # its visualizer wants one colour a class
            import numpy as np
            meta['palette'] = np.random.RandomState(0).randint(0, 256, (len(classes), 3)).tolist()
        inf.model.dataset_meta = meta
        if self.scope == 'mmdet':
            inf.visualizer.dataset_meta = meta

    def _names(self):
        """What the JSON adds to every prediction so that it reads without the config."""
        inf = self.inferencer
        if self.scope == 'mmpretrain':
            return {'classes': list(inf.classes)} if inf.classes is not None else {}
        if self.scope == 'mmpose':
            meta = inf.inferencer.model.dataset_meta
            names = meta.get('keypoint_id2name') or {}
            return {'keypoint_names': [names[i] for i in sorted(names)]} if names else {}
        classes = (inf.model.dataset_meta or {}).get('classes')
        return {'classes': list(classes)} if classes is not None else {}

    def __call__(self, paths):
        inf, n = self.inferencer, len(paths)
        if self.scope == 'mmdet':
            res = inf(paths, batch_size=n, return_vis=self.draw, no_save_vis=True,
                      no_save_pred=True, pred_score_thr=self.score_thr)
            preds, vis = res['predictions'], res['visualization']
        elif self.scope == 'mmseg':
            res = inf(paths, batch_size=n, return_vis=self.draw)
            preds, vis = res['predictions'], res['visualization']
            if n == 1:  # MMSegInferencer unwraps a single result
                preds, vis = [preds], [vis] if self.draw else []
            preds = [{'sem_seg': p} for p in preds]
        elif self.scope == 'mmpose':
            preds, vis = [], []
            for res in inf(paths, return_vis=self.draw, kpt_thr=self.score_thr):
                preds += [{'instances': p} for p in res['predictions']]
                vis += res['visualization'] or []
        else:
            samples = inf(paths, return_datasamples=True, batch_size=n)
            vis = []
            if self.draw:  # its visualize() returns the drawings only when it also saves them
                with tempfile.TemporaryDirectory() as tmp:
                    vis = inf.visualize(paths, samples, show_dir=tmp)
            preds = inf.postprocess(samples, None)
        return list(zip(preds, vis if self.draw else [None] * n))

    def summary(self, pred):
        if self.scope == 'mmdet':
            return f'{sum(s >= self.score_thr for s in pred["scores"])} object(s) with score ' \
                   f'>= {self.score_thr}'
        if self.scope == 'mmseg':
            import numpy as np
            names = self.meta.get('classes') or []
            found = [names[i] if i < len(names) else str(i) for i in np.unique(pred['sem_seg'])]
            return f'classes present: {", ".join(found)}'
        if self.scope == 'mmpose':
            return f'{len(pred["instances"])} instance(s)'
        name = pred.get('pred_class', pred['pred_label'])
        return f'{name} ({pred["pred_score"]:.3f})'


# ----------------------------------------------------------------------------- outputs
def to_json(obj):
    import numpy as np
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class Writer:

    def __init__(self, out_dir, save_vis, save_pred, meta):
        self.vis_dir = osp.join(out_dir, 'vis') if save_vis else None
        self.pred_dir = osp.join(out_dir, 'preds') if save_pred else None
        for d in (self.vis_dir, self.pred_dir):
            if d:
                os.makedirs(d, exist_ok=True)
        self.meta = meta
        self.stems = set()

    def stem(self, path):
        """A stem no earlier input of this run has used."""
        base = stem = osp.splitext(osp.basename(path))[0]
        k = 0
        while stem in self.stems:
            k += 1
            stem = f'{base}_{k}'
        self.stems.add(stem)
        return stem

    def record(self, path, pred):
        return {'input': path, **self.meta, **to_json(pred)}

    def image(self, path, pred, vis):
        import mmcv
        stem, written = self.stem(path), []
        if self.vis_dir and vis is not None:
            ext = osp.splitext(path)[1].lower()
            out = osp.join(self.vis_dir, stem + (ext if ext in VIS_EXTENSIONS else '.png'))
            mmcv.imwrite(mmcv.rgb2bgr(vis), out)
            written.append(out)
        if self.pred_dir:
            out = osp.join(self.pred_dir, stem + '.json')
            with open(out, 'w') as f:
                json.dump(self.record(path, pred), f)
            written.append(out)
            if 'sem_seg' in pred:  # mmseg's own format too: the label map as an image
                import numpy as np
                seg = pred['sem_seg']
                seg = seg.astype(np.uint8 if seg.max(initial=0) < 256 else np.uint16)
                mmcv.imwrite(seg, osp.join(self.pred_dir, stem + '.png'))
        return written


def run_images(paths, predictor, writer, batch_size, done, total):
    for i in range(0, len(paths), batch_size):
        batch = paths[i:i + batch_size]
        for p in batch:
            read_image(p)  # a corrupt file stops here, named, not inside a pipeline
        for path, (pred, vis) in zip(batch, predictor(batch)):
            done += 1
            written = writer.image(path, pred, vis)
            print(f'[{done}/{total}] {path}: {predictor.summary(pred)}'
                  + (f' -> {", ".join(written)}' if written else ''), flush=True)
    return done


def run_video(path, predictor, writer, batch_size, done, total):
    """Frames go through the Inferencer as lossless temporary image files, as images do (the
    Inferencers draw on arrays in the colour order given, so BGR frames came out with red and
    blue swapped)."""
    import cv2
    import mmcv
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit(f'cannot read video {path!r}')
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps == fps and fps > 0 else 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    stem = writer.stem(path)
    vis_out = osp.join(writer.vis_dir, stem + '.mp4') if writer.vis_dir else None
    pred_out = osp.join(writer.pred_dir, stem + '.json') if writer.pred_dir else None
    video, preds_file, frame_id = None, None, 0
    if pred_out:
        preds_file = open(pred_out, 'w')
        head = writer.record(path, {})
        head['fps'] = fps
        preds_file.write(json.dumps(head)[:-1] + ', "frames": [')
    step = max(1, count // 10) if count else 50
    try:
        with tempfile.TemporaryDirectory() as tmp:
            while True:
                frames = []
                while len(frames) < batch_size:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(frame)
                if not frames:
                    break
                names = []
                for j, frame in enumerate(frames):
                    names.append(osp.join(tmp, f'{frame_id + j:08d}.bmp'))
                    cv2.imwrite(names[-1], frame)
                for name, (pred, vis) in zip(names, predictor(names)):
                    os.remove(name)
                    if vis_out and vis is not None:
                        if video is None:
                            video = cv2.VideoWriter(vis_out, cv2.VideoWriter_fourcc(*'mp4v'),
                                                    fps, (vis.shape[1], vis.shape[0]))
                            if not video.isOpened():
                                raise SystemExit(f'cannot write {vis_out!r}: this OpenCV has '
                                                 'no mp4v encoder (--no-save-vis skips it)')
                        video.write(mmcv.rgb2bgr(vis))
                    if preds_file:
                        preds_file.write((', ' if frame_id else '')
                                         + json.dumps({'frame_id': frame_id, **to_json(pred)}))
                    frame_id += 1
                    if frame_id % step == 0:
                        print(f'[{done + 1}/{total}] {path}: frame {frame_id}'
                              + (f'/{count}' if count else ''), flush=True)
    finally:
        cap.release()
        if video is not None:
            video.release()
        if preds_file:
            preds_file.write(f'], "num_frames": {frame_id}}}')
            preds_file.close()
    if frame_id == 0:
        raise SystemExit(f'cannot read video {path!r}: no frames')
    written = [p for p in (vis_out if video is not None else None, pred_out) if p]
    print(f'[{done + 1}/{total}] {path}: {frame_id} frames'
          + (f' -> {", ".join(written)}' if written else ''), flush=True)
    return done + 1


def run(args):
    import torch

    import mmhiri  # noqa: F401  (registers the backbones; safe loading of checkpoints)
    # the Inferencers' visualisers have no save_dir (this script saves), and a box reaching
    # past the image edge is drawn clipped: neither needs a warning per image
    warnings.filterwarnings('ignore', message='Failed to add <class')
    warnings.filterwarnings('ignore', message=r'Warning: The \w+ is out of bounds')
    if not args.config.endswith(('.py', '.json', '.yml', '.yaml')):
        raise SystemExit(f'the config comes last, after the inputs: got {args.config!r} '
                         '(tools/infer.py INPUT [INPUT ...] CONFIG --weights CKPT)')
    try:  # a missing config, or a default_scope that is none of the four frameworks
        cfg = load_config(args.config, cfg_options=args.cfg_options)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e))
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'--device {device}: no CUDA GPU is visible here; use --device cpu')
    items = collect_inputs(args.inputs)
    meta = check_weights(cfg, args.weights)
    predictor = Predictor(cfg, args.weights, device, meta, args.pred_score_thr,
                          draw=not args.no_save_vis)
    if args.deploy:
        from mmhiri.apis import deploy_model
        print(f'{deploy_model(predictor.model)} in deploy mode', flush=True)
    check_memory(items, args.batch_size,
                 InferenceMemory(cfg, predictor.model, device, draw=not args.no_save_vis))
    writer = Writer(args.out_dir, not args.no_save_vis, not args.no_save_pred, predictor.meta)
    print(f'{len(items)} input(s); {INFERENCERS[cfg.default_scope]} on {device}', flush=True)
    done = 0
    for kind, paths in plan(items, args.batch_size):  # consecutive images share batches
        if kind == 'video':
            done = run_video(paths, predictor, writer, args.batch_size, done, len(items))
        else:
            done = run_images(paths, predictor, writer, args.batch_size, done, len(items))
    if not (args.no_save_vis and args.no_save_pred):
        print(f'results in {args.out_dir}/ (vis/: drawings, preds/: JSON)', flush=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except SystemExit as e:
        if isinstance(e.code, str) and not e.code.startswith('error: '):
            raise SystemExit(f'error: {e.code}') from None
        raise


if __name__ == '__main__':
    main()
