"""Evaluate a checkpoint of any mmhiri config (mmdet, mmseg, mmpose or mmpretrain).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--deploy]
        [--backend pytorch|onnxruntime|openvino [--precision fp32|bf16]] [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from mmhiri.apis import build_runner, load_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test a model (mmdet/mmseg/mmpose/mmpretrain)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--metrics-out', help='also write the final metrics to this JSON file')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision inference (fp16 on a GPU, bf16 on CPU)')
    parser.add_argument('--deploy', action='store_true',
                        help="run the backbone in deploy mode (switch_to_deploy: BatchNorms "
                        "folded, channels-last, oneDNN on CPU)")
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime', 'openvino'],
                        default='pytorch',
                        help='run the backbone and neck in this engine (CPU; exported to ONNX '
                        'after the checkpoint loads), the heads in PyTorch')
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                        help='engine precision (bf16: OpenVINO only)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, cfg_options=args.cfg_options)
    runner = build_runner(
        cfg, config_path=args.config, work_dir=args.work_dir, load_from=args.checkpoint,
        amp=args.amp, launcher=args.launcher, dump=args.out, for_test=True, deploy=args.deploy,
        backend=args.backend, precision=args.precision)
    from mmhiri.datasets.checks import DataError
    try:
        metrics = runner.test()
    except DataError as e:
        raise SystemExit(f'error: {e.first_line()}') from None
    from mmengine.dist import is_main_process

    from mmhiri.utils.distributed import finish_distributed
    if args.metrics_out and is_main_process():  # every rank holds the metrics; one writes
        import json
        os.makedirs(osp.dirname(osp.abspath(args.metrics_out)), exist_ok=True)
        with open(args.metrics_out, 'w') as f:
            json.dump({k: float(v) if isinstance(v, (int, float)) else str(v)
                       for k, v in metrics.items()}, f, indent=1)
    finish_distributed()


if __name__ == '__main__':
    main()
