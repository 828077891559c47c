"""Learnable keep-probabilities for a set of weights: Gumbel-softmax relaxed Bernoulli pruning
masks.

One logit ``s_i`` per prunable weight, keep-probability ``p_i = sigmoid(s_i)``. A relaxed sample is
the Gumbel-softmax over the two outcomes {keep, drop} with logits ``(log p_i, log(1 - p_i))`` at
temperature ``tau``; for two outcomes that is exactly the binary concrete distribution

    m_i = sigmoid((s_i + log u - log(1 - u)) / tau),   u ~ U(0, 1),

(``torch.distributions.RelaxedBernoulli``). We draw ``u`` ourselves so that an explicit
``torch.Generator`` controls the noise (``RelaxedBernoulli.rsample`` only uses the global RNG),
which makes a search reproducible independently of other random draws in the process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .apply import PruningMasks
from .config import DEFAULTS, KL_REDUCTIONS
from .topk import topk_mask


class GumbelBernoulliMask(nn.Module):
    """Logits (one per weight) of independent Bernoulli pruning masks (1 = keep) for several
    parameters.

    Args:
        shapes: parameter name → shape of the weight it masks.
        temperature: Gumbel-softmax temperature ``tau`` (> 0); smaller is closer to hard {0, 1}.
        prior_p: keep-probability ``p0`` of the prior ``Bern(p0)`` in :meth:`kl`, in (0, 1).
        init_logit: initial logit of every weight (0 → ``p = 0.5``).

    The logits are ``nn.Parameter`` s (float32), so an optimiser over ``self.parameters()``
    optimises exactly them. Parameter names may contain dots, so they are stored in an
    ``nn.ParameterList`` in the order of ``names``.
    """

    def __init__(
        self,
        shapes: Mapping[str, torch.Size | tuple[int, ...]],
        temperature: float = DEFAULTS.temperature,
        prior_p: float = DEFAULTS.prior_p,
        init_logit: float = 0.0,
    ) -> None:
        super().__init__()
        if not shapes:
            raise ValueError("shapes: no parameter to mask")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < prior_p < 1:
            raise ValueError(f"prior_p must be in (0, 1), got {prior_p}")
        self.names: list[str] = list(shapes)
        self.temperature = float(temperature)
        self.prior_p = float(prior_p)
        self.logits = nn.ParameterList(
            [nn.Parameter(torch.full(tuple(shapes[n]), float(init_logit))) for n in self.names]
        )

    @property
    def masked_names(self) -> list[str]:
        """The parameters whose weights :meth:`sample` masks (here: one per logit tensor)."""
        return list(self.names)

    def numel(self) -> int:
        """Total number of logits (here: of masked weights)."""
        return sum(s.numel() for s in self.logits)

    def logit_dict(self) -> dict[str, torch.Tensor]:
        """name → logits (views of the parameters, with gradients)."""
        return dict(zip(self.names, self.logits, strict=True))

    def probabilities(self) -> dict[str, torch.Tensor]:
        """name → keep-probabilities ``sigmoid(s)``, same shape as the weight, float32."""
        return {n: torch.sigmoid(s) for n, s in self.logit_dict().items()}

    def sample(
        self, hard: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw one relaxed pruning mask per parameter.

        Args:
            hard: ``False``: relaxed sample in (0, 1). ``True``: straight-through — the forward
                value is the hard {0, 1} sample ``relaxed > 0.5`` (a Bernoulli(p) draw), the
                gradient that of the relaxed sample.
            generator: a CPU ``torch.Generator`` for the noise; ``None`` uses the global CPU
                RNG. The uniform noise is drawn on the CPU and copied to the logits' device, so
                one seed gives the same samples (and the same learned masks) on every device.

        Returns:
            name → float32 mask, shape of the weight, differentiable w.r.t. the logits.
        """
        out = {}
        for name, logit in self.logit_dict().items():
            u = torch.rand(logit.shape, generator=generator).to(logit.device, non_blocking=True)
            u = u.clamp(torch.finfo(u.dtype).tiny, 1.0 - torch.finfo(u.dtype).eps)
            relaxed = torch.sigmoid((logit + u.log() - (-u).log1p()) / self.temperature)
            if hard:
                relaxed = (relaxed > 0.5).to(relaxed.dtype) - relaxed.detach() + relaxed
            out[name] = relaxed
        return out

    def kl(self, reduction: str = DEFAULTS.kl_reduction) -> torch.Tensor:
        """``KL(Bern(p) || Bern(p0))`` over all weights, a scalar.

        ``reduction="sum"`` (used by PUN): the KL of the factorised mask distribution, i.e. the
        sum over weights. With a mean-reduced data loss and a KL weight ``beta`` the prior then
        pulls every logit with a force of order ``beta`` independent of the network size (with
        the default ``beta``: mean p 0.5 → ~0.3 in a few hundred Adam steps).
        ``"mean"`` divides by the number of weights.

        Raises:
            ValueError: ``reduction`` not one of :data:`~fastmri_pun.pruning.config.KL_REDUCTIONS`.
        """
        if reduction not in KL_REDUCTIONS:
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        # KL(Bern(p) || Bern(q)) = p log(p/q) + (1-p) log((1-p)/(1-q)) with log p = logσ(s),
        # log(1-p) = logσ(-s); in closed form rather than torch.distributions' kl_divergence,
        # whose Bernoulli KL indexes with boolean masks (a host sync per call on a GPU).
        log_q, log_1mq = math.log(self.prior_p), math.log1p(-self.prior_p)
        total = sum(
            (
                torch.sigmoid(s) * (F.logsigmoid(s) - log_q)
                + torch.sigmoid(-s) * (F.logsigmoid(-s) - log_1mq)
            ).sum()
            for s in self.logits
        )
        return total / self.numel() if reduction == "mean" else total

    @torch.no_grad()
    def hard_masks(
        self, density: float, min_per_layer: int = DEFAULTS.min_per_layer
    ) -> PruningMasks:
        """Hard pruning masks of the search result: the global top-k logits
        (:func:`~fastmri_pun.pruning.topk.topk_mask`), name → CPU bool mask of the weight's
        shape. Raises ``ValueError`` as ``topk_mask``."""
        return topk_mask(self.logit_dict(), density, min_per_layer)

    @torch.no_grad()
    def stats(self) -> dict[str, torch.Tensor]:
        """``mean_p`` (mean keep-probability) and ``frac_p_gt_half`` (fraction with p > 0.5),
        ``[]`` float32 tensors on the logits' device (no host sync: log them, or ``float()``
        them where the value is needed on the host)."""
        n = self.numel()
        mean_p = sum(torch.sigmoid(s).sum() for s in self.logits) / n
        frac = sum((s > 0).sum(dtype=torch.float32) for s in self.logits) / n
        return {"mean_p": mean_p, "frac_p_gt_half": frac}
