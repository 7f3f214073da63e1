"""Train any mmhiri config (mmdet, mmseg, mmpose or mmpretrain) with the mmengine Runner.

    python tools/train.py configs/mask_rcnn_hiri_s_1x.py [--work-dir DIR]
        [--resume [CKPT|DIR] [--allow-fresh-start]] [--drop-unknown-categories]
        [--amp [--amp-dtype fp16|bf16]] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from mmhiri.apis import build_runner, load_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model (mmdet/mmseg/mmpose/mmpretrain)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or the newest complete one in the given '
        'folder; without a path, in the work dir. Stops if there is nothing to resume')
    parser.add_argument('--allow-fresh-start', action='store_true',
                        help='with --resume: start a new run when there is nothing to resume')
    parser.add_argument('--drop-unknown-categories', action='store_true',
                        help='train without the annotations whose category_id the annotation '
                        "file's categories do not declare (default: stop, naming them)")
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in a work dir that already holds checkpoints '
                        '(they are overwritten as the new run saves)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision training: fp16 with dynamic loss scaling on a GPU '
                        '(mmengine AmpOptimWrapper), bf16 autocast on CPU')
    parser.add_argument('--amp-dtype', choices=['fp16', 'bf16'],
                        help='mixed precision dtype (implies --amp; default: fp16 on a GPU, '
                        'bf16 on CPU, where fp16 is refused)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, e.g. train_dataloader.batch_size=2')
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
        cfg, config_path=args.config, work_dir=args.work_dir, resume=args.resume,
        amp=args.amp, amp_dtype=args.amp_dtype, auto_scale_lr=args.auto_scale_lr,
        no_validate=args.no_validate,
        launcher=args.launcher, overwrite=args.overwrite,
        allow_fresh_start=args.allow_fresh_start,
        drop_unknown_categories=args.drop_unknown_categories)
    from mmhiri.models.backbones.base import NonFiniteInputError
    from mmhiri.utils.distributed import finish_distributed
    from mmhiri.utils.exact_resume import DataError
    try:
        runner.train()
    except DataError as e:
        raise SystemExit(f'error: {e.first_line()}') from None
    except NonFiniteInputError as e:
        raise SystemExit(f'error: {e}') from None
    finish_distributed()


if __name__ == '__main__':
    main()
