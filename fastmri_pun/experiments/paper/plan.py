"""The trainings of the paper's comparison: which runs, in which order, with which derived
settings, and running them in parallel processes.

A method of :class:`~fastmri_pun.experiments.paper.config.ExperimentConfig` may carry
*control* keys (:data:`CONTROL_KEYS`) that the driver resolves from other runs before the
training starts:

- ``dense_from: <method>`` — a pruning-after-training method (pun-at, magnitude-at, imp) starts
  from that method's trained checkpoint of the same seed instead of a dense pre-training of its
  own (``--dense_checkpoint``); its compute record counts that training.
- ``match_compute: <method>`` — the equal-compute control: trained for exactly as many
  per-sample forward+backward passes as that method's run of the same seed used in total
  (``compute_accounting.json``: search, pre-training and training phases), without early
  stopping (``--max_train_samples``).
- ``match_size: true`` — the capacity control: the denoiser's ``chans`` is chosen so that the
  model's prunable weights are as close as possible to ``density`` × those of the reference
  method's model.
- ``select_weight_decay: [values]`` — the regularisation control: on the first seed one run per
  value; the value whose best checkpoint has the highest validation SSIM is used for the other
  seeds (validation only: test images never choose anything).

:func:`plan_runs` lists the runs with their dependencies;
:func:`fastmri_pun.experiments.paper.scheduler.train_runs` trains them (one process, or ``jobs``
worker processes with one thread each; a run starts when the runs it depends on are finished).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...app.train.run import build_module
from ...pruning.select import select_parameters
from .config import CONTROL_KEYS, ExperimentConfig

__all__ = [
    "CONTROL_KEYS",
    "RunPlan",
    "equal_size_chans",
    "plan_runs",
    "prunable_weight_count",
    "total_train_samples",
]

#: validation metric that chooses among weight-decay candidates (the best checkpoint's)
SELECTION_METRIC = "ssim"


@dataclass
class RunPlan:
    """One training of the experiment.

    Attributes:
        name: the run's folder under ``runs/`` and, unless ``stands_for`` says otherwise, its
            model name in the evaluation.
        method: the experiment method it trains.
        seed: its training seed.
        deps: names of the runs whose records :attr:`overrides` needs.
        overrides: records of the finished runs → extra training flags (resolved in the
            driver's process before the run starts).
        stands_for: the evaluated name this run provides (``None``: not evaluated, e.g. a
            weight-decay candidate); resolved by :attr:`select` when set.
        select: records → whether this run is the one that stands for ``stands_for`` (the
            chosen weight-decay candidate).
        experiment: the experiment whose settings it trains with, when not the scheduler's
            (a cell of a grid of experiments).
        data_path: its data root, when not the scheduler's.
    """

    name: str
    method: str
    seed: int
    deps: list[str] = field(default_factory=list)
    overrides: Callable[[dict[str, dict[str, Any]]], dict[str, Any]] = lambda records: {}
    stands_for: str | None = None
    select: Callable[[dict[str, dict[str, Any]]], bool] | None = None
    experiment: ExperimentConfig | None = None
    data_path: Path | None = None


def prunable_weight_count(exp: ExperimentConfig, method: str, **flags: Any) -> int:
    """Weights the pruning methods would mask in ``method``'s model (``flags`` override its
    training settings, e.g. ``chans``)."""
    cfg = exp.train_config(method, exp.seeds[0], Path("."), Path("."), **flags)
    model = build_module(cfg).model
    p = cfg.pruning
    names = select_parameters(model, p.include, p.exclude, trainable_only=p.trainable_only)
    params = dict(model.named_parameters())
    return int(sum(params[n].numel() for n in names))


def equal_size_chans(exp: ExperimentConfig, method: str) -> int:
    """The ``chans`` of ``method``'s model whose prunable weights are closest to
    ``exp.density`` × those of the reference method's model (the capacity control).

    Raises:
        ValueError: the model has no ``chans`` setting.
    """
    ref = exp.train_config(exp.reference, exp.seeds[0], Path("."), Path("."))
    settings = ref.model.settings
    if not hasattr(settings, "chans"):
        raise ValueError(
            f"{exp.source}: methods.{method}.match_size needs a model with a 'chans' setting; "
            f"{ref.model.model} has none"
        )
    target = exp.density * prunable_weight_count(exp, exp.reference)
    best, best_err = 1, math.inf
    for chans in range(1, int(settings.chans) + 1):
        err = abs(prunable_weight_count(exp, method, chans=chans) - target)
        if err < best_err:
            best, best_err = chans, err
    return best


def total_train_samples(record: dict[str, Any]) -> int:
    """Per-sample forward+backward passes of a finished run, all phases (its ``compute``)."""
    return int(sum(int(p.get("train_samples", 0)) for p in record.get("compute") or []))


def _val_score(record: dict[str, Any]) -> float:
    value = ((record.get("val") or {}).get("summary") or {}).get(SELECTION_METRIC)
    return float(value) if value is not None else -math.inf


def _wd_label(value: float) -> str:
    return f"wd{value:g}"


def plan_runs(exp: ExperimentConfig, methods: Sequence[str]) -> list[RunPlan]:
    """Every training of ``methods`` × ``exp.seeds`` (weight-decay candidates included), in an
    order where each run comes after the runs it depends on.

    Raises:
        ValueError: a control key naming a method that is not among ``methods``, a method
            that depends on itself, or two runs of one name (a seed or a method listed twice:
            they would train into one folder).
    """
    repeated = sorted({s for s in exp.seeds if list(exp.seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"{exp.source}: seeds {repeated} are listed more than once")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise ValueError(f"methods {twice} are listed more than once")
    plans: list[RunPlan] = []
    for method in methods:
        controls = exp.controls(method)
        for key in ("dense_from", "match_compute"):
            other = controls.get(key)
            if other is not None and (other not in methods or other == method):
                raise ValueError(
                    f"{exp.source}: methods.{method}.{key} names {other!r}, which is not another "
                    f"of the methods run ({', '.join(methods)})"
                )
    order = sorted(methods, key=lambda m: _depth(exp, m))
    for method in order:
        controls = exp.controls(method)
        static: dict[str, Any] = {}
        if controls.get("match_size"):
            static["chans"] = equal_size_chans(exp, method)
        grid = controls.get("select_weight_decay")
        for i, seed in enumerate(exp.seeds):
            name = exp.run_name(method, seed)
            deps = [
                exp.run_name(controls[k], seed)
                for k in ("dense_from", "match_compute")
                if controls.get(k)
            ]
            overrides = _overrides(exp, method, seed, static)
            if grid and i == 0:
                candidates = [f"{method}-{_wd_label(v)}-s{seed}" for v in grid]
                for value, cand in zip(grid, candidates, strict=True):
                    plans.append(
                        RunPlan(
                            cand,
                            method,
                            seed,
                            deps,
                            _with(overrides, weight_decay=float(value)),
                            stands_for=name,
                            select=_chosen(cand, candidates),
                        )
                    )
            elif grid:
                first = [f"{method}-{_wd_label(v)}-s{exp.seeds[0]}" for v in grid]
                plans.append(
                    RunPlan(
                        name,
                        method,
                        seed,
                        deps + first,
                        _with_selected(overrides, first),
                        stands_for=name,
                    )
                )
            else:
                plans.append(RunPlan(name, method, seed, deps, overrides, stands_for=name))
    names = [p.name for p in plans]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:  # e.g. a weight-decay label that two grid values share
        raise ValueError(f"{exp.source}: runs {clash} would train into one folder")
    return plans


def _depth(exp: ExperimentConfig, method: str, seen: tuple[str, ...] = ()) -> int:
    if method in seen:
        raise ValueError(f"{exp.source}: methods.{method} depends on itself")
    controls = exp.controls(method)
    parents = [controls[k] for k in ("dense_from", "match_compute") if controls.get(k)]
    return 1 + max((_depth(exp, p, (*seen, method)) for p in parents), default=0)


def _overrides(exp: ExperimentConfig, method: str, seed: int, static: dict[str, Any]) -> Any:
    controls = exp.controls(method)

    def resolve(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out = dict(static)
        if controls.get("dense_from"):
            out["dense_checkpoint"] = records[exp.run_name(controls["dense_from"], seed)][
                "checkpoint"
            ]
        if controls.get("match_compute"):
            target = records[exp.run_name(controls["match_compute"], seed)]
            samples = total_train_samples(target)
            if samples < 1:
                raise ValueError(
                    f"methods.{method}.match_compute: the run of {controls['match_compute']} "
                    f"(seed {seed}) has no compute record"
                )
            out.update(max_train_samples=samples, early_stopping_patience=None)
            # the sample limit decides; enough epochs for it at one sample per epoch and step
            out["max_epochs"] = max(samples, 1)
        return out

    return resolve


def _with(base: Any, **extra: Any) -> Any:
    return lambda records: {**base(records), **extra}


def _with_selected(base: Any, candidates: list[str]) -> Any:
    def resolve(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        best = max(candidates, key=lambda c: _val_score(records[c]))
        return {**base(records), "weight_decay": records[best]["config"]["weight_decay"]}

    return resolve


def _chosen(name: str, candidates: list[str]) -> Any:
    def select(records: dict[str, dict[str, Any]]) -> bool:
        return max(candidates, key=lambda c: _val_score(records[c])) == name

    return select
