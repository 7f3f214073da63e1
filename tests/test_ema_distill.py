"""HIRI-ViT's EMA distillation (§4.5, Eqs. 4-5): hand-computed targets, the EMA teacher, and a
short real mmengine Runner job with save and resume."""
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import TINY_HIRI, TINY_V2

pytest.importorskip('mmpretrain')

K = 3  # classes in the hand-computed examples

# The teacher's per-location class probabilities (2x2 grid, 3 classes) of the two images:
# P[image][row][col] = probability vector
P_A = [[[1., 0., 0.], [.5, .5, 0.]],
       [[0., 0., 1.], [.5, 0., .5]]]
P_B = [[[0., 1., 0.], [0., 0., 1.]],
       [[.25, .75, 0.], [0., .5, .5]]]


def prob_maps():
    """(N=2, K, 2, 2): image 0 has P_A, image 1 has P_B."""
    return torch.tensor([P_A, P_B]).permute(0, 3, 1, 2).contiguous()


def two_images(size=4):
    """Image 0 is all 1s, image 1 all 2s; labels 0 and 1."""
    x = torch.stack([torch.full((3, size, size), 1.), torch.full((3, size, size), 2.)])
    y = torch.tensor([[1., 0., 0.], [0., 1., 0.]])
    return x, y


def by_hand(alpha, y_tilde, y_hat):
    return [alpha * t + (1 - alpha) * h for t, h in zip(y_tilde, y_hat)]


# ------------------------------------------------------------------ hand-computed Eqs. 4-5
CUTMIX_BOX = (0, 2, 0, 2)  # (y1, y2, x1, x2): the top-left quadrant of a 4x4 image
# Each sample gets the other's top-left quadrant: index = [1, 0].
# M (1 = own image) is 0 on the top-left quadrant -> on the 2x2 map grid [[0, 1], [1, 1]];
# λ = 12/16 = 0.75.
# sample 0: x_a = image 0, x_b = image 1
#   ỹ = 0.75 [1,0,0] + 0.25 [0,1,0]                                   = [0.75, 0.25, 0]
#   P̃ = [[P_B(0,0), P_A(0,1)], [P_A(1,0), P_A(1,1)]]
#     = [[0,1,0], [.5,.5,0]], [[0,0,1], [.5,0,.5]]  ->  ŷ = [1/4, 1.5/4, 1.5/4]
# sample 1: x_a = image 1, x_b = image 0
#   ỹ = 0.75 [0,1,0] + 0.25 [1,0,0]                                   = [0.25, 0.75, 0]
#   P̃ = [[P_A(0,0), P_B(0,1)], [P_B(1,0), P_B(1,1)]]
#     = [[1,0,0], [0,0,1]], [[.25,.75,0], [0,.5,.5]]  ->  ŷ = [1.25/4, 1.25/4, 1.5/4]
CUTMIX_Y_TILDE = [[0.75, 0.25, 0.], [0.25, 0.75, 0.]]
CUTMIX_Y_HAT = [[0.25, 0.375, 0.375], [0.3125, 0.3125, 0.375]]
CUTMIX_Y_BAR = {  # ȳ = α ỹ + (1 - α) ŷ, worked out
    1.: CUTMIX_Y_TILDE,
    .5: [[0.5, 0.3125, 0.1875], [0.28125, 0.53125, 0.1875]],
    .25: [[0.375, 0.34375, 0.28125], [0.296875, 0.421875, 0.28125]],
    0.: CUTMIX_Y_HAT,
}

# Mixup with λ = 0.3, index = [1, 0]: M is the constant 0.3.
#   mean(P_A) = [0.5, 0.125, 0.375], mean(P_B) = [0.0625, 0.5625, 0.375]
# sample 0: ỹ = [0.3, 0.7, 0];  ŷ = 0.3 mean(P_A) + 0.7 mean(P_B) = [0.19375, 0.43125, 0.375]
# sample 1: ỹ = [0.7, 0.3, 0];  ŷ = 0.3 mean(P_B) + 0.7 mean(P_A) = [0.36875, 0.25625, 0.375]
MIXUP_LAM = 0.3
MIXUP_Y_TILDE = [[0.3, 0.7, 0.], [0.7, 0.3, 0.]]
MIXUP_Y_HAT = [[0.19375, 0.43125, 0.375], [0.36875, 0.25625, 0.375]]
MIXUP_Y_BAR = {
    1.: MIXUP_Y_TILDE,
    .5: [[0.246875, 0.565625, 0.1875], [0.534375, 0.278125, 0.1875]],
    .25: [[0.220312, 0.498438, 0.28125], [0.451562, 0.267188, 0.28125]],
    0.: MIXUP_Y_HAT,
}


