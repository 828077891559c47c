"""One call that prunes a fastMRI model: :func:`prune_at_init` (and :func:`build_pruned_model`).

``prune_at_init(model, dataloader, density=0.03, method="pun-it")`` runs a registered pruning
method (:func:`~fastmri_pun.pruning.methods.list_pruning_methods`) in a plain PyTorch loop,
applies its pruning masks to ``model`` in place with ``torch.nn.utils.prune`` and returns the
same model, with a :class:`PruneReport` as ``model.prune_report``.

No hand-written loss is needed: the forward call and the loss come from the batch's fields and
the loss name (:mod:`fastmri_pun.pruning.sample_loss`). The method's procedure is the one the
Lightning training command runs: both call :func:`~fastmri_pun.pruning.procedures.find_masks`,
this module with the plain-loop steps of :mod:`fastmri_pun.pruning.loop_steps`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..models.registry import build_model
from .apply import apply_masks, density_report, get_masks, is_pruned, masks_from_state_dict
from .config import DEFAULTS, PruneConfig, check_density
from .loop_steps import PhaseMeter, adam_steps, loop_search_step
from .methods import get_pruning_method
from .procedures import find_masks
from .pun import LossFn
from .sample_loss import ImageLoss, make_loss_fn

__all__ = ["PruneReport", "build_pruned_model", "load_pruned_state_dict", "prune_at_init"]


@dataclass
class PruneReport:
    """What :func:`prune_at_init` did (``model.prune_report``).

    Attributes:
        method: the pruning method's name.
        target_density: the requested fraction of the prunable weights kept.
        density: achieved fraction kept, all masked layers together.
        kept: weights kept.
        total: prunable weights (the masked parameters' sizes summed).
        layers: parameter name → ``{"kept": int, "total": int, "density": float}`` of its
            pruning mask.
        seed: the seed of the run.
        steps: PUN search steps (0 for methods without a search).
        phases: phase → compute of that phase: ``{"steps": int, "samples": int,
            "wall_time_s": float}``; ``samples`` counts per-sample forward(+backward) passes,
            as the training command's compute accounting. Phases: ``"dense"`` (dense training
            of pun-at / magnitude-at), ``"search"``, ``"snip"``, ``"imp-1"``, ``"imp-2"``, ...,
            ``"mask"`` (the data-free pruning mask computation of magnitude / random).
        wall_time_s: total seconds of the call.
    """

    method: str
    target_density: float
    density: float
    kept: int
    total: int
    layers: dict[str, dict[str, float]]
    seed: int
    steps: int = 0
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain Python values (JSON-serialisable)."""
        return asdict(self)


@contextmanager
def _seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed the global CPU generator (and the generator of ``device`` when it is a GPU) inside
    the block and restore their states after it.

    Every random draw of the pruning methods (weight initialisation, random masks, Gumbel noise)
    comes from the CPU generator, so the same seed gives the same masks on every device; the
    GPU's own generator only drives what runs there (e.g. dropout). Only that one GPU is
    touched: forking every visible GPU's generator would create a CUDA context on each."""
    cuda = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # the CPU generator and (lazily) the GPUs'
        yield


