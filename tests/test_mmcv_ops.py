"""mmcv was built with its compiled ops (Mask R-CNN / RetinaNet need them)."""
import torch


def test_nms_cpu():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7]))


def test_roi_align_cpu():
    from mmcv.ops import RoIAlign
    feat = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feat, rois)
    # bin centres at (1, 1), (1, 3), (3, 1), (3, 3) -> bilinear samples of the ramp
    torch.testing.assert_close(out.flatten(), torch.tensor([5., 7., 13., 15.]))


def test_sigmoid_focal_loss_binding_and_cpu_path():
    """mmcv 2.1.0 compiles ``sigmoid_focal_loss`` with CUDA kernels only (no CPU kernel exists
    upstream); the binding must be there, and on CPU mmdet's FocalLoss (RetinaNet's loss) takes
    its pure-PyTorch path."""
    from mmcv.ops.focal_loss import ext_module
    assert hasattr(ext_module, 'sigmoid_focal_loss_forward')
    from mmdet.models.losses import FocalLoss
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='sum')(
        logits, torch.tensor([0, 2]))
    # p = 0.5 everywhere: positives 0.25*0.25*ln2, negatives 0.75*0.25*ln2
    expected = (2 * 0.25 + 4 * 0.75) * 0.25 * torch.log(torch.tensor(2.))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None