def test_worked_examples_are_consistent():
    """The literal ȳ tables above are α ỹ + (1 - α) ŷ (guards against typos in them)."""
    for table, y_tilde, y_hat in ((CUTMIX_Y_BAR, CUTMIX_Y_TILDE, CUTMIX_Y_HAT),
                                  (MIXUP_Y_BAR, MIXUP_Y_TILDE, MIXUP_Y_HAT)):
        for alpha, y_bar in table.items():
            for row, t, h in zip(y_bar, y_tilde, y_hat):
                assert row == pytest.approx(by_hand(alpha, t, h), abs=1e-6)
                assert sum(row) == pytest.approx(1.)


@pytest.mark.parametrize('alpha', sorted(CUTMIX_Y_BAR))
def test_cutmix_target_by_hand(alpha):
    from mmhiri.engine import CutMixWithMask, ema_distill_target
    x, y = two_images()
    index = torch.tensor([1, 0])
    mixed, y_tilde, info = CutMixWithMask.apply(x, y, index, CUTMIX_BOX)
    # x̃ = M ⊙ x_a + (1 - M) ⊙ x_b: the top-left quadrant comes from the other image
    expected_x = torch.tensor([[[2., 2., 1., 1.], [2., 2., 1., 1.], [1.] * 4, [1.] * 4],
                               [[1., 1., 2., 2.], [1., 1., 2., 2.], [2.] * 4, [2.] * 4]])
    assert torch.equal(mixed, expected_x[:, None].expand(2, 3, 4, 4))
    assert torch.equal(x[:, 0], torch.stack([torch.ones(4, 4), torch.full((4, 4), 2.)]))
    assert info.lam == 0.75 and info.mask.mean().item() == 0.75
    torch.testing.assert_close(y_tilde, torch.tensor(CUTMIX_Y_TILDE))
    y_bar = ema_distill_target(y_tilde, prob_maps(), info, alpha)
    torch.testing.assert_close(y_bar, torch.tensor(CUTMIX_Y_BAR[alpha]), rtol=0, atol=1e-6)


@pytest.mark.parametrize('alpha', sorted(MIXUP_Y_BAR))
def test_mixup_target_by_hand(alpha):
    from mmhiri.engine import MixupWithMask, ema_distill_target
    x, y = two_images()
    mixed, y_tilde, info = MixupWithMask.apply(x, y, torch.tensor([1, 0]), MIXUP_LAM)
    # image 0: 0.3 * 1 + 0.7 * 2 = 1.7; image 1: 0.3 * 2 + 0.7 * 1 = 1.3
    torch.testing.assert_close(mixed[:, :, 0, 0], torch.tensor([[1.7] * 3, [1.3] * 3]))
    torch.testing.assert_close(y_tilde, torch.tensor(MIXUP_Y_TILDE))
    y_bar = ema_distill_target(y_tilde, prob_maps(), info, alpha)
    torch.testing.assert_close(y_bar, torch.tensor(MIXUP_Y_BAR[alpha]), rtol=0, atol=1e-6)


def test_mask_is_area_averaged_onto_the_map_grid():
    """A box that covers half of each top cell: M on the 2x2 grid is [[.5, .5], [1, 1]], so
    sample 0 gets ŷ = mean of [.5 P_A + .5 P_B, .5 P_A + .5 P_B, P_A, P_A] cells."""
    from mmhiri.engine import CutMixWithMask, ema_distill_target
    x, y = two_images()
    _, y_tilde, info = CutMixWithMask.apply(x, y, torch.tensor([1, 0]), (0, 1, 0, 4))
    assert info.lam == 0.75
    y_hat = ema_distill_target(y_tilde, prob_maps(), info, alpha=0.)
    # cells: (0,0) .5[1,0,0]+.5[0,1,0] = [.5,.5,0]; (0,1) .5[.5,.5,0]+.5[0,0,1] = [.25,.25,.5]
    #        (1,0) [0,0,1];  (1,1) [.5,0,.5]   -> mean = [1.25, .75, 2] / 4
    torch.testing.assert_close(y_hat[0], torch.tensor([0.3125, 0.1875, 0.5]))


