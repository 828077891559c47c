"""Per-image and ROI metrics agree with fastmri.evaluate on the same arrays."""

import math

import numpy as np
import pytest
import torch
from fastmri import evaluate

from fastmri_pun.data.crop import center_crop, crop_to_common, crop_to_recon_size
from fastmri_pun.evaluation.metrics import (
    image_metrics,
    image_roi_metrics,
    roi_bbox,
    roi_metrics,
)


@pytest.fixture()
def pair():
    rng = np.random.default_rng(0)
    gt = rng.random((40, 36)).astype(np.float32) + np.linspace(0, 1, 36, dtype=np.float32)
    pred = gt + 0.05 * rng.standard_normal(gt.shape).astype(np.float32)
    return gt, pred


def test_image_metrics_equal_fastmri_evaluate(pair):
    gt, pred = pair
    maxv = 2.5  # a file's `max` attribute, different from gt.max()
    m = image_metrics(gt, torch.from_numpy(pred), maxv)
    assert m["psnr"] == pytest.approx(float(evaluate.psnr(gt, pred, maxval=maxv)), abs=1e-6)
    assert m["ssim"] == pytest.approx(
        float(evaluate.ssim(gt[None], pred[None], maxval=maxv)[0]), abs=1e-6
    )
    assert m["nmse"] == pytest.approx(float(evaluate.nmse(gt, pred)), rel=1e-6)
    # an independent check of the PSNR definition
    mse = np.mean((gt.astype(np.float64) - pred) ** 2)
    assert m["psnr"] == pytest.approx(10 * math.log10(maxv**2 / mse), abs=1e-4)


@pytest.mark.parametrize(
    ("out_shape", "tgt_shape", "common"),
    [
        ((12, 10), (4, 6), (4, 6)),  # output wider and taller (readout oversampling)
        ((12, 5), (8, 8), (8, 5)),  # output narrower than the target (FLAIR-like k-space)
        ((8, 8), (8, 8), (8, 8)),  # equal: nothing is cropped
    ],
)
def test_crop_to_common_is_fastmri_center_crop_to_smallest(out_shape, tgt_shape, common):
    from fastmri.data.transforms import center_crop_to_smallest

    out = np.arange(np.prod(out_shape), dtype=np.float32).reshape(out_shape)
    tgt = -np.arange(np.prod(tgt_shape), dtype=np.float32).reshape(tgt_shape)
    o, t = crop_to_common(out, tgt)
    assert o.shape == t.shape == common and isinstance(o, np.ndarray)
    ref_o, ref_t = center_crop_to_smallest(torch.from_numpy(out), torch.from_numpy(tgt))
    np.testing.assert_array_equal(o, ref_o.numpy())
    np.testing.assert_array_equal(t, ref_t.numpy())
    # torch in, torch out; leading axes are kept
    ob, tb = crop_to_common(torch.from_numpy(out)[None], torch.from_numpy(tgt)[None])
    assert isinstance(ob, torch.Tensor) and ob.shape == tb.shape == (1, *common)
    np.testing.assert_array_equal(ob[0].numpy(), o)
    if out_shape == tgt_shape:
        assert np.shares_memory(o, out)


def test_center_crop_and_recon_size_crop():
    out = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    np.testing.assert_array_equal(center_crop(out, (4, 6)), out[4:8, 2:8])
    with pytest.raises(ValueError, match="cannot centre-crop"):
        center_crop(out, (14, 6))
    # fastMRI's submission rule: the recon size, or a W x W square when the output is narrower
    assert crop_to_recon_size(out, (6, 8)).shape == (6, 8)
    np.testing.assert_array_equal(crop_to_recon_size(out, (6, 16)), out[1:11, :])


def test_roi_metrics_equal_metrics_on_the_crop(pair):
    gt, pred = pair
    roi = np.zeros(gt.shape, bool)
    roi[5:17, 20:30] = True
    m = roi_metrics(gt, pred, roi, max_value=2.0)
    crop_gt, crop_pred = gt[5:17, 20:30], pred[5:17, 20:30]
    assert m["roi_psnr"] == pytest.approx(
        float(evaluate.psnr(crop_gt, crop_pred, maxval=2.0)), abs=1e-6
    )
    assert m["roi_ssim"] == pytest.approx(
        float(evaluate.ssim(crop_gt[None], crop_pred[None], maxval=2.0)[0]), abs=1e-6
    )
    # the ROI score differs from the whole-image score (it really is local)
    pred2 = pred.copy()
    pred2[roi] = gt[roi]  # perfect inside the box
    assert roi_metrics(gt, pred2, roi, 2.0)["roi_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert image_metrics(gt, pred2, 2.0)["ssim"] < 0.99


def test_small_box_grows_to_ssim_window_and_averaging(pair):
    gt, pred = pair
    roi = np.zeros(gt.shape, bool)
    roi[0:3, 34:36] = True  # 3x2 box at the corner -> 7x7 clamped to the image
    rows, cols = roi_bbox(roi, 7)
    assert (rows, cols) == (slice(0, 7), slice(29, 36))
    m = roi_metrics(gt, pred, roi, 2.0)
    assert m["roi_psnr"] == pytest.approx(
        float(evaluate.psnr(gt[0:3, 34:36], pred[0:3, 34:36], maxval=2.0))
    )
    assert m["roi_ssim"] == pytest.approx(
        float(evaluate.ssim(gt[None, 0:7, 29:36], pred[None, 0:7, 29:36], maxval=2.0)[0])
    )
    roi2 = np.zeros(gt.shape, bool)
    roi2[20:30, 5:15] = True
    both = image_roi_metrics(gt, pred, [roi, roi2], 2.0)
    m2 = roi_metrics(gt, pred, roi2, 2.0)
    assert both["n_rois"] == 2
    assert both["roi_psnr"] == pytest.approx((m["roi_psnr"] + m2["roi_psnr"]) / 2)
    none = image_roi_metrics(gt, pred, [], 2.0)
    assert none["n_rois"] == 0 and math.isnan(none["roi_psnr"])


def test_bad_inputs(pair):
    gt, pred = pair
    with pytest.raises(ValueError, match="shapes differ"):
        image_metrics(gt, pred[:-1], 1.0)
    with pytest.raises(ValueError, match="max_value"):
        image_metrics(gt, pred, 0.0)
    with pytest.raises(ValueError, match="empty"):
        roi_metrics(gt, pred, np.zeros(gt.shape, bool), 1.0)
    with pytest.raises(ValueError, match="does not match"):
        roi_metrics(gt, pred, np.ones((3, 3), bool), 1.0)
