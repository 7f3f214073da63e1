"""Fold a trained checkpoint of any config here into its inference form (BatchNorms folded into
convolutions, the CFFN skip into its depth-wise conv): what ``switch_to_deploy()`` does in
memory, saved as a checkpoint that loads into the same config with
``model.backbone.deploy=True``.

    python tools/model_converters/reparameterize_model.py CONFIG CHECKPOINT OUT
    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True

The whole model is kept (neck, heads, any EMA teacher unchanged); only the backbone's keys
change. A folded backbone cannot train; test or infer with it.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a checkpoint of that config (tools/train.py)')
    parser.add_argument('out', help='where to write the folded checkpoint')
    return parser.parse_args(argv)


def reparameterize(model):
    """Fold ``model``'s backbone in place (eval mode) and return its state_dict."""
    from mmhiri.apis import deployable_backbone
    model.eval()
    deployable_backbone(model).switch_to_deploy()
    return model.state_dict()


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmhiri.apis import build_in_scope, check_checkpoint_fits, load_config
    from mmhiri.models.converters import unwrap_checkpoint
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint!r}')
    cfg = load_config(args.config)
    backbone = cfg.model.get('backbone') or {}
    if backbone.get('deploy'):
        raise SystemExit(f'{args.config} already builds the folded backbone '
                         '(model.backbone.deploy=True): its checkpoints are folded')
    if isinstance(backbone.get('init_cfg'), dict):
        backbone.init_cfg = None  # the checkpoint replaces the pretrained weights
    model = build_in_scope(cfg, cfg.model)
    check_checkpoint_fits(model, args.checkpoint, whole=True)
    ckpt = CheckpointLoader.load_checkpoint(args.checkpoint, map_location='cpu')
    state, _ = unwrap_checkpoint(ckpt, prefer_ema=False)
    model.load_state_dict(state, strict=True)
    folded = reparameterize(model)
    meta = dict(ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    meta['mmhiri_folded'] = dict(config=args.config, source=args.checkpoint)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save({'state_dict': folded, 'meta': meta}, args.out)
    print(f'folded {type(model.backbone).__name__} of {args.checkpoint} into {args.out} '
          f'({len(state)} -> {len(folded)} tensors); test it with --cfg-options '
          'model.backbone.deploy=True')


if __name__ == '__main__':
    main()