def test_same_draws_as_mmpretrain():
    """With the same seeds our augments give the stock CutMix/Mixup batch and labels, and M's
    mean is the stock λ."""
    from mmpretrain.models.utils import CutMix, Mixup

    from mmhiri.engine import CutMixWithMask, MixupWithMask
    x = torch.rand(6, 3, 16, 20)
    y = torch.nn.functional.one_hot(torch.arange(6) % 4, 4).float()
    for ours, stock in ((CutMixWithMask(alpha=1.), CutMix(alpha=1.)),
                        (MixupWithMask(alpha=.8), Mixup(alpha=.8))):
        for seed in range(3):
            before = x.clone()
            np.random.seed(seed), torch.manual_seed(seed)
            xm, ym, info = ours.mix_with_mask(x, y)
            np.random.seed(seed), torch.manual_seed(seed)
            xs, ys = stock.mix(x.clone(), y)
            assert torch.equal(xm, xs) and torch.equal(ym, ys)
            assert info.lam == pytest.approx(info.mask.mean().item(), abs=1e-6)
            torch.testing.assert_close(ym, info.lam * y + (1 - info.lam) * y[info.index])
            assert torch.equal(x, before)  # the input batch is untouched (the teacher needs it)


# ------------------------------------------------------------------ the classifier
def build(arch='hiri', num_classes=K, distill=None, **kw):
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    import mmhiri.engine  # noqa: F401  (what custom_imports does)
    from mmpretrain.registry import MODELS
    if arch == 'hiri':
        backbone = dict(type='mmhiri.HIRIViT', arch=TINY_HIRI, out_indices=(4, ),
                        drop_path_rate=0.)
        head = dict(type='StackedLinearClsHead', num_classes=num_classes, in_channels=32,
                    mid_channels=[64], act_cfg=dict(type='GELU'))
    else:
        backbone = dict(type='mmhiri.ViTAEv2', arch=TINY_V2, out_indices=(3, ),
                        drop_path_rate=0.)
        head = dict(type='LinearClsHead', num_classes=num_classes, in_channels=64)
    head['loss'] = dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    train_cfg = dict(augments=[dict(type='Mixup', alpha=.8), dict(type='CutMix', alpha=1.)])
    model = MODELS.build(dict(
        type='mmhiri.EMADistillClassifier', backbone=backbone,
        data_preprocessor=dict(mean=[127.5] * 3, std=[64.] * 3),
        neck=dict(type='GlobalAveragePooling'), head=head,
        train_cfg=train_cfg,
        distill=distill if distill is not None else dict(alpha=.5, momentum=.3), **kw))
    return model


def samples(labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(int(i)) for i in labels]


@pytest.mark.parametrize('alpha', [.5, .25])
def test_classifier_trains_student_on_mixed_images_and_eq5_target(alpha, monkeypatch):
    """Through EMADistillClassifier.loss: the teacher is stubbed with the known maps and the
    CutMix box is fixed; the head's loss receives exactly ȳ of Eq. 5 and the student sees x̃."""
    from mmhiri.engine import CutMixWithMask
    model = build(distill=dict(alpha=alpha, momentum=.1))
    x, _ = two_images(size=64)
    seen, targets = {}, []

    def stub_teacher(inputs):  # known per-location probabilities
        seen['teacher_input'] = inputs
        return prob_maps()

    def fixed_cutmix(inputs, scores):  # each sample gets the other's top-left quadrant
        return CutMixWithMask.apply(inputs, scores, torch.tensor([1, 0]), (0, 32, 0, 32))

    def student(inputs, real=model.extract_feat):
        seen['student_input'] = inputs
        return real(inputs)

    def loss_module(score, target, real=model.head.loss_module.forward, **kw):
        targets.append(target)
        return real(score, target, **kw)

    monkeypatch.setattr(model, 'teacher_prob_maps', stub_teacher)
    monkeypatch.setattr(model, '_mix', fixed_cutmix)
    monkeypatch.setattr(model, 'extract_feat', student)
    monkeypatch.setattr(model.head.loss_module, 'forward', loss_module)
    ds = samples([0, 1])
    with pytest.warns(UserWarning, match='nothing updates the EMA teacher'):
        losses = model.loss(x, ds)
    assert torch.isfinite(losses['loss'])
    torch.testing.assert_close(targets[0], torch.tensor(CUTMIX_Y_BAR[alpha]), rtol=0, atol=1e-6)
    assert torch.equal(seen['teacher_input'], x)  # the teacher sees the original images
    assert torch.equal(seen['student_input'][0, :, :32, :32], x[1, :, :32, :32])
    assert torch.equal(seen['student_input'][0, :, 32:, :], x[0, :, 32:, :])


