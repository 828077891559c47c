"""Model-agnostic pruning: PUN mask learning, classic baselines, masks via torch.nn.utils.prune.

Masks are ``dict[str, torch.BoolTensor]`` keyed by ``named_parameters()`` names of the unpruned
model; True keeps a weight.
"""

from .apply import (
    Masks,
    apply_masks,
    dense_state_dict,
    density_report,
    get_masks,
    is_pruned,
    make_permanent,
    masks_from_state_dict,
    validate_masks,
)
from .baselines import (
    imp_prune_step,
    imp_schedule,
    magnitude_masks,
    magnitude_scores,
    random_masks,
    snip_masks,
    snip_scores,
)
from .export import SparseCheckpoint, load_sparse, load_sparse_into, save_sparse
from .pun import MaskedWeights, check_density, pun_loss, search_masks, topk_mask
from .scores import DEFAULT_PRIOR_P, GumbelBernoulliMask
from .select import DEFAULT_PRUNABLE_TYPES, select_parameters

__all__ = [
    "DEFAULT_PRIOR_P",
    "DEFAULT_PRUNABLE_TYPES",
    "GumbelBernoulliMask",
    "MaskedWeights",
    "Masks",
    "SparseCheckpoint",
    "apply_masks",
    "check_density",
    "dense_state_dict",
    "density_report",
    "get_masks",
    "imp_prune_step",
    "imp_schedule",
    "is_pruned",
    "load_sparse",
    "load_sparse_into",
    "magnitude_masks",
    "magnitude_scores",
    "make_permanent",
    "masks_from_state_dict",
    "pun_loss",
    "random_masks",
    "save_sparse",
    "search_masks",
    "select_parameters",
    "snip_masks",
    "snip_scores",
    "topk_mask",
    "validate_masks",
]
