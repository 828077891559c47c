"""Registry of the pruning methods: the one list behind the CLI choices, the docs and the dispatch.

A :class:`PruningMethod` says what a method does before the final sparse training (dense
training first or not), which *procedure* computes its pruning masks (a callable of a
:class:`PruningJob`), where the masks come from and where the final training starts from.
:func:`~fastmri_pun.pruning.procedures.find_masks` looks a method up here and runs its procedure,
the same in a plain PyTorch loop (:func:`~fastmri_pun.pruning.at_init.prune_at_init`) and in the
Lightning training command; the built-in methods and their procedures are registered in
:mod:`fastmri_pun.pruning.procedures`.

Built-in methods, in this order: ``pun-it``, ``pun-at``, ``pun-it-channels``, ``magnitude``,
``magnitude-at``, ``random``, ``snip``, ``imp`` (see :func:`pruning_methods_table`). A new method
is one :func:`register_pruning_method` call with its procedure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from ..utils.markdown import markdown_table
from .apply import PruningMasks
from .config import PruneConfig
from .pun import LossFn
from .scores import GumbelBernoulliMask

__all__ = [
    "MASK_PHASE",
    "PRUNING_METHODS",
    "PhaseRecorder",
    "PruningJob",
    "PruningMethod",
    "PruningProcedure",
    "SearchStep",
    "TrainStep",
    "get_pruning_method",
    "list_pruning_methods",
    "pruning_methods_help",
    "pruning_methods_table",
    "register_pruning_method",
]

_T = TypeVar("_T")

#: ``train_step(phase)``: trains the job's model in place for the caller's training budget as
#: phase ``phase`` (``"dense"``, ``"imp-1"``, ...) — dense, or sparse when pruning masks are
#: applied (``torch.nn.utils.prune``).
TrainStep = Callable[[str], None]

#: ``search_step(job, scores) -> None``: the PUN search, which learns the logits of the mask
#: distribution ``scores`` (one per weight, or per output channel) in place, on ``job.model``
#: with frozen weights, ``job.batches`` and ``job.loss_fn`` for ``job.cfg.search_steps`` steps
#: (or ``search_epochs``); the procedure then keeps the top-k logits at ``job.cfg.density``.
#: The plain-loop step is :func:`~fastmri_pun.pruning.loop_steps.loop_search_step`, the Lightning
#: one :func:`~fastmri_pun.training.mask_search.lightning_search_step`.
SearchStep = Callable[["PruningJob", GumbelBernoulliMask], None]

#: ``record_phase(phase, run) -> run()``: runs one phase and records it (its compute, its time);
#: :func:`~fastmri_pun.pruning.at_init.prune_at_init` passes its phase meter.
PhaseRecorder = Callable[[str, Callable[[], Any]], Any]

#: The phase of a data-free pruning mask computation (magnitude, random): recorded by
#: ``record_phase`` (``PruneReport.phases["mask"]``) but not listed in
#: :attr:`PruningJob.phases`, which lists the phases that run the model.
MASK_PHASE = "mask"


@dataclass
class PruningJob:
    """What a pruning procedure works with (built by
    :func:`~fastmri_pun.pruning.procedures.find_masks`).

    Attributes:
        model: the unpruned network, at the weights the final training starts from (after the
            dense training of ``dense_first`` methods). A procedure may train it and leave it
            pruned: ``find_masks`` restores ``init`` afterwards.
        names: the parameters to prune (``cfg``'s selection).
        cfg: the settings; ``cfg.density`` is the fraction of the weights kept.
        init: CPU copy of ``model.state_dict()`` before the procedure (IMP rewinds to it).
        batches: training batches (iterated again as needed) for the search and SNIP, or
            ``None``.
        loss_fn: ``loss_fn(model, batch) -> []`` mean-reduced supervised loss of a batch as
            ``batches`` yields it (the loss moves it to the model's device), or ``None``.
        train_step: see :data:`TrainStep`, or ``None``.
        search_step: see :data:`SearchStep`, or ``None``.
        record_phase: see :data:`PhaseRecorder`; ``None``: phases are run, not recorded.
        phases: the phases run so far that ran the model, in order (``"dense"``,
            ``"search"``, ``"snip"``, ``"imp-1"``, ...).
    """

    model: nn.Module
    names: list[str]
    cfg: PruneConfig
    init: dict[str, torch.Tensor] = field(default_factory=dict)
    batches: Iterable[Any] | None = None
    loss_fn: LossFn | None = None
    train_step: TrainStep | None = None
    search_step: SearchStep | None = None
    record_phase: PhaseRecorder | None = None
    phases: list[str] = field(default_factory=list)

    def phase(self, phase: str, run: Callable[[], _T]) -> _T:
        """Run ``run()`` as phase ``phase`` through ``record_phase``; list the phase in
        :attr:`phases` (unless it is the data-free :data:`MASK_PHASE`). Returns ``run()``."""
        result = run() if self.record_phase is None else self.record_phase(phase, run)
        if phase != MASK_PHASE:
            self.phases.append(phase)
        return result


#: ``procedure(job) -> pruning masks`` (name → bool tensor, CPU): computes a method's pruning
#: masks at ``job.cfg.density``, running its phases with :meth:`PruningJob.phase`.
PruningProcedure = Callable[[PruningJob], PruningMasks]


@dataclass(frozen=True)
class PruningMethod:
    """One pruning method.

    Attributes:
        name: the method's name (``--prune`` value), e.g. ``"pun-it"``.
        description: one line for ``--help``.
        mask_from: what the pruning mask is computed from (a docs table cell).
        starts_from: the weights the final sparse training starts from (a docs table cell).
        procedure: the :data:`PruningProcedure` computing the pruning masks, e.g.
            :func:`~fastmri_pun.pruning.procedures.pun_search` or
            :func:`~fastmri_pun.pruning.procedures.magnitude_pruning`.
        dense_first: train densely (phase ``"dense"``) before the procedure; the final
            training then starts from the trained weights.
        search: the procedure runs the PUN search (needs ``search_step``, ``loss_fn``,
            ``batches``).
        uses_batches: the procedure scores weights on training batches (needs ``loss_fn``,
            ``batches``).
        trains_rounds: the procedure trains the masked model in rounds (IMP; needs
            ``train_step``).
        whole_channels: the pruning masks remove whole channels (``channel_fraction`` and
            ``channel_allocation`` apply; the density reached is the nearest channel counts').
    """

    name: str
    description: str
    mask_from: str
    starts_from: str
    procedure: PruningProcedure
    dense_first: bool = False
    search: bool = False
    uses_batches: bool = False
    trains_rounds: bool = False
    whole_channels: bool = False

    @property
    def required_arguments(self) -> tuple[str, ...]:
        """The ``find_masks`` arguments this method needs, in a fixed order."""
        needs = {
            "train_step": self.dense_first or self.trains_rounds,
            "search_step": self.search,
            "loss_fn": self.search or self.uses_batches,
            "batches": self.search or self.uses_batches,
        }
        return tuple(name for name, needed in needs.items() if needed)


#: name → method, in registration order (the order of the CLI choices and the docs table).
PRUNING_METHODS: dict[str, PruningMethod] = {}


def register_pruning_method(method: PruningMethod) -> PruningMethod:
    """Add ``method`` to the registry; returns it.

    Raises:
        ValueError: another method is already registered under ``method.name``, the name is
            ``"none"`` (reserved for dense training), or ``method.procedure`` is not callable.
    """
    if method.name == "none":
        raise ValueError("pruning method name 'none' is reserved for dense training")
    if not callable(method.procedure):
        raise ValueError(
            f"pruning method {method.name!r}: procedure must be a callable of a PruningJob, "
            f"got {type(method.procedure).__name__}"
        )
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