def test_teacher_maps_are_the_head_applied_per_location():
    """'Pooling removed': the map at each location is softmax(head(feature there)); for a
    linear head the spatial mean of the per-location logits is the pooled logit, for the MLP
    head of HIRI-ViT it is not."""
    torch.manual_seed(0)
    for arch in ('hiri', 'vitaev2'):
        model = build(arch)
        model.init_weights()
        model.eval()
        x = torch.rand(2, 3, 128, 128)
        maps = model.teacher_prob_maps(x)
        with torch.no_grad():
            feat = model.teacher['backbone'](x)[-1]
            n, c, h, w = feat.shape
            assert maps.shape == (2, K, h, w) and h * w > 1
            head = model.teacher['head']
            for i in range(h):
                for j in range(w):
                    logits = head((feat[:, :, i, j], ))
                    torch.testing.assert_close(maps[:, :, i, j], logits.softmax(-1))
            torch.testing.assert_close(maps.sum(1), torch.ones(2, h, w))
            pooled = head((feat.mean((2, 3)), ))
            per_location = torch.stack([head((feat[:, :, i, j], )) for i in range(h)
                                        for j in range(w)]).mean(0)
            if arch == 'vitaev2':
                torch.testing.assert_close(per_location, pooled)
            else:
                assert (per_location - pooled).abs().max() > 1e-4


# ------------------------------------------------------------------ the EMA teacher
def data_batch(n=4, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    return dict(inputs=inputs, data_samples=samples([i % K for i in range(n)]))


def test_teacher_is_the_ema_of_the_student_history_and_gets_no_gradient():
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    np.random.seed(0)
    m = 0.3
    model = build(distill=dict(alpha=.5, momentum=m))
    model.init_weights()
    model.train()
    assert not model.teacher.training and model.backbone.training
    # the teacher has no parameters: nothing an optimizer or DDP could pick up
    assert list(model.teacher.parameters()) == []
    teacher_ptrs = {t.data_ptr() for t in model.teacher.state_dict().values()}
    student_ptrs = {p.data_ptr() for p in model.parameters()}
    assert not teacher_ptrs & student_ptrs
    student = {k: v for k, v in model.state_dict().items() if not k.startswith('teacher.')}
    teacher = {k[len('teacher.'):]: v for k, v in model.state_dict().items()
               if k.startswith('teacher.')}
    assert teacher.keys() == student.keys()
    for k in student:  # after init_weights the teacher starts as the student
        assert torch.equal(teacher[k], student[k]), k

    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    params = dict(model.named_parameters())
    expected = {k: params[k].detach().clone() for k in params}
    for step in range(4):
        model.train_step(data_batch(seed=step), optim)
        for k, p in params.items():
            expected[k] = (1 - m) * expected[k] + m * p.detach()
        for t in model.teacher.state_dict().values():
            assert not t.requires_grad and t.grad is None
    teacher = {k[len('teacher.'):]: v for k, v in model.state_dict().items()
               if k.startswith('teacher.')}
    moved = 0.
    for k, p in params.items():
        torch.testing.assert_close(teacher[k], expected[k], rtol=1e-6, atol=1e-7)
        moved = max(moved, (teacher[k] - p).abs().max().item())
    assert moved > 1e-3  # the teacher really lags the student
    # buffers (BN running statistics) are copied from the student
    for k, b in model.named_buffers():
        if not k.startswith('teacher.') and 'running' in k:
            assert torch.equal(teacher[k], b), k
    # gradients flow to the student only; the teacher's maps carry none
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    assert not model.teacher_prob_maps(x).requires_grad


def test_gradient_accumulation_updates_once_per_optimizer_step():
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    model = build(distill=dict(alpha=.5, momentum=.3))
    model.init_weights()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2), accumulative_counts=2)
    calls = []
    update = model.update_teacher
    model.update_teacher = lambda *a, **k: calls.append(1) or update(*a, **k)
    for step in range(4):
        model.train_step(data_batch(n=2, seed=step), optim)
    assert len(calls) == 2


