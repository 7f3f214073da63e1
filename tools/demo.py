"""The main job on embedded data: train and evaluate Mask R-CNN with HIRI-ViT, on CPU, in minutes.

    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data/synthetic] [--epochs N]

1. writes the synthetic COCO-format shapes dataset (mmhiri/datasets/synthetic.py) under
   ``--data-root`` if it is not there yet;
2. trains ``configs/demo/mask_rcnn_hiri_demo.py`` (configs/mask_rcnn_hiri_s_1x.py with the data,
   image scale, widths and schedule changed) with ``tools/train.py``, printing its progress;
3. evaluates the final checkpoint on the held-out images with ``tools/test.py`` (the real COCO
   bbox and segm metric);
4. draws the predictions on held-out images into ``<work-dir>/predictions.png``;
and prints the bbox / segm mAP, the time taken and where the picture is.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_hiri_demo.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'synthetic'))
    parser.add_argument('--epochs', type=int, help='override the config\'s epochs')
    parser.add_argument('--num-train', type=int, default=200, help='scenes to generate')
    parser.add_argument('--num-val', type=int, default=50, help='held-out scenes')
    parser.add_argument('--show', type=int, default=8, help='held-out images in the picture')
    return parser.parse_args()


def run(step, args):
    print(f'\n== {step}: {" ".join(args)}', flush=True)
    # One intra-op thread unless the user chose otherwise: on the shared 2-vCPU machines this was
    # measured on, two OpenMP threads made a training step 1-13x slower (1.1-13.4 s against
    # 0.9-1.6 s), as a waiting thread spins whenever the other vCPU is taken away; the data
    # loader worker uses the second core.
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'demo: {step} failed (exit {proc.returncode}); see the output above')


def draw_predictions(cfg_path, ckpt, data_root, out_path, num, cfg_options):
    """Run the trained detector on the first ``num`` held-out images; save a labelled grid."""
    import cv2
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    import mmhiri  # noqa: F401
    from mmdet.apis import inference_detector
    if 'OMP_NUM_THREADS' not in os.environ:
        torch.set_num_threads(1)  # as for training (see run())
    from mmdet.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(cfg_options)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu')
    model.cfg = cfg
    model.dataset_meta = dict(cfg.metainfo)
    model.eval()
    classes, palette = cfg.metainfo['classes'], cfg.metainfo['palette']
    with open(osp.join(data_root, 'annotations', 'instances_val.json')) as f:
        images = json.load(f)['images'][:num]
    tiles = []
    for info in images:
        img = cv2.imread(osp.join(data_root, 'images', 'val', info['file_name']))
        with torch.no_grad():
            pred = inference_detector(model, img).pred_instances
        keep = pred.scores > 0.5
        canvas = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        overlay = canvas.copy()
        for box, label, score, mask in zip(pred.bboxes[keep], pred.labels[keep],
                                           pred.scores[keep], pred.masks[keep]):
            colour = tuple(int(c) for c in palette[int(label)][::-1])  # RGB -> BGR
            m = cv2.resize(mask.numpy().astype(np.uint8), canvas.shape[1::-1],
                           interpolation=cv2.INTER_NEAREST).astype(bool)
            overlay[m] = (0.5 * overlay[m] + 0.5 * np.array((255, 255, 255))).astype(np.uint8)
            x0, y0, x1, y1 = (int(v * 3) for v in box.tolist())
            cv2.rectangle(canvas, (x0, y0), (x1, y1), (255, 255, 255), 2)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 1)
            cv2.putText(canvas, f'{classes[int(label)]} {float(score):.2f}', (x0, max(10, y0 - 3)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.addWeighted(canvas, 0.6, overlay, 0.4, 0))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    os.makedirs(osp.dirname(out_path) or '.', exist_ok=True)
    cv2.imwrite(out_path, np.concatenate(rows, axis=0))


def main():
    args = parse_args()
    start = time.time()
    inst_root = osp.join(args.data_root, 'instances')
    if not osp.isfile(osp.join(inst_root, 'annotations', 'instances_val.json')):
        print(f'== writing the synthetic dataset to {inst_root}', flush=True)
        from mmhiri.datasets.synthetic import generate_instances
        generate_instances(inst_root, args.num_train, args.num_val)
    else:
        print(f'== using the synthetic dataset in {inst_root}', flush=True)
    inst_root = inst_root.rstrip('/') + '/'
    options = [f'train_dataloader.dataset.data_root={inst_root}',
               f'val_dataloader.dataset.data_root={inst_root}',
               f'test_dataloader.dataset.data_root={inst_root}',
               f'val_evaluator.ann_file={inst_root}annotations/instances_val.json',
               f'test_evaluator.ann_file={inst_root}annotations/instances_val.json']
    if args.epochs:
        options.append(f'train_cfg.max_epochs={args.epochs}')
    train_start = time.time()
    # --overwrite: the demo trains afresh each time it runs
    run('train', ['tools/train.py', CONFIG, '--work-dir', args.work_dir, '--no-validate',
                  '--overwrite', '--cfg-options', *options])
    train_time = time.time() - train_start
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    metrics_file = osp.join(args.work_dir, 'test_metrics.json')
    run('evaluate', ['tools/test.py', CONFIG, ckpt, '--work-dir', osp.join(args.work_dir, 'test'),
                     '--metrics-out', metrics_file, '--cfg-options', *options])
    with open(metrics_file) as f:
        metrics = json.load(f)
    picture = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(CONFIG, ckpt, inst_root, picture, args.show,
                     {k: v for k, v in (o.split('=', 1) for o in options[:3])})
    total = time.time() - start
    print('\n== demo finished')
    print(f'bbox mAP: {metrics["coco/bbox_mAP"]:.3f}   segm mAP: {metrics["coco/segm_mAP"]:.3f}'
          f'   (held-out images, COCO metric)')
    print(f'time: {total / 60:.1f} min in all ({train_time / 60:.1f} min training)')
    print(f'picture of predictions (score > 0.5): {picture}')


if __name__ == '__main__':
    main()
