"""Convert an official ViTAE / ViTAEv2 checkpoint to an mmhiri (mmengine) checkpoint.

    python tools/model_converters/vitae2mmhiri.py SRC DST [--with-head] [--no-ema]
        [--check ViTAEv2:s]

SRC: any official checkpoint (raw state_dict, or a dict with 'state_dict_ema' / 'state_dict' /
'model'; 'module.' prefixes; classification or detection variant). DST: {'state_dict', 'meta'}
whose keys load with strict=True into mmhiri's ViTAE / ViTAEv2 (no prefix). With --with-head
the keys are those of mmpretrain's ImageClassifier (backbone.*, head.fc.*). Converting a
converted file is a no-op. Dropped keys are listed; unknown keys stop the conversion.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmhiri.models.converters import (ConversionError, check_load, convert_vitae,  # noqa: E402
                                      match_arch, summarize, unwrap_checkpoint)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output mmengine checkpoint')
    parser.add_argument('--with-head', action='store_true',
                        help="keep the classifier as mmpretrain's LinearClsHead (head.fc.*) and "
                        'prefix the backbone with backbone.')
    parser.add_argument('--no-ema', action='store_true',
                        help="take 'state_dict' rather than 'state_dict_ema' when both exist")
    parser.add_argument('--check', metavar='TYPE:ARCH',
                        help='require the result to load strictly into this backbone, e.g. '
                        'ViTAEv2:s or ViTAE:t (default: compare with every official size and '
                        'report the differences by name)')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='unpickle SRC without weights_only (only for files you trust)')
    return parser.parse_args(argv)


def load_checkpoint_file(path, unsafe=False):
    """torch.load with safe (weights_only) unpickling. Official timm checkpoints also carry the
    training ``argparse.Namespace`` and numpy scalars; those classes are allowed too. Anything
    else needs ``--unsafe-load`` (only for files you trust)."""
    import argparse as _argparse
    import pickle

    from mmhiri import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    if unsafe:
        return torch.load(path, map_location='cpu', weights_only=False)
    try:
        with torch.serialization.safe_globals([_argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        sys.exit(f'{path}: safe loading refused an object in the file ({str(e).splitlines()[0]}). '
                 'If you trust the file, re-run with --unsafe-load.')


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.src):
        sys.exit(f'checkpoint not found: {args.src}')
    ckpt = load_checkpoint_file(args.src, args.unsafe_load)
    try:
        state_dict, source = unwrap_checkpoint(ckpt, prefer_ema=not args.no_ema)
        converted, dropped = convert_vitae(state_dict, with_head=args.with_head)
        backbone = {k[len('backbone.'):] if k.startswith('backbone.') else k: v
                    for k, v in converted.items() if not k.startswith('head.')}
        if args.check:
            from mmhiri.models import ViTAE, ViTAEv2
            cls_name, _, arch = args.check.partition(':')
            classes = {'ViTAE': ViTAE, 'ViTAEv2': ViTAEv2}
            if cls_name not in classes or not arch:
                sys.exit(f'--check expects ViTAE:ARCH or ViTAEv2:ARCH, got {args.check!r}')
            with torch.device('meta'):
                model = classes[cls_name](arch)
            check_load(model, backbone)
            match = args.check
        else:
            name, missing, unexpected, shapes = match_arch(backbone)
            match = name if not (missing or unexpected or shapes) else None
    except (ConversionError, ValueError) as e:
        sys.exit(f'{args.src}: {e}')
    torch.save({'state_dict': converted,
                'meta': dict(converted_from=osp.basename(args.src), source_key=source,
                             dropped_keys=dropped)}, args.dst)
    print(f'read {source} of {args.src}: {len(converted)} tensors -> {args.dst}')
    if dropped:
        print(f'dropped {len(dropped)} keys: {", ".join(dropped)}')
    if match:
        print(f'keys and shapes match {match} exactly (loads with strict=True)')
    else:
        print(f'WARNING: matches no official size exactly; closest {name}: missing '
              f'{summarize(missing)}, unexpected {summarize(unexpected)}, shape mismatches '
              f'{summarize(shapes)}. Pass --check TYPE:ARCH to require a given size.')


if __name__ == '__main__':
    main()
