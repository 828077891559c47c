"""PUN pruning-mask learning (PUN-IT at initialisation, PUN-AT on trained weights) for any
``nn.Module``.

The network runs with frozen weights ``w0 ⊙ m`` where ``m`` is a relaxed Bernoulli sample from
:class:`~fastmri_pun.pruning.scores.GumbelBernoulliMask`; only the mask logits are optimised:

    loss = loss_fn(model, batch) + beta * KL(Bern(p) || Bern(p0))

The reparametrisation uses ``torch.nn.utils.parametrize`` so that ``loss_fn`` keeps calling the
model object itself (``model(masked_kspace, mask, ...)``, attribute look-ups and signature checks
unchanged). The final hard pruning mask keeps the top-k weights by logit, globally across
layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .apply import PruningMasks, is_pruned
from .config import DEFAULTS, check_density
from .scores import GumbelBernoulliMask
from .select import select_parameters
from .topk import keep_budget, topk_mask

LossFn = Callable[[nn.Module, Any], torch.Tensor]

__all__ = [
    "LossFn",
    "MaskedWeights",
    "cycle_batches",
    "keep_budget",
    "learn_mask_logits",
    "pun_loss",
    "search_masks",
    "topk_mask",
]


def cycle_batches(batches: Iterable[Any]) -> Iterator[Any]:
    """Re-iterate ``batches`` forever (unlike ``itertools.cycle``, without keeping them all)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError(
                "batches: the iterable yielded no batch (pass a list or a DataLoader, which can "
                "be iterated again)"
            )


class _MaskState:
    """Current pruning mask per parameter name, shared by the parametrisations of one model."""

    def __init__(self) -> None:
        self.current: dict[str, torch.Tensor] = {}


class _Multiply(nn.Module):
    """Parametrisation ``w -> w * state.current[name]``."""

    def __init__(self, state: _MaskState, name: str) -> None:
        super().__init__()
        self._state = state
        self._name = name

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mask = self._state.current.get(self._name)
        return weight if mask is None else weight * mask


class MaskedWeights:
    """Run ``model`` with ``w0 ⊙ m`` for the named parameters, ``w0`` frozen.

    While attached (``with MaskedWeights(model, names) as mw:`` or :meth:`attach`):
    every parameter of ``model`` has ``requires_grad=False``; each named weight is computed as
    ``w0 * mask`` with the tensor set by :meth:`set` (a ``[*param.shape]`` float tensor that may
    carry gradients to mask logits). :meth:`detach` removes the parametrisations (the original
    ``nn.Parameter`` objects come back), restores ``requires_grad`` and the buffers (e.g.
    BatchNorm running statistics updated by the search), so the model leaves as it entered.

    Raises:
        ValueError: ``model`` is already pruned with ``torch.nn.utils.prune``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        if is_pruned(model):
            raise ValueError("model is already pruned; search masks on the unpruned model")
        params = dict(model.named_parameters())
        for name in names:
            if name not in params:
                raise ValueError(f"parameter {name!r} not found in {type(model).__name__}")
        self.model = model
        self.names = list(names)
        self._state = _MaskState()
        self._requires_grad: dict[str, bool] | None = None
        self._buffers: dict[str, torch.Tensor] = {}
        self._orders: dict[str, list[str]] = {}

    @property
    def attached(self) -> bool:
        return self._requires_grad is not None

    def attach(self) -> MaskedWeights:
        if self.attached:
            return self
        self._requires_grad = {n: p.requires_grad for n, p in self.model.named_parameters()}
        self._buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        for p in self.model.parameters():
            p.requires_grad_(False)
        for name in self.names:
            module_name, _, attr = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            self._orders.setdefault(module_name, list(module._parameters))
            parametrize.register_parametrization(module, attr, _Multiply(self._state, name))
        return self

    def detach(self) -> None:
        if not self.attached:
            return
        for name in self.names:
            module_name, _, attr = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
        # restored parameters come back last: keep the named_parameters()/state_dict order
        for module_name, order in self._orders.items():
            params = self.model.get_submodule(module_name)._parameters
            for key in order:
                params[key] = params.pop(key)
        requires_grad = self._requires_grad
        for n, p in self.model.named_parameters():
            p.requires_grad_(requires_grad.get(n, True))
        buffers = dict(self.model.named_buffers())
        with torch.no_grad():
            for n, b in self._buffers.items():
                buffers[n].copy_(b)
        self._state.current = {}
        self._orders = {}
        self._requires_grad = None
        self._buffers = {}

    def set(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Pruning masks (relaxed or hard) used by the next forward passes: name →
        ``[*param.shape]`` float tensor."""
        self._state.current = dict(masks)

    def __enter__(self) -> MaskedWeights:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()


