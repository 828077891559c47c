"""Robustness evaluation: per-image metrics, statistics, figures, and the model × shift suite
(:mod:`.runner` runs it, :mod:`.cache` keeps finished pairs, :mod:`.report` writes figures and
the summary). :func:`fastmri_pun.workflows.evaluate.evaluate` is the whole suite as one call;
``python -m fastmri_pun.evaluate --help`` runs it from the command line.
"""

from .metrics import (
    IMAGE_METRICS,
    ROI_METRICS,
    image_metrics,
    image_roi_metrics,
    roi_bbox,
    roi_metrics,
)
from .report import make_figures, summary_markdown
from .runner import ZERO_FILLED, evaluate_shift, model_names, reconstruct
from .shift_data import ShiftData
from .stats import N_BOOT, bootstrap_ci, paired_differences, summarize, verdict

__all__ = [
    "IMAGE_METRICS",
    "N_BOOT",
    "ROI_METRICS",
    "ZERO_FILLED",
    "ShiftData",
    "bootstrap_ci",
    "evaluate_shift",
    "image_metrics",
    "image_roi_metrics",
    "make_figures",
    "model_names",
    "paired_differences",
    "reconstruct",
    "roi_bbox",
    "roi_metrics",
    "summarize",
    "summary_markdown",
    "verdict",
]
