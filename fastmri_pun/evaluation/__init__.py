"""Robustness evaluation: per-image metrics, statistics, figures and the model × shift suite.

``python -m fastmri_pun.evaluate --help`` runs the suite from the command line.
"""

from .metrics import (
    METRICS,
    ROI_METRICS,
    crop_to_target,
    image_metrics,
    image_roi_metrics,
    roi_bbox,
    roi_metrics,
)
from .stats import bootstrap_ci, paired_differences, summarize, verdict
from .suite import SuiteConfig, run_suite

__all__ = [
    "METRICS",
    "ROI_METRICS",
    "SuiteConfig",
    "bootstrap_ci",
    "crop_to_target",
    "image_metrics",
    "image_roi_metrics",
    "paired_differences",
    "roi_bbox",
    "roi_metrics",
    "run_suite",
    "summarize",
    "verdict",
]