def pun_loss(
    masked: MaskedWeights,
    scores: GumbelBernoulliMask,
    batch: Any,
    loss_fn: LossFn,
    kl_weight: float,
    kl_reduction: str = DEFAULTS.kl_reduction,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One PUN objective evaluation on ``batch`` with a fresh relaxed pruning-mask sample.

    ``w0 * m`` is computed once per forward (``parametrize.cached()``), except for a model that
    recomputes its unrolls in the backward (``checkpoint_unrolls``, e.g. MoDL): there the cached
    product would belong to the first checkpointed unroll, which the recomputation of the others
    cannot reproduce, so each unroll computes its own.

    Returns:
        ``(total, data_loss, kl)`` scalars; ``total = data_loss + kl_weight * kl`` carries the
        gradient to the logits only.
    """
    masked.set(scores.sample(generator=generator))
    recomputes = bool(getattr(masked.model, "checkpoint_unrolls", False))
    with nullcontext() if recomputes else parametrize.cached():
        data = loss_fn(masked.model, batch)
    kl = scores.kl(kl_reduction)
    return data + kl_weight * kl, data, kl


def learn_mask_logits(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn,
    scores: GumbelBernoulliMask,
    *,
    steps: int,
    kl_weight: float = DEFAULTS.kl_weight,
    lr: float = DEFAULTS.search_lr,
    kl_reduction: str = DEFAULTS.kl_reduction,
    seed: int = DEFAULTS.seed,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> GumbelBernoulliMask:
    """The PUN search loop: ``steps`` Adam steps on the logits of the mask distribution
    ``scores`` (moved to the model's device and learned in place) with ``model``'s weights
    frozen; returns ``scores``. Arguments as :func:`search_masks`, which keeps the top-k of
    the result.

    Raises:
        ValueError: ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    params = dict(model.named_parameters())
    names = scores.masked_names
    device = params[names[0]].device
    scores = scores.to(device)
    optimizer = torch.optim.Adam(scores.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # CPU: same noise on every device
    was_training = model.training
    model.train()
    try:
        with MaskedWeights(model, names) as masked:
            for step, batch in zip(range(steps), cycle_batches(batches), strict=False):
                optimizer.zero_grad(set_to_none=True)
                total, data, kl = pun_loss(
                    masked, scores, batch, loss_fn, kl_weight, kl_reduction, generator
                )
                total.backward()
                optimizer.step()
                if log is not None:
                    values = {"loss": total, "data_loss": data, "kl": kl} | scores.stats()
                    log(step, {k: float(v) for k, v in values.items()})
    finally:
        model.train(was_training)
    return scores


def search_masks(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn,
    *,
    density: float,
    steps: int,
    names: Sequence[str] | None = None,
    temperature: float = DEFAULTS.temperature,
    kl_weight: float = DEFAULTS.kl_weight,
    prior_p: float = DEFAULTS.prior_p,
    lr: float = DEFAULTS.search_lr,
    kl_reduction: str = DEFAULTS.kl_reduction,
    min_per_layer: int = DEFAULTS.min_per_layer,
    seed: int = DEFAULTS.seed,
    log: Callable[[int, dict[str, float]], None] | None = None,
    scores: GumbelBernoulliMask | None = None,
) -> tuple[PruningMasks, GumbelBernoulliMask]:
    """PUN search of pruning masks in a plain PyTorch loop (the Lightning version is
    ``MaskSearchModule``).

    Args:
        model: network with the weights to keep frozen (initial → PUN-IT, trained → PUN-AT). It
            leaves the search unchanged (parameters, buffers, ``requires_grad``, train/eval mode).
        batches: iterable of batches, cycled until ``steps`` steps; passed to ``loss_fn`` as is.
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean-reduced supervised loss.
        density: fraction of the selected weights the returned pruning masks keep, in (0, 1].
        steps: number of Adam steps on the logits.
        names: parameters to mask (default :func:`select_parameters`).
        temperature, kl_weight, prior_p, kl_reduction: see :class:`GumbelBernoulliMask`;
            defaults: :class:`~fastmri_pun.pruning.config.PruneConfig`'s.
        lr: Adam learning rate of the logits (``PruneConfig.search_lr``).
        min_per_layer: see :func:`topk_mask`.
        seed: seed of the Gumbel noise generator.
        log: optional ``log(step, {"loss", "data_loss", "kl", "mean_p", "frac_p_gt_half"})``.
        scores: a prebuilt mask distribution to learn instead of one logit per weight of
            ``names``, e.g. :class:`~fastmri_pun.pruning.channel_scores.ChannelScores` (one
            logit per output channel); it masks ``scores.masked_names`` and gives the result by
            ``scores.hard_masks(density, min_per_layer)``. ``names``, ``temperature`` and
            ``prior_p`` are then unused (they are the distribution's own).

    Returns:
        ``(masks, scores)``: the hard pruning masks (CPU bool; global top-k of the logits for the
        default distribution) and the learned logits.
    """
    density = check_density(density)
    if scores is None:
        params = dict(model.named_parameters())
        names = list(names) if names is not None else select_parameters(model)
        scores = GumbelBernoulliMask(
            {n: params[n].shape for n in names}, temperature=temperature, prior_p=prior_p
        )
    scores = learn_mask_logits(
        model, batches, loss_fn, scores, steps=steps, kl_weight=kl_weight, lr=lr,
        kl_reduction=kl_reduction, seed=seed, log=log,
    )  # fmt: skip
    return scores.hard_masks(density, min_per_layer), scores
