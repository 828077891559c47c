"""Figures are written as non-empty PNGs; the example slice is chosen by the median rule."""

import numpy as np
import pandas as pd
import pytest

from fastmri_pun.evaluation.figures import median_slice, metric_boxplots, recon_panel, shift_bars

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def results():
    rng = np.random.default_rng(0)
    rows = []
    for shift in ("in-dist", "noise"):
        for model in ("dense", "pun-it"):
            for i in range(7):
                rows.append(
                    {
                        "model": model,
                        "shift": shift,
                        "fname": f"v{i % 2}.h5",
                        "slice_num": i,
                        "psnr": 30 + i + rng.random(),
                        "ssim": 0.9,
                        "roi_psnr": np.nan if shift == "in-dist" else 25.0,
                    }
                )
    return pd.DataFrame(rows)


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 2000


def test_plots_written(tmp_path, results):
    assert _is_png(metric_boxplots(results, tmp_path / "box.png", "psnr"))
    assert _is_png(shift_bars(results, tmp_path / "bars.png", "psnr"))
    assert _is_png(metric_boxplots(results, tmp_path / "roi.png", "roi_psnr"))
    assert not list(tmp_path.glob(".*"))  # no temp files left
    with pytest.raises(ValueError, match="no finite"):
        shift_bars(results.assign(ssim=np.nan), tmp_path / "x.png", "ssim")


def test_median_slice_rule(results):
    sub = results[(results.model == "dense") & (results["shift"] == "noise")]
    fname, sl = median_slice(results, "dense", "noise")
    assert sl == 3 and fname == "v1.h5"  # psnr increases with the slice index: median is #3
    assert float(sub.loc[sub.slice_num == sl, "psnr"].iloc[0]) == pytest.approx(np.median(sub.psnr))
    with pytest.raises(ValueError, match="no 'psnr' results"):
        median_slice(results, "zzz", "noise")


def test_recon_panel(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.random((32, 32)).astype(np.float32)
    recons = {"dense": t + 0.1 * rng.random(t.shape), "pun-it": t + 0.05 * rng.random(t.shape)}
    p = recon_panel(
        t,
        recons,
        tmp_path / "panel.png",
        title="x",
        captions={"dense": "30 dB"},
        boxes=[(slice(2, 8), slice(3, 9))],
    )
    assert _is_png(p)