def prune_at_init(
    model: nn.Module,
    dataloader: Iterable[Any] | None = None,
    density: float = DEFAULTS.density,
    method: str = "pun-it",
    *,
    steps: int = DEFAULTS.search_steps,
    loss: str | ImageLoss = "ssim_l1",
    loss_fn: LossFn | None = None,
    seed: int = DEFAULTS.seed,
    train_steps: int = 100,
    train_lr: float = 1e-3,
    config: PruneConfig | None = None,
) -> nn.Module:
    """Prune ``model`` with a registered method and return the same model, masked in place.

    The pruning masks are applied with ``torch.nn.utils.prune`` (``weight_orig`` parameter +
    ``weight_mask`` buffer per masked weight), so training the returned model with any optimiser
    keeps the pruned weights exactly zero, and ``model.state_dict()`` reloads into a fresh model
    with :func:`load_pruned_state_dict`. ``model.prune_report`` holds the :class:`PruneReport`.

    Example::

        model = fastmri.models.VarNet(num_cascades=4)
        model = fastmri_pun.prune_at_init(model, train_loader, density=0.03, method="pun-it")
        print(model.prune_report.density)  # 0.03

    Args:
        model: unpruned network (``fastmri.models.VarNet`` / ``Unet``, :class:`MoDL`, any
            ``nn.Module``); its device is used for the batches.
        dataloader: iterable of fastMRI samples (collated ``VarNetSample``, ``SenseSample`` or
            ``UnetSample``; see the module docstring), iterated again as needed. ``None`` is
            allowed for methods that need no data (``"magnitude"``, ``"random"``).
        density: fraction of the prunable weights kept, in (0, 1]; exactly
            ``round(density * N)`` weights are kept.
        method: a name of :func:`~fastmri_pun.pruning.methods.list_pruning_methods`:
            ``"pun-it"``, ``"pun-at"``, ``"pun-it-channels"``, ``"magnitude"``,
            ``"magnitude-at"``, ``"random"``, ``"snip"``, ``"imp"``.
        steps: Adam steps of the PUN mask search (``pun-it``, ``pun-at``).
        loss: a loss name of :data:`LOSS_NAMES` (default ``"ssim_l1"``) or an ``ImageLoss``
            ``(output [B, h, w], target [B, h, w], max_value [B]) -> []``.
        loss_fn: ``loss_fn(model, batch) -> []`` mean-reduced loss for batches of any other
            type; replaces ``loss`` and the forward call built from the sample's fields.
        seed: seeds everything random (Gumbel noise, random masks, data-loader shuffling,
            dropout) inside the call; the global RNG state is restored afterwards. Same seed,
            same model and data → identical pruning masks, the same as the training command's
            for the same batches and training steps.
        train_steps: Adam steps of each training the method runs before its pruning mask: the dense
            training of ``pun-at`` / ``magnitude-at`` and every IMP round.
        train_lr: Adam learning rate of those trainings (the search uses ``config.search_lr``).
        config: further settings (temperature, KL weight, ``include`` / ``exclude`` patterns,
            IMP rounds, ...); ``density``, ``steps`` and ``seed`` given here override its
            ``density``, ``search_steps`` and ``seed``.

    Returns:
        ``model`` itself, pruned. Its weights: the initial ones (``pun-it``, ``magnitude``,
        ``random``, ``snip``, and ``imp``, which rewinds), or the densely trained ones
        (``pun-at``, ``magnitude-at``).

    Raises:
        ValueError: unknown method or loss, invalid density/steps, ``model`` already pruned,
            a method that needs data without ``dataloader``, an empty ``dataloader``, a batch
            of an unknown type.
    """
    spec = get_pruning_method(method)
    density = check_density(density)
    cfg = replace(config or PruneConfig(), density=density, search_steps=steps, seed=seed)
    if train_steps < 1:
        raise ValueError(f"train_steps must be >= 1, got {train_steps}")
    if not train_lr > 0:
        raise ValueError(f"train_lr must be > 0, got {train_lr}")
    if is_pruned(model):
        raise ValueError("model is already pruned; prune_at_init needs the unpruned model")
    if spec.required_arguments and dataloader is None:
        raise ValueError(f"method {method!r} needs a dataloader")
    loss_fn = make_loss_fn(loss) if loss_fn is None else loss_fn
    meter = PhaseMeter(loss_fn, next(model.parameters()).device)

    def train_step(phase: str) -> None:
        adam_steps(model, dataloader, meter.loss, train_steps, train_lr)

    start = time.perf_counter()
    with _seeded(seed, next(model.parameters()).device):
        result = find_masks(
            method, model, cfg, batches=dataloader, loss_fn=meter.loss, train_step=train_step,
            search_step=loop_search_step, record_phase=meter.run,
        )  # fmt: skip
    apply_masks(model, result.masks)
    report = density_report(model, result.masks)
    model.prune_report = PruneReport(
        method=method,
        target_density=density,
        density=report["density"],
        kept=report["kept"],
        total=report["total"],
        layers=report["layers"],
        seed=seed,
        steps=steps if spec.search else 0,
        phases=meter.phases,
        wall_time_s=time.perf_counter() - start,
    )
    return model


