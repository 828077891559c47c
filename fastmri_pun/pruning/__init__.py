"""Model-agnostic pruning: PUN mask learning, classic baselines, masks via torch.nn.utils.prune.

Masks are ``dict[str, torch.BoolTensor]`` keyed by ``named_parameters()`` names of the unpruned
model; True keeps a weight. :class:`PruneConfig` (``config.py``) holds every pruning default;
``methods.py`` is the registry of the pruning methods; :func:`prune_at_init` (``at_init.py``) runs
any of them on a fastMRI model in one call.
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
from .at_init import PruneReport, build_pruned_model, load_pruned_state_dict, prune_at_init
from .baselines import (
    imp_prune_step,
    imp_schedule,
    magnitude_masks,
    magnitude_scores,
    random_masks,
    snip_masks,
    snip_scores,
)
from .channel_slim import slim_channels
from .config import DEFAULT_PRIOR_P, DEFAULTS, PruneConfig, check_density
from .methods import (
    PruningMethod,
    get_pruning_method,
    list_pruning_methods,
    pruning_methods_help,
    pruning_methods_table,
    register_pruning_method,
)
from .pun import MaskedWeights, pun_loss, search_masks, topk_mask
from .sample_loss import LOSS_NAMES, image_loss, make_loss_fn
from .scores import GumbelBernoulliMask
from .select import DEFAULT_PRUNABLE_TYPES, select_parameters
from .slim_io import SlimCheckpoint, load_slim, load_slim_into, save_slim
from .sparse_file import SparseCheckpoint, load_sparse, load_sparse_into, save_sparse

__all__ = [
    "DEFAULTS",
    "DEFAULT_PRIOR_P",
    "DEFAULT_PRUNABLE_TYPES",
    "LOSS_NAMES",
    "GumbelBernoulliMask",
    "MaskedWeights",
    "Masks",
    "PruneConfig",
    "PruneReport",
    "PruningMethod",
    "SlimCheckpoint",
    "SparseCheckpoint",
    "apply_masks",
    "build_pruned_model",
    "check_density",
    "dense_state_dict",
    "density_report",
    "get_masks",
    "get_pruning_method",
    "image_loss",
    "imp_prune_step",
    "imp_schedule",
    "is_pruned",
    "list_pruning_methods",
    "load_pruned_state_dict",
    "load_sparse",
    "load_slim",
    "load_slim_into",
    "load_sparse_into",
    "magnitude_masks",
    "magnitude_scores",
    "make_loss_fn",
    "make_permanent",
    "masks_from_state_dict",
    "prune_at_init",
    "pruning_methods_help",
    "pruning_methods_table",
    "pun_loss",
    "random_masks",
    "register_pruning_method",
    "save_slim",
    "save_sparse",
    "search_masks",
    "select_parameters",
    "slim_channels",
    "snip_masks",
    "snip_scores",
    "topk_mask",
    "validate_masks",
]