def test_hook_updates_the_teacher_of_a_ddp_wrapped_model(recwarn):
    """Under MMDistributedDataParallel (here gloo, one CPU process) the wrapper's train_step
    skips the classifier's own; EMADistillHook then does the EMA step, once per step."""
    import socket
    import types

    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import OptimWrapper

    from mmhiri.engine import EMADistillHook
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0,
                            world_size=1)
    try:
        torch.manual_seed(0)
        m = 0.3
        model = build(distill=dict(alpha=.5, momentum=m))
        model.init_weights()
        wrapped = MMDistributedDataParallel(module=model)
        wrapped.train()
        optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
        runner = types.SimpleNamespace(model=wrapped, optim_wrapper=optim)
        hook = EMADistillHook()
        hook.before_train(runner)
        params = dict(model.named_parameters())
        expected = {k: p.detach().clone() for k, p in params.items()}
        for step in range(2):
            wrapped.train_step(data_batch(seed=step), optim)
            hook.after_train_iter(runner, step)
            for k, p in params.items():
                expected[k] = (1 - m) * expected[k] + m * p.detach()
        teacher = model.teacher.state_dict()
        for k in params:
            torch.testing.assert_close(teacher[k], expected[k], rtol=1e-6, atol=1e-7)
        assert not [w for w in recwarn if 'EMA teacher' in str(w.message)]
    finally:
        dist.destroy_process_group()


def test_load_plain_checkpoint_starts_teacher_from_student_and_eval_teacher():
    torch.manual_seed(0)
    model = build(distill=dict(alpha=.5, momentum=.3, eval_teacher=True))
    model.init_weights()
    plain = {k: v for k, v in model.state_dict().items() if not k.startswith('teacher.')}
    plain = {k: v + 0.05 * torch.rand_like(v) if v.is_floating_point() else v
             for k, v in plain.items()}
    model.load_state_dict(plain, strict=True)
    for k, v in plain.items():
        assert torch.equal(model.state_dict()['teacher.' + k], v), k
    # eval_teacher: predictions come from the teacher
    with torch.no_grad():
        model.teacher['head'].layers[-1].fc.bias += 100 * torch.tensor([0., 0., 1.])
    model.eval()
    preds = model.predict(torch.rand(2, 3, 128, 128))
    assert [int(p.pred_label) for p in preds] == [2, 2]
    model.eval_teacher = False
    assert not torch.equal(model.predict(torch.rand(2, 3, 128, 128))[0].pred_score,
                           preds[0].pred_score)


def test_distill_none_is_a_plain_image_classifier():
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    import mmhiri.engine  # noqa: F401
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(
        type='mmhiri.EMADistillClassifier', distill=None,
        backbone=dict(type='mmhiri.ViTAEv2', arch=TINY_V2, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=K, in_channels=64),
        train_cfg=dict(augments=[dict(type='CutMix', alpha=1.)])))
    from mmpretrain.models import ImageClassifier
    assert isinstance(model, ImageClassifier)
    assert model.teacher is None and not any(k.startswith('teacher') for k in model.state_dict())
    assert type(model.data_preprocessor.batch_augments.augments[0]).__name__ == 'CutMix'


def test_clear_errors():
    with pytest.raises(TypeError, match='GlobalAveragePooling'):
        _build_with(neck=None)
    with pytest.raises(TypeError, match='unknown distill keys'):
        build(distill=dict(alpha=.5, beta=1))
    with pytest.raises(ValueError, match='alpha'):
        build(distill=dict(alpha=1.5))


def _build_with(**overrides):
    from mmpretrain.registry import MODELS
    cfg = dict(type='mmhiri.EMADistillClassifier',
               backbone=dict(type='mmhiri.ViTAEv2', arch=TINY_V2, out_indices=(3, )),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=K, in_channels=64),
               distill=dict(alpha=.5))
    cfg.update(overrides)
    return MODELS.build(cfg)