def build_pruned_model(
    name: str,
    dataloader: Iterable[Any] | None = None,
    *,
    prune: str = "pun-it",
    density: float = DEFAULTS.density,
    seed: int = DEFAULTS.seed,
    model_kwargs: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    **prune_kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` and prune it: a model name plus a pruning line.

    Equivalent to (and bit-identical with)::

        with torch.random.fork_rng(devices=[]):  # the CPU generator
            torch.manual_seed(seed)
            model = build_model(name, **model_kwargs)
        model.to(device)  # when a device is given
        prune_at_init(model, dataloader, density, prune, seed=seed, **prune_kwargs)

    This is a separate entry point rather than a ``prune=`` option of
    :func:`~fastmri_pun.models.build_model`: models sit below pruning in the package's layers, so
    the model registry cannot call pruning code without a hook whose effect would depend on
    whether :mod:`fastmri_pun.pruning` happens to be imported; ``build_model`` keeps its contract
    (a dense model) and this function composes the two.

    Args:
        name: a registered model (:func:`~fastmri_pun.models.list_models`: ``"modl"``,
            ``"varnet"``, ...).
        dataloader: batches for the methods that need data (see :func:`prune_at_init`).
        prune: pruning method name (:func:`~fastmri_pun.pruning.methods.list_pruning_methods`).
        density: fraction of the prunable weights kept, in (0, 1].
        seed: seeds the weight initialisation and the pruning (global RNG state restored).
        model_kwargs: keyword arguments of the model's factory.
        device: where the model is pruned and returned (e.g. ``"cuda"``): the weights are
            initialised on the CPU from ``seed`` (the same on every device), then moved, and the
            pruning scores are computed there; ``None``: the CPU.
        **prune_kwargs: further :func:`prune_at_init` arguments (``steps``, ``loss``, ...).

    Returns:
        The pruned model, with ``prune_report``.

    Raises:
        ValueError: unknown model or method, and everything :func:`prune_at_init` raises.
    """
    with _seeded(seed):
        model = build_model(name, **dict(model_kwargs or {}))
    if device is not None:
        model.to(device)
    return prune_at_init(model, dataloader, density, prune, seed=seed, **prune_kwargs)


def load_pruned_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> nn.Module:
    """Load a pruned model's state dict into a fresh (unpruned) ``model``; returns ``model``.

    A pruned model's ``state_dict()`` holds ``<name>_orig`` and ``<name>_mask`` instead of
    ``<name>``; a fresh model has no such keys. The masks found in ``state_dict`` are applied
    first with ``torch.nn.utils.prune.custom_from_mask``, then the state dict is loaded, so the
    model computes exactly what the saved one did and keeps training sparse. A dense-form state
    dict (no masks) is loaded as is. Plain PyTorch code can do the same: apply
    ``prune.custom_from_mask(module, "weight", sd[key + "_mask"])`` per masked weight, then
    ``model.load_state_dict(sd)``.

    Args:
        model: the same architecture, unpruned, or pruned with exactly the saved masks' names.
        state_dict: ``model.state_dict()`` of a pruned (or dense) model.
        strict: as ``nn.Module.load_state_dict``.

    Raises:
        ValueError: ``model`` is pruned with other parameters than ``state_dict``, or a mask
            does not fit ``model``.
        RuntimeError: missing / unexpected keys or shapes (``load_state_dict``, with ``strict``).
    """
    masks = masks_from_state_dict(state_dict)
    if is_pruned(model):
        if set(get_masks(model)) != set(masks):
            raise ValueError("model is pruned with other parameters than the state dict")
    elif masks:
        apply_masks(model, masks)
    model.load_state_dict(state_dict, strict=strict)
    return model
