"""Which parameters of a model are prunable.

Pruning masks everywhere in ``fastmri_pun.pruning`` are keyed by the parameter name as given by
``model.named_parameters()`` of the *unpruned* model (``"denoiser.layers.0.weight"``). Once
``torch.nn.utils.prune`` has been applied, that name appears as ``<name>_orig``; the helpers here
map it back so that selection gives the same names before and after pruning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from torch import nn

#: Module types whose ``weight`` is selected by default. Biases and normalisation parameters stay
#: dense (they are a negligible fraction of the weights and pruning them hurts disproportionately).
DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)

_PRUNE_SUFFIX = "_orig"


def unpruned_name(name: str, model: nn.Module) -> str:
    """Map ``"a.weight_orig"`` (a parameter renamed by ``torch.nn.utils.prune``) to ``"a.weight"``."""
    if name.endswith(_PRUNE_SUFFIX):
        module_name, _, attr = name.rpartition(".")
        base = attr[: -len(_PRUNE_SUFFIX)]
        module = model.get_submodule(module_name) if module_name else model
        if hasattr(module, base + "_mask"):
            return f"{module_name}.{base}" if module_name else base
    return name


def named_weights(model: nn.Module) -> Iterable[tuple[str, nn.Parameter]]:
    """``named_parameters()`` with names of the unpruned model (``weight_orig`` → ``weight``)."""
    for name, param in model.named_parameters():
        yield unpruned_name(name, model), param


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def select_parameters(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    types: tuple[type[nn.Module], ...] = DEFAULT_PRUNABLE_TYPES,
    trainable_only: bool = False,
) -> list[str]:
    """Names of the parameters to prune, in ``named_parameters()`` order.

    Args:
        model: any ``nn.Module`` (unpruned, or pruned with ``torch.nn.utils.prune``).
        include: shell-style patterns (``fnmatch``, e.g. ``"denoiser.*"``) matched against
            parameter names. ``None``: the ``weight`` of every module of one of ``types``.
            Given: every parameter matching one of the patterns (any module type).
        exclude: patterns removed from the selection (e.g. ``["sens_net.*"]`` when coil maps are
            precomputed and the sensitivity network is unused).
        types: module types used by the default selection.
        trainable_only: drop parameters with ``requires_grad=False`` (e.g. a frozen, unused
            coil-sensitivity network), which training would never update.

    Returns:
        Parameter names of the unpruned model.

    Raises:
        ValueError: a pattern matches no parameter, the selection is empty, or a selected
            parameter is shared by several modules (tied weights cannot be masked per module).
    """
    names = dict(named_weights(model))
    if include is None:
        selected = []
        for module_name, module in model.named_modules():
            if isinstance(module, types):
                name = f"{module_name}.weight" if module_name else "weight"
                if name in names:
                    selected.append(name)
    else:
        for pattern in include:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"include pattern {pattern!r} matches no parameter of the model")
        selected = [n for n in names if _matches(n, include)]
    if exclude:
        for pattern in exclude:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"exclude pattern {pattern!r} matches no parameter of the model")
        selected = [n for n in selected if not _matches(n, exclude)]
    if trainable_only:
        selected = [n for n in selected if names[n].requires_grad]
    if not selected:
        raise ValueError(
            f"parameter selection (include={include}, exclude={exclude}, "
            f"trainable_only={trainable_only}) matches no parameter of {type(model).__name__}"
        )
    _check_not_tied(model, selected)
    return selected


def _check_not_tied(model: nn.Module, selected: Sequence[str]) -> None:
    """Tied weights (one Parameter under several names) would be masked in one module only."""
    seen: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        name = unpruned_name(name, model)
        first = seen.setdefault(id(param), name)
        if first != name and (first in selected or name in selected):
            raise ValueError(
                f"parameter {first!r} is shared with {name!r}; tied weights cannot be pruned"
            )
