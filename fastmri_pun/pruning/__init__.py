"""Model-agnostic pruning: PUN pruning-mask learning, classic baselines, torch.nn.utils.prune.

Pruning masks (which weights a network keeps; not the k-space undersampling mask of the data)
are ``dict[str, torch.BoolTensor]`` keyed by ``named_parameters()`` names of the unpruned model;
True keeps a weight. :func:`prune_at_init` runs any registered pruning method on a fastMRI model
in one call; :func:`find_masks` runs a method's procedure with the caller's training and search
steps (the training command's Lightning ones, or a plain loop's); :class:`PruneConfig` holds every
pruning default. The building blocks stay importable from their modules (``pun.py``: the PUN
search, ``baselines.py``: magnitude, random, SNIP, IMP, ``procedures.py``: the procedure of each
method, ``sparse_inference.py``, ...).
"""

from .apply import (
    PruningMasks,
    apply_masks,
    dense_state_dict,
    density_report,
    get_masks,
    is_pruned,
    make_permanent,
)
from .at_init import PruneReport, build_pruned_model, load_pruned_state_dict, prune_at_init
from .channel_slim import slim_channels
from .config import PruneConfig
from .methods import (
    PruningJob,
    PruningMethod,
    get_pruning_method,
    list_pruning_methods,
    register_pruning_method,
)
from .procedures import PruneResult, find_masks
from .pun import search_masks
from .slim_io import load_slim, load_slim_into, save_slim
from .sparse_file import load_sparse, load_sparse_into, save_sparse
from .sparse_inference import sparsify_for_inference

__all__ = [
    "PruneConfig",
    "PruneReport",
    "PruneResult",
    "PruningJob",
    "PruningMasks",
    "PruningMethod",
    "apply_masks",
    "build_pruned_model",
    "dense_state_dict",
    "density_report",
    "find_masks",
    "get_masks",
    "get_pruning_method",
    "is_pruned",
    "list_pruning_methods",
    "load_pruned_state_dict",
    "load_slim",
    "load_slim_into",
    "load_sparse",
    "load_sparse_into",
    "make_permanent",
    "prune_at_init",
    "register_pruning_method",
    "save_slim",
    "save_sparse",
    "search_masks",
    "slim_channels",
    "sparsify_for_inference",
]
