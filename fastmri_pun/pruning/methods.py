"""Registry of the pruning methods: the one list behind the CLI choices, the docs and the dispatch.

A :class:`PruningMethod` says what a method does before the final sparse training (dense
training first or not, which mask procedure), where its mask comes from and where the final
training starts from. The procedures themselves (they run trainers) live in
:mod:`fastmri_pun.app.train.mask_procedures`, keyed by :attr:`PruningMethod.procedure`;
``workflows.prune.find_masks(method, ...)`` looks the method up here.

Built-in methods, in this order: ``pun-it``, ``pun-at``, ``pun-it-channels``, ``magnitude``,
``magnitude-at``, ``random``, ``snip``, ``imp`` (see :func:`pruning_methods_table`). A new method is one
:func:`register_pruning_method` call (plus, for a new procedure,
``workflows.prune.register_mask_procedure``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.markdown import markdown_table

__all__ = [
    "PRUNING_METHODS",
    "PruningMethod",
    "get_pruning_method",
    "list_pruning_methods",
    "pruning_methods_help",
    "pruning_methods_table",
    "register_pruning_method",
]


@dataclass(frozen=True)
class PruningMethod:
    """One pruning method.

    Attributes:
        name: the method's name (``--prune`` value), e.g. ``"pun-it"``.
        description: one line for ``--help``.
        mask_from: what the mask is computed from (a docs table cell).
        starts_from: the weights the final sparse training starts from (a docs table cell).
        procedure: key of the mask procedure in :mod:`fastmri_pun.app.train.mask_procedures`
            (``"pun-search"``, ``"pun-channel-search"``, ``"magnitude"``, ``"random"``, ``"snip"``, ``"imp"``).
        dense_first: train densely (``train_fn(model, "dense")``) before finding the mask; the
            final training then starts from the trained weights.
        search: the procedure runs the PUN search (needs ``make_trainer``, ``loss_fn``,
            ``train_loader``).
        uses_batches: the procedure scores weights on training batches (needs ``loss_fn``,
            ``train_loader``).
        trains_rounds: the procedure trains the masked model in rounds (IMP; needs ``train_fn``).
        whole_channels: the masks prune whole channels (``channel_fraction`` and
            ``channel_allocation`` apply; the density reached is the nearest channel counts').
    """

    name: str
    description: str
    mask_from: str
    starts_from: str
    procedure: str
    dense_first: bool = False
    search: bool = False
    uses_batches: bool = False
    trains_rounds: bool = False
    whole_channels: bool = False

    @property
    def required_arguments(self) -> tuple[str, ...]:
        """The ``find_masks`` arguments this method needs, in a fixed order."""
        needs = {
            "train_fn": self.dense_first or self.trains_rounds,
            "make_trainer": self.search,
            "loss_fn": self.search or self.uses_batches,
            "train_loader": self.search or self.uses_batches,
        }
        return tuple(name for name, needed in needs.items() if needed)


#: name → method, in registration order (the order of the CLI choices and the docs table).
PRUNING_METHODS: dict[str, PruningMethod] = {}


def register_pruning_method(method: PruningMethod) -> PruningMethod:
    """Add ``method`` to the registry; returns it.

    Raises:
        ValueError: another method is already registered under ``method.name``, or the name is
            ``"none"`` (reserved for dense training).
    """
    if method.name == "none":
        raise ValueError("pruning method name 'none' is reserved for dense training")
    if PRUNING_METHODS.get(method.name, method) != method:
        raise ValueError(f"pruning method {method.name!r} is already registered")
    PRUNING_METHODS[method.name] = method
    return method


def list_pruning_methods() -> list[str]:
    """Names of the registered pruning methods, in registration order (without ``"none"``)."""
    return list(PRUNING_METHODS)


def get_pruning_method(name: str) -> PruningMethod:
    """The method registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    if name not in PRUNING_METHODS:
        raise ValueError(
            f"unknown pruning method {name!r}; choose one of {', '.join(list_pruning_methods())}"
        )
    return PRUNING_METHODS[name]


def pruning_methods_table() -> list[str]:
    """Markdown lines of the methods table: ``| method | mask from | final training starts from |``."""
    rows = [(f"`{m.name}`", m.mask_from, m.starts_from) for m in PRUNING_METHODS.values()]
    return markdown_table(("method", "mask from", "final training starts from"), rows)


def pruning_methods_help() -> str:
    """One line describing every method, for a ``--prune`` help text:
    ``"'pun-it' (mask learned at initialisation), 'pun-at' (...), ..."``."""
    return ", ".join(f"'{m.name}' ({m.description})" for m in PRUNING_METHODS.values())


for _method in (
    PruningMethod(
        "pun-it",
        "PUN mask learned on the frozen initial weights",
        "PUN search on the frozen initial weights w₀",
        "w₀ (kept weights only)",
        procedure="pun-search",
        search=True,
    ),
    PruningMethod(
        "pun-at",
        "dense training, PUN mask learned on the trained weights, then fine-tuning",
        "dense training, then PUN search on the trained weights",
        "trained weights (fine-tune)",
        procedure="pun-search",
        dense_first=True,
        search=True,
    ),
    PruningMethod(
        "pun-it-channels",
        "structured PUN: one mask logit per output channel, learned on the frozen initial "
        "weights; whole channels pruned (density = fraction of weights kept)",
        "PUN search of one logit per output channel on the frozen w₀",
        "w₀ (kept channels only)",
        procedure="pun-channel-search",
        whole_channels=True,
        search=True,
    ),
    PruningMethod(
        "magnitude",
        "global magnitude pruning at initialisation",
        "global |w| at init",
        "w₀",
        procedure="magnitude",
    ),
    PruningMethod(
        "magnitude-at",
        "global magnitude pruning after dense training",
        "global |w| after dense training",
        "trained weights",
        procedure="magnitude",
        dense_first=True,
    ),
    PruningMethod(
        "random",
        "uniformly random mask",
        "uniform random mask",
        "w₀",
        procedure="random",
    ),
    PruningMethod(
        "snip",
        "connection sensitivity |g ⊙ w| at initialisation",
        "|g ⊙ w| at init on one batch",
        "w₀",
        procedure="snip",
        uses_batches=True,
    ),
    PruningMethod(
        "imp",
        "iterative magnitude pruning with rewinding to the initial weights",
        "iterative magnitude pruning with rewinding to w₀",
        "w₀",
        procedure="imp",
        trains_rounds=True,
    ),
):
    register_pruning_method(_method)
