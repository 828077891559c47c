"""Robustness evaluation: per-image metrics, statistics, figures, and the model × shift suite
(:mod:`.runner` runs it, :mod:`.cache` keeps finished pairs, :mod:`.report` writes figures and
the summary, :mod:`.coil_maps` checks each slice's coil maps against its data,
:mod:`.fastmri_scorer` gives fastMRI's own volume scores of saved reconstructions).
:func:`fastmri_pun.app.evaluate.suite.evaluate` is the whole suite as one call;
``python -m fastmri_pun.evaluate --help`` runs it from the command line.
"""

from .coil_maps import MAPS_FIT_MIN, maps_fit
from .fastmri_scorer import format_scores, score_folder
from .figures import learning_curves_figure
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
from .stats import (
    N_BOOT,
    bootstrap_ci,
    hierarchical_bootstrap_ci,
    paired_differences,
    per_seed_means,
    summarize,
    verdict,
)

__all__ = [
    "IMAGE_METRICS",
    "MAPS_FIT_MIN",
    "N_BOOT",
    "ROI_METRICS",
    "ZERO_FILLED",
    "ShiftData",
    "bootstrap_ci",
    "evaluate_shift",
    "hierarchical_bootstrap_ci",
    "format_scores",
    "image_metrics",
    "image_roi_metrics",
    "learning_curves_figure",
    "make_figures",
    "maps_fit",
    "model_names",
    "paired_differences",
    "per_seed_means",
    "reconstruct",
    "roi_bbox",
    "roi_metrics",
    "score_folder",
    "summarize",
    "summary_markdown",
    "verdict",
]
