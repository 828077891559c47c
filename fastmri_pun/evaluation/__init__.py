"""Robustness evaluation: scoring models on shifted data, statistics, figures and the summary.

Every function takes its inputs explicitly (models, datasets, result tables, folders to write);
nothing here reads or keeps an output folder's state.

- :mod:`.shift_data`: the data of each shift (folder, seeded dataset, fastMRI+ annotations) and
  the checks of its files;
- :mod:`.scoring`: reconstruct a slice with a model (or fastMRI's zero-filled baseline), crop it
  with its target to their common size and score every model on a shift's slices, one row per
  model and image (:data:`~.scoring.RESULT_COLUMNS`);
- :mod:`.metrics`: per-image and ROI PSNR, SSIM, NMSE (fastMRI's definitions);
- :mod:`.stats`: summaries, paired differences with (hierarchical) bootstrap CIs, verdicts;
- :mod:`.figures` and :mod:`.report`: the figures and the Markdown summary of the results;
- :mod:`.coil_maps`: each slice's coil maps checked against its data;
- :mod:`.fastmri_scorer`: fastMRI's own volume scores of saved reconstructions.

The whole suite as one call, with its output folder and the reuse of finished model × shift
pairs, is the ``evaluate`` command (``python -m fastmri_pun.evaluate --help``).
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
from .report import low_maps_fit, make_figures, summary_markdown
from .scoring import (
    RESULT_COLUMNS,
    ZERO_FILLED,
    compare,
    evaluate_shift,
    load_model,
    load_models,
    reconstruct,
    sort_results,
)
from .shift_data import (
    ShiftData,
    resolve_shifts,
    scan_shift_files,
    shift_annotations,
    shift_dataset,
)
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
    "RESULT_COLUMNS",
    "ROI_METRICS",
    "ZERO_FILLED",
    "ShiftData",
    "bootstrap_ci",
    "compare",
    "evaluate_shift",
    "format_scores",
    "hierarchical_bootstrap_ci",
    "image_metrics",
    "image_roi_metrics",
    "learning_curves_figure",
    "load_model",
    "load_models",
    "low_maps_fit",
    "make_figures",
    "maps_fit",
    "paired_differences",
    "per_seed_means",
    "reconstruct",
    "resolve_shifts",
    "roi_bbox",
    "roi_metrics",
    "scan_shift_files",
    "score_folder",
    "shift_annotations",
    "shift_dataset",
    "sort_results",
    "summarize",
    "summary_markdown",
    "verdict",
]
