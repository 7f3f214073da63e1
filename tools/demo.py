"""Smoke demo of the real stack: every mmhiri backbone inside a stock mmdet Mask R-CNN
(FPN neck, RPN, RoI heads with mmcv's compiled RoIAlign and NMS), built from mmdet's own
registry, running inference on a synthetic image; prints the feature-pyramid shapes and the
detections. (The full demo - training on an embedded dataset - replaces this with
``make demo`` once the demo dataset exists.)

    python tools/demo.py [--size H W]
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

BACKBONES = [
    # (name, backbone config, input scale factor): HIRI-ViT takes 2x input and uses stages 2-5
    ('HIRI-ViT-S', dict(type='mmhiri.HIRIViT', arch='s', out_indices=(1, 2, 3, 4)), 2),
    ('ViTAEv2-S', dict(type='mmhiri.ViTAEv2', arch='s', out_indices=(0, 1, 2, 3)), 1),
    ('ViTAE-T', dict(type='mmhiri.ViTAE', arch='t', out_indices=(0, 1, 2)), 1),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=(256, 320), metavar=('H', 'W'))
    args = parser.parse_args()

    import torch
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmdet
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    base = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_',
                                    'models', 'mask-rcnn_r50_fpn.py'))
    torch.manual_seed(0)
    h, w = args.size
    print(f'mmhiri smoke demo: stock mmdet Mask R-CNN, synthetic {h}x{w} image, CPU')
    for name, backbone, scale in BACKBONES:
        t0 = time.time()
        model_cfg = base.model.copy()
        model_cfg.backbone = backbone
        built = MODELS.build(dict(backbone))
        model_cfg.neck = dict(type='FPN', in_channels=built.out_channels, out_channels=256,
                              num_outs=5)
        model = MODELS.build(model_cfg).eval()
        image = torch.rand(1, 3, h * scale, w * scale) * 255
        sample = DetDataSample(metainfo=dict(img_shape=(h * scale, w * scale),
                                             ori_shape=(h * scale, w * scale),
                                             scale_factor=(1., 1.), batch_input_shape=(h * scale, w * scale)))
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]))
            feats = model.backbone(data['inputs'])
            pyramid = model.neck(feats)
            result = model(**data, mode='predict')[0]
        print(f'\n{name}: input {tuple(data["inputs"].shape)}')
        print('  backbone: ' + ', '.join(f'{tuple(f.shape[1:])}/s{s}'
                                         for f, s in zip(feats, built.out_strides)))
        print('  FPN:      ' + ', '.join(str(tuple(p.shape[1:])) for p in pyramid))
        print(f'  predict:  {len(result.pred_instances)} instances (untrained weights), '
              f'masks {tuple(result.pred_instances.masks.shape)}; {time.time() - t0:.1f} s')
    print('\nok')


if __name__ == '__main__':
    main()
