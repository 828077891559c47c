"""fastMRI's own volume scores of saved reconstructions, as ``python -m fastmri.evaluate`` computes
them, without its crash on numpy 2.

``fastmri.evaluate`` (fastmri 0.3.0) pushes ``ssim``'s one-element array and ``nmse``'s 0-d array
into ``runstats.Statistics``; with numpy 2 the final ``f"{mean:.4g}"`` then raises "unsupported
format string passed to numpy.ndarray.__format__". :func:`score_folder` runs the same loop with
fastMRI's own pieces — ``fastmri.evaluate.Metrics`` and ``METRIC_FUNCS`` (MSE, NMSE, PSNR, SSIM per
*volume*, peak = the target volume's maximum), ``fastmri.data.transforms.center_crop`` to the
target's width squared, the same ``acquisition``/``acceleration`` filters — and only converts the
aggregated values to ``float`` before formatting (:func:`format_scores`, fastMRI's line: mean
± 2 standard deviations). The numbers are fastMRI's to the last bit; the files are visited in
sorted order (fastMRI: directory order), which changes the running statistics by rounding only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from fastmri import evaluate as fm_eval
from fastmri.data import transforms

from ..data.h5_reading import h5_attrs

__all__ = ["RECON_KEY", "TARGET_KEYS", "format_scores", "score_folder"]

#: the dataset of a predictions file (``fastmri.save_reconstructions``)
RECON_KEY = "reconstruction"
#: the target dataset per challenge (as ``python -m fastmri.evaluate``)
TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


def _scalar(value: Any) -> float:
    """``runstats`` means of fastMRI's array-valued metrics (``[1]`` or 0-d) as one float."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"expected one value, got shape {np.shape(value)}")
    return float(arr[0])


def score_folder(
    target_dir: str | os.PathLike,
    predictions_dir: str | os.PathLike,
    challenge: str,
    acquisition: str | None = None,
    acceleration: int | None = None,
) -> dict[str, dict[str, float]]:
    """fastMRI's scores of the reconstructions in ``predictions_dir`` against ``target_dir``.

    Args:
        target_dir: folder of fastMRI ``.h5`` files with targets (``reconstruction_rss``
            multicoil, ``reconstruction_esc`` singlecoil, ``[slices, h, w]``).
        predictions_dir: folder with one ``.h5`` file of the same name per target file, holding
            ``reconstruction`` ``[slices, h', w']`` float (``fastmri.save_reconstructions``).
        challenge: ``"multicoil"`` or ``"singlecoil"``.
        acquisition, acceleration: score only the volumes whose ``acquisition`` /
            ``acceleration`` attribute equals this (fastMRI's filters; ``None``: all). The
            attributes are read through :func:`~fastmri_pun.data.h5_reading.h5_attrs`, so a
            fixed-length byte string or a one-element array (MATLAB and C writers) matches as
            fastMRI's own ``str`` / number does.

    Returns:
        ``{"MSE" | "NMSE" | "PSNR" | "SSIM": {"mean": ..., "stddev": ..., "n": volumes}}``,
        plain floats: ``fastmri.evaluate.Metrics``' ``means()`` and ``stddevs()``.

    Raises:
        FileNotFoundError: a missing folder, or a target without its predictions file.
        ValueError: a bad challenge, a file without the target or ``reconstruction`` dataset,
            or no volume left to score (one line naming the file or folder).
    """
    if challenge not in TARGET_KEYS:
        raise ValueError(f"challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
    target_dir, predictions_dir = Path(target_dir), Path(predictions_dir)
    for d in (target_dir, predictions_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: folder does not exist")
    key = TARGET_KEYS[challenge]
    metrics = fm_eval.Metrics(fm_eval.METRIC_FUNCS)
    n = 0
    for tgt_file in sorted(p for p in target_dir.iterdir() if p.suffix == ".h5"):
        pred_file = predictions_dir / tgt_file.name
        if not pred_file.is_file():
            raise FileNotFoundError(f"{pred_file}: no reconstruction for {tgt_file}")
        with h5py.File(tgt_file, "r") as target, h5py.File(pred_file, "r") as recons:
            attrs = h5_attrs(target.attrs)
            if acquisition and acquisition != attrs.get("acquisition"):
                continue
            if acceleration and attrs.get("acceleration") != acceleration:
                continue
            if key not in target:
                raise ValueError(f"{tgt_file}: no '{key}' target ({challenge})")
            if RECON_KEY not in recons:
                raise ValueError(f"{pred_file}: no '{RECON_KEY}' dataset")
            gt = target[key][()]
            pred = recons[RECON_KEY][()]
        if gt.ndim != 3 or pred.ndim != 3 or gt.shape[0] != pred.shape[0]:
            raise ValueError(
                f"{pred_file}: reconstruction {pred.shape} and target {gt.shape} must both be "
                "[slices, h, w] with the same number of slices"
            )
        size = (gt.shape[-1], gt.shape[-1])
        metrics.push(transforms.center_crop(gt, size), transforms.center_crop(pred, size))
        n += 1
    if n == 0:
        raise ValueError(f"{target_dir}: no volume to score (check --acquisition/--acceleration)")
    means, stds = metrics.means(), metrics.stddevs()
    return {
        name: {"mean": _scalar(means[name]), "stddev": _scalar(stds[name]), "n": float(n)}
        for name in means
    }


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """fastMRI's summary line: ``MSE = m +/- 2·std NMSE = ... PSNR = ... SSIM = ...``
    (``fastmri.evaluate.Metrics.__repr__``, on plain floats)."""
    return " ".join(
        f"{name} = {scores[name]['mean']:.4g} +/- {2 * scores[name]['stddev']:.4g}"
        for name in sorted(scores)
    )
