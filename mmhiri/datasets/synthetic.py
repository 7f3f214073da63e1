"""Synthetic shape scenes written as real COCO / ADE20K / COCO-keypoint datasets (no download).

Every scene is a textured background with a few non-overlapping coloured shapes. The same
scenes are written three ways, each in the layout the frameworks' stock datasets read:

* :func:`generate_instances` - COCO instance segmentation (mmdet ``CocoDataset``):
  ``images/{train,val}/*.png`` and ``annotations/instances_{train,val}.json`` (boxes, polygon
  masks, areas).
* :func:`generate_semantic` - ADE20K-style semantic segmentation (mmseg ``ADE20KDataset``):
  ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png`` where
  0 is unused ("other", dropped by ``reduce_zero_label``), 1 is the background and 2.. are the
  shape classes.
* :func:`generate_keypoints` - COCO keypoints (mmpose ``CocoDataset`` with the meta information
  in ``configs/_base_/datasets/synthetic_quads.py``): rotated squares with their four corners and
  centre.

A fixed seed gives byte-identical files (numpy's PCG64 generator, OpenCV drawing, PNG/JPEG
encoding with fixed parameters). ``python -m mmhiri.datasets.synthetic ROOT`` writes all three.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: the shape classes of the instance and semantic variants
CLASSES = ('circle', 'square', 'triangle')
#: one base colour (RGB) per class; each shape jitters it, so colour and outline both carry the
#: class
_COLOURS = ((220, 60, 50), (60, 190, 70), (60, 90, 220))
#: keypoint names of the keypoint variant (image-axis-aligned naming: rotations stay < 35 deg)
KEYPOINTS = ('top_left', 'top_right', 'bottom_right', 'bottom_left', 'centre')
def _cv2():
    import cv2
    cv2.setNumThreads(1)
    return cv2


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random gradient with mild noise (uint8 RGB)."""
    base = rng.integers(90, 170, size=3)
    gy, gx = rng.uniform(-40, 40, size=(2, 3))
    yy = np.linspace(-0.5, 0.5, h)[:, None, None]
    xx = np.linspace(-0.5, 0.5, w)[None, :, None]
    img = base + gy * yy + gx * xx + rng.normal(0, 6, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (N x 2, float) of a shape of radius ``r`` centred at (cx, cy)."""
    if kind == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    elif kind == 'square':
        t = np.array([-0.75, -0.25, 0.25, 0.75]) * np.pi + angle  # TL, TR, BR, BL at angle 0
    elif kind == 'triangle':
        t = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi + angle
    else:
        raise ValueError(f'unknown shape {kind!r}; expected one of {CLASSES}')
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def make_scene(rng: np.random.Generator,
               size: Tuple[int, int] = (128, 128),
               max_shapes: int = 4,
               radius: Tuple[float, float] = (12, 30),
               kinds: Sequence[str] = CLASSES,
               max_angle: float = np.pi) -> Tuple[np.ndarray, List[Dict]]:
    """One scene: an RGB image and its shapes (``kind``, ``label``, ``polygon``, ``mask``).

    Shapes do not overlap (their bounding circles keep a 2-pixel gap) and stay inside the image.
    """
    cv2 = _cv2()
    h, w = size
    img = _background(rng, h, w)
    shapes: List[Dict] = []
    want = int(rng.integers(1, max_shapes + 1))
    for _ in range(50 * want):
        if len(shapes) == want:
            break
        r = float(rng.uniform(*radius))
        cx, cy = float(rng.uniform(r + 1, w - r - 1)), float(rng.uniform(r + 1, h - r - 1))
        if any(np.hypot(cx - s['centre'][0], cy - s['centre'][1]) < r + s['radius'] + 2
               for s in shapes):
            continue
        kind = kinds[int(rng.integers(len(kinds)))]
        label = CLASSES.index(kind) if kind in CLASSES else 0
        angle = float(rng.uniform(-max_angle, max_angle))
        poly = _polygon(kind, cx, cy, r, angle)
        colour = np.clip(np.array(_COLOURS[label]) + rng.integers(-25, 26, size=3), 0, 255)
        pts = np.round(poly).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [pts], 1)
        cv2.fillPoly(img, [pts], [int(c) for c in colour])
        shapes.append(dict(kind=kind, label=label, polygon=pts, mask=mask, centre=(cx, cy),
                           radius=r, angle=angle))
    return img, shapes


def _write_image(path: str, img_rgb: np.ndarray) -> None:
    cv2 = _cv2()
    os.makedirs(osp.dirname(path), exist_ok=True)
    bgr = np.ascontiguousarray(img_rgb[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.endswith('.jpg') else \
        [cv2.IMWRITE_PNG_COMPRESSION, 3]
    if not cv2.imwrite(path, bgr, params):
        raise OSError(f'could not write {path!r}')


def _write_json(path: str, obj: Dict) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))


_INFO = dict(description='mmhiri synthetic shapes', version='1.0', year=2026,
             contributor='mmhiri', url='', date_created='')


def _splits(num_train: int, num_val: int):
    return (('train', num_train, 0), ('val', num_val, 1))


def generate_instances(root: str, num_train: int = 200, num_val: int = 50,
                       size: Tuple[int, int] = (128, 128), seed: int = 0,
                       max_shapes: int = 4) -> Dict[str, str]:
    """Write a COCO instance-segmentation dataset under ``root``; return the annotation paths.

    Categories are :data:`CLASSES` with ids 1..3; masks are the drawn polygons.
    """
    paths = {}
    for split, n, offset in _splits(num_train, num_val):
        rng = np.random.default_rng([seed, offset])
        images, anns = [], []
        for i in range(n):
            img, shapes = make_scene(rng, size, max_shapes)
            name = f'{i:06d}.png'
            _write_image(osp.join(root, 'images', split, name), img)
            images.append(dict(id=i + 1, file_name=name, height=size[0], width=size[1]))
            for s in shapes:
                ys, xs = np.nonzero(s['mask'])
                x0, y0 = int(xs.min()), int(ys.min())
                anns.append(dict(
                    id=len(anns) + 1, image_id=i + 1, category_id=s['label'] + 1, iscrowd=0,
                    bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    area=int(s['mask'].sum()),
                    segmentation=[[float(v) for v in s['polygon'].reshape(-1)]]))
        ann_path = osp.join(root, 'annotations', f'instances_{split}.json')
        _write_json(ann_path, dict(
            info=_INFO, licenses=[], images=images, annotations=anns,
            categories=[dict(id=k + 1, name=c, supercategory='shape')
                        for k, c in enumerate(CLASSES)]))
        paths[split] = ann_path
    return paths


#: classes of the semantic variant after ``reduce_zero_label`` (label 0 of the PNGs is unused)
SEMANTIC_CLASSES = ('background', ) + CLASSES


def generate_semantic(root: str, num_train: int = 200, num_val: int = 50,
                      size: Tuple[int, int] = (128, 128), seed: int = 0,
                      max_shapes: int = 4) -> None:
    """Write an ADE20K-style semantic segmentation dataset under ``root``.

    PNG labels: 1 = background, 2.. = :data:`CLASSES`; with ``reduce_zero_label=True`` these
    become 0.. = :data:`SEMANTIC_CLASSES`.
    """
    for split, n, offset in (('training', num_train, 0), ('validation', num_val, 1)):
        rng = np.random.default_rng([seed, offset])
        for i in range(n):
            img, shapes = make_scene(rng, size, max_shapes)
            seg = np.ones(size, np.uint8)
            for s in shapes:
                seg[s['mask'] > 0] = s['label'] + 2
            _write_image(osp.join(root, 'images', split, f'{i:06d}.jpg'), img)
            path = osp.join(root, 'annotations', split, f'{i:06d}.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            if not _cv2().imwrite(path, seg, [_cv2().IMWRITE_PNG_COMPRESSION, 3]):
                raise OSError(f'could not write {path!r}')


def generate_keypoints(root: str, num_train: int = 200, num_val: int = 50,
                       size: Tuple[int, int] = (128, 128), seed: int = 0,
                       max_shapes: int = 3) -> Dict[str, str]:
    """Write a COCO-keypoint dataset of rotated squares (corners + centre) under ``root``.

    One category (``quad``); keypoints follow :data:`KEYPOINTS`, all visible (v=2). Read it with
    mmpose's ``CocoDataset`` and
    ``metainfo=dict(from_file='configs/_base_/datasets/synthetic_quads.py')``.
    """
    paths = {}
    for split, n, offset in _splits(num_train, num_val):
        rng = np.random.default_rng([seed, offset + 10])
        images, anns = [], []
        for i in range(n):
            img, shapes = make_scene(rng, size, max_shapes, radius=(16, 34), kinds=('square', ),
                                     max_angle=np.pi / 5.2)
            name = f'{i:06d}.png'
            _write_image(osp.join(root, 'images', split, name), img)
            images.append(dict(id=i + 1, file_name=name, height=size[0], width=size[1]))
            for s in shapes:
                poly = _polygon('square', *s['centre'], s['radius'], s['angle'])
                kpts = np.concatenate([poly, np.array([s['centre']])])
                ys, xs = np.nonzero(s['mask'])
                x0, y0 = int(xs.min()), int(ys.min())
                anns.append(dict(
                    id=len(anns) + 1, image_id=i + 1, category_id=1, iscrowd=0,
                    bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    area=int(s['mask'].sum()), num_keypoints=len(KEYPOINTS),
                    keypoints=[v for x, y in kpts for v in (round(float(x), 2),
                                                            round(float(y), 2), 2)]))
        ann_path = osp.join(root, 'annotations', f'keypoints_{split}.json')
        _write_json(ann_path, dict(
            info=_INFO, licenses=[], images=images, annotations=anns,
            categories=[dict(id=1, name='quad', supercategory='shape',
                             keypoints=list(KEYPOINTS),
                             skeleton=[[1, 2], [2, 3], [3, 4], [4, 1]])]))
        paths[split] = ann_path
    return paths


def generate_all(root: str, num_train: int = 200, num_val: int = 50,
                 size: Tuple[int, int] = (128, 128), seed: int = 0,
                 only: Optional[Sequence[str]] = None) -> None:
    """Write the three variants under ``root/{instances,semantic,keypoints}``."""
    only = only or ('instances', 'semantic', 'keypoints')
    fns = dict(instances=generate_instances, semantic=generate_semantic,
               keypoints=generate_keypoints)
    for name in only:
        if name not in fns:
            raise ValueError(f'unknown variant {name!r}; expected one of {tuple(fns)}')
        fns[name](osp.join(root, name), num_train, num_val, size, seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write the synthetic shape datasets.')
    parser.add_argument('root', help='output folder (e.g. data/synthetic)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('H', 'W'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', nargs='+', choices=['instances', 'semantic', 'keypoints'])
    args = parser.parse_args(argv)
    generate_all(args.root, args.num_train, args.num_val, tuple(args.size), args.seed, args.only)
    print(f'wrote {args.only or "all variants"} to {args.root}')


if __name__ == '__main__':
    main()
