"""A deterministic synthetic image-classification set, in the folder layout of mmpretrain's
``CustomDataset`` (one sub-folder per class)::

    root/train/<k>_<name>/<name>_0000.png ...     (k = the label, so that the folders sort
    root/val/<k>_<name>/<name>_0000.png ...        in label order, as CustomDataset numbers them)

Each class is one shape in one colour (red disc, green square, blue triangle, ...) drawn at a
random position and size over a dim noisy background, so a tiny model learns it in a few dozen
iterations. Pictures are drawn with numpy only from ``numpy.random.default_rng(seed)`` and
written as PNG, so the files are byte-identical for a given seed and arguments.

    >>> from mmhiri.datasets.classification import generate_classification
    >>> info = generate_classification('data/shapes', num_classes=4, num_train=16, num_val=8)
    >>> info['classes']
    ('0_disc', '1_square', '2_triangle', '3_cross')

Read it with ``dict(type='CustomDataset', data_root='data/shapes', data_prefix='train')``.
Needs numpy and Pillow only; ``import mmhiri`` does not import this module.
"""
import os
import os.path as osp
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image


def _disc(yy, xx, cy, cx, r):
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _square(yy, xx, cy, cx, r):
    return (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8)


def _triangle(yy, xx, cy, cx, r):
    return (yy <= cy + r * 0.8) & (abs(xx - cx) <= (yy - (cy - r)) * 0.6)


def _cross(yy, xx, cy, cx, r):
    return (((abs(yy - cy) <= r * 0.3) & (abs(xx - cx) <= r))
            | ((abs(xx - cx) <= r * 0.3) & (abs(yy - cy) <= r)))


def _ring(yy, xx, cy, cx, r):
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (d2 <= r ** 2) & (d2 >= (r * 0.55) ** 2)


def _diamond(yy, xx, cy, cx, r):
    return abs(yy - cy) + abs(xx - cx) <= r


def _hbar(yy, xx, cy, cx, r):
    return (abs(yy - cy) <= r * 0.35) & (abs(xx - cx) <= r)


def _vbar(yy, xx, cy, cx, r):
    return (abs(xx - cx) <= r * 0.35) & (abs(yy - cy) <= r)


# (class name, shape, RGB colour): every class differs in both shape and colour
CLASSES: Tuple[Tuple[str, Callable, Tuple[int, int, int]], ...] = (
    ('disc', _disc, (230, 40, 40)),
    ('square', _square, (40, 200, 60)),
    ('triangle', _triangle, (50, 80, 235)),
    ('cross', _cross, (235, 210, 40)),
    ('ring', _ring, (200, 50, 220)),
    ('diamond', _diamond, (40, 210, 220)),
    ('hbar', _hbar, (245, 140, 30)),
    ('vbar', _vbar, (245, 245, 245)),
)


def draw_sample(rng: np.random.Generator, label: int, size: int = 32) -> np.ndarray:
    """One ``size x size`` RGB uint8 picture of class ``label``."""
    _, shape, colour = CLASSES[label]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = rng.uniform(0.22, 0.35) * size
    cy, cx = rng.uniform(r, size - r, size=2)
    img = rng.normal(40., 15., size=(size, size, 3))
    tint = rng.uniform(0.8, 1.0)
    img[shape(yy, xx, cy, cx, r)] = np.array(colour, dtype=np.float64) * tint
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def generate_classification(root: str,
                            num_classes: int = 4,
                            num_train: int = 32,
                            num_val: int = 8,
                            size: int = 32,
                            seed: int = 0) -> Dict:
    """Write ``num_train`` + ``num_val`` pictures per class under ``root/{train,val}/<k>_<name>``.

    Args:
        root (str): Output folder (created; existing files of the same names are replaced).
        num_classes (int): 1 to 8 classes. Defaults to 4.
        num_train (int): Training pictures per class. Defaults to 32.
        num_val (int): Validation pictures per class. Defaults to 8.
        size (int): Picture side in pixels (at least 8). Defaults to 32.
        seed (int): Seed of ``numpy.random.default_rng``. Defaults to 0.

    Returns:
        dict: ``root``, ``classes`` (the class folder names, in label order), ``train``, ``val``
        (the two split folders) and ``num_train``, ``num_val`` (pictures per class).
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f'num_classes must be 1..{len(CLASSES)}, got {num_classes}')
    if size < 8 or num_train < 0 or num_val < 0:
        raise ValueError('need size >= 8 and non-negative picture counts')
    rng = np.random.default_rng(seed)
    classes = tuple(f'{k}_{name}' for k, (name, _, _) in enumerate(CLASSES[:num_classes]))
    for split, count in (('train', num_train), ('val', num_val)):
        for label, folder_name in enumerate(classes):
            name = CLASSES[label][0]
            folder = osp.join(root, split, folder_name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                img = draw_sample(rng, label, size)
                Image.fromarray(img).save(
                    osp.join(folder, f'{name}_{i:04d}.png'), format='PNG', optimize=False,
                    compress_level=6)
    return dict(root=root, classes=classes, train=osp.join(root, 'train'),
                val=osp.join(root, 'val'), num_train=num_train, num_val=num_val)