# ------------------------------------------------------------------ a real Runner job
def runner_cfg(data_root, work_dir, max_iters, resume=False, load_from=None):
    """A tiny HIRI-ViT with EMA distillation on the generated shapes. The config is written to
    a file and read back as a user's would be (Config.fromfile runs its custom_imports, which
    register the engine)."""
    from mmengine.config import Config
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                dict(type='PackInputs')]
    loader = dict(batch_size=8, num_workers=0,
                  dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                               pipeline=pipeline),
                  sampler=dict(type='DefaultSampler', shuffle=True))
    cfg = Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmhiri', 'mmhiri.engine'], allow_failed_imports=False),
        model=dict(
            type='mmhiri.EMADistillClassifier',
            data_preprocessor=dict(num_classes=4, mean=[127.5] * 3, std=[64.] * 3, to_rgb=True),
            backbone=dict(type='mmhiri.HIRIViT', arch=TINY_HIRI, out_indices=(4, ),
                          drop_path_rate=0.),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='StackedLinearClsHead', num_classes=4, in_channels=32,
                      mid_channels=[64], act_cfg=dict(type='GELU'),
                      loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                mode='original')),
            train_cfg=dict(augments=[dict(type='Mixup', alpha=.8),
                                     dict(type='CutMix', alpha=1.)]),
            # a fast teacher for a 16-step job; α = 0.8 keeps the soft targets learnable
            distill=dict(alpha=.8, momentum=.05, eval_teacher=True)),
        work_dir=work_dir,
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=5e-3, weight_decay=0.05)),
        custom_hooks=[dict(type='EMADistillHook')],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=8, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume, load_from=load_from))
    path = osp.join(osp.dirname(work_dir), osp.basename(work_dir) + '_cfg.py')
    cfg.dump(path)
    return Config.fromfile(path)


@pytest.mark.slow
def test_runner_trains_saves_and_resumes_teacher(tmp_path):
    """16 iterations of batch 8 at 96x96 (a 2x2 map at HIRI-ViT's stride 64): the loss falls,
    the checkpoint carries the teacher, loads under safe loading, and resuming restores the
    teacher exactly before training goes on."""
    import mmhiri  # noqa: F401  (allows mmengine checkpoints under weights_only loading)
    from mmengine.runner import Runner

    from mmhiri.datasets.classification import generate_classification
    root = generate_classification(str(tmp_path / 'data'), num_classes=4, num_train=16,
                                   num_val=0, size=96, seed=0)['root']

    runner = Runner.from_cfg(runner_cfg(root, str(tmp_path / 'a'), max_iters=16))
    assert type(runner.model).__name__ == 'EMADistillClassifier'
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 16
    first, last = float(np.mean(losses[:4])), float(np.mean(losses[-4:]))
    print(f'loss: first 4 iterations {first:.3f}, last 4 {last:.3f}; all {np.round(losses, 3)}')
    assert last < first - 0.15, losses

    ckpt = osp.join(str(tmp_path / 'a'), 'iter_16.pth')
    saved = torch.load(ckpt, weights_only=True)['state_dict']  # safe loading works
    teacher_keys = [k for k in saved if k.startswith('teacher.')]
    student_keys = [k for k in saved if k.startswith(('backbone.', 'neck.', 'head.'))]
    assert len(teacher_keys) == len(student_keys) > 0
    assert any(not torch.equal(saved[k], saved[k[len('teacher.'):]]) for k in teacher_keys)
    model_state = runner.model.state_dict()
    for k in teacher_keys:  # what was saved is the teacher after the last update
        assert torch.equal(saved[k], model_state[k]), k

    # resume: the teacher comes back exactly as saved, then training goes on
    resumed = Runner.from_cfg(runner_cfg(root, str(tmp_path / 'b'), max_iters=18, resume=True,
                                         load_from=ckpt))
    resumed.load_or_resume()
    assert resumed.iter == 16
    state = resumed.model.state_dict()
    for k in teacher_keys:
        assert torch.equal(state[k], saved[k]), k
    resumed.train()
    assert resumed.iter == 18
    final = torch.load(osp.join(str(tmp_path / 'b'), 'iter_18.pth'), weights_only=True)
    assert any(not torch.equal(final['state_dict'][k], saved[k]) for k in teacher_keys)
