"""fastmri-pun: pruning unrolled MRI reconstruction networks at initialization, as a fastMRI plugin.

Public API (more in the sub-packages)::

    from fastmri_pun import MoDL, SenseOp, cg_solve, build_model
"""

from .models import MoDL, build_model, list_models, register_model
from .physics import SenseOp, cg_solve, complex_to_real, real_to_complex

__version__ = "0.2.0"

__all__ = [
    "MoDL",
    "SenseOp",
    "__version__",
    "build_model",
    "cg_solve",
    "complex_to_real",
    "list_models",
    "real_to_complex",
    "register_model",
]
