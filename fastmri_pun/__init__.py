"""fastmri-pun: pruning unrolled MRI reconstruction networks at initialization, as a fastMRI plugin.

Public API (more in the sub-packages)::

    from fastmri_pun import MoDL, SenseOp, cg_solve, build_model
    from fastmri_pun import prune_at_init, build_pruned_model, load_pruned_state_dict

PUN on a fastMRI model in one call (``train_loader`` yields fastMRI ``VarNetSample`` batches)::

    model = fastmri_pun.prune_at_init(fastmri.models.VarNet(), train_loader, density=0.03)
    print(model.prune_report.density)
"""

from .models import MoDL, build_model, list_models, register_model
from .physics import SenseOp, cg_solve, complex_to_real, real_to_complex
from .pruning import (
    PruneReport,
    build_pruned_model,
    list_pruning_methods,
    load_pruned_state_dict,
    prune_at_init,
)

__version__ = "0.2.0"

__all__ = [
    "MoDL",
    "PruneReport",
    "SenseOp",
    "__version__",
    "build_model",
    "build_pruned_model",
    "cg_solve",
    "complex_to_real",
    "list_models",
    "list_pruning_methods",
    "load_pruned_state_dict",
    "prune_at_init",
    "real_to_complex",
    "register_model",
]
