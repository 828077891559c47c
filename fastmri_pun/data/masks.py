"""fastMRI undersampling masks with argument checks (the masks themselves are fastmri's).

:func:`make_mask_func` validates its arguments (:func:`check_mask_settings`) with one-line errors
and returns fastmri's own ``MaskFunc`` from ``fastmri.data.subsample.create_mask_for_mask_type``.

The rule checked for every ``(centre fraction, acceleration)`` pair, for every mask type, is
``centre_fraction × acceleration < 1``: the fully sampled centre must be smaller than the
``1/acceleration`` share of the columns the mask may sample. fastmri does not check it: at or
above 1, ``equispaced_fraction`` and ``magic_fraction`` crash inside numpy (``high <= 0``) and
``random`` silently samples only the centre (e.g. centre fraction 0.3 at 4× samples 1/3.37 of the
columns, not 1/4); ``equispaced``/``magic`` would sample far more than ``1/acceleration``.
``equispaced`` and ``magic`` also use the acceleration as a column stride, so it must be an
integer. Since fastmri rounds ``W × centre_fraction`` to whole columns, a pair just below the
rule can still fail on a narrow k-space; :func:`check_mask_width` checks a mask function against
a width (the transform calls it per slice).

Files of fastMRI's test/challenge splits carry their own mask; :func:`sampled_acceleration` and
:func:`centre_run` describe such a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import torch
from fastmri.data.subsample import MagicMaskFractionFunc, MaskFunc, create_mask_for_mask_type

__all__ = [
    "DEFAULT_ACCELERATIONS",
    "DEFAULT_CENTER_FRACTIONS",
    "DEFAULT_MASK_TYPE",
    "MASK_TYPES",
    "centre_run",
    "check_mask_func",
    "check_mask_settings",
    "check_mask_width",
    "make_mask_func",
    "sampled_acceleration",
]

#: mask types understood by ``fastmri.data.subsample.create_mask_for_mask_type``
MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
#: the package's default acquisition (every command's): fastMRI's brain setting, an equispaced 4×
#: mask with 8 % fully sampled centre columns
DEFAULT_MASK_TYPE = "equispaced_fraction"
DEFAULT_CENTER_FRACTIONS = (0.08,)
DEFAULT_ACCELERATIONS = (4,)

_STRIDE_TYPES = ("equispaced", "magic")  # the acceleration is a column stride


def _as_list(x: float | Sequence[float]) -> list[float]:
    return [x] if isinstance(x, int | float) else list(x)


def _num(x: float) -> str:
    return f"{float(x):g}"


def check_mask_settings(
    mask_type: str,
    center_fractions: float | Sequence[float],
    accelerations: float | Sequence[float],
    *,
    context: str | None = None,
) -> None:
    """Check a mask combination up front (module docstring: the rules).

    Args:
        mask_type: one of :data:`MASK_TYPES`.
        center_fractions: fraction(s) of fully sampled centre columns, each in ``(0, 1)``.
        accelerations: undersampling factor(s), each ``> 1``; same count as
            ``center_fractions``, paired in order.
        context: prefix of the error message, e.g. ``"shift 'accel-8x'"``.

    Raises:
        ValueError: one line naming the rule and the numbers, e.g. ``centre fraction 0.16 ×
            acceleration 8 = 1.28 ≥ 1: the centre alone would exceed 1/8 of the columns; lower
            --center_fractions or the acceleration``.
    """
    pre = f"{context}: " if context else ""
    if mask_type not in MASK_TYPES:
        raise ValueError(
            f"{pre}unknown mask type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}"
        )
    cfs, accs = _as_list(center_fractions), _as_list(accelerations)
    if not accs or any(a <= 1 for a in accs):
        raise ValueError(f"{pre}accelerations must all be > 1, got {accs}")
    if not cfs or any(not 0.0 < c < 1.0 for c in cfs):
        raise ValueError(f"{pre}center_fractions must all be in (0, 1), got {cfs}")
    if len(cfs) != len(accs):
        raise ValueError(
            f"{pre}center_fractions ({len(cfs)}) and accelerations ({len(accs)}) need the same "
            "length"
        )
    if mask_type in _STRIDE_TYPES and any(not float(a).is_integer() for a in accs):
        raise ValueError(
            f"{pre}mask type {mask_type!r} uses the acceleration as a column stride, so it must "
            f"be an integer, got {accs}"
        )
    for cf, acc in zip(cfs, accs, strict=True):
        if cf * acc >= 1.0:
            raise ValueError(
                f"{pre}centre fraction {_num(cf)} × acceleration {_num(acc)} = "
                f"{_num(round(cf * acc, 4))} ≥ 1: the centre alone would exceed 1/{_num(acc)} of "
                "the columns; lower --center_fractions or the acceleration"
            )


def make_mask_func(
    mask_type: str = DEFAULT_MASK_TYPE,
    center_fractions: float | Sequence[float] = DEFAULT_CENTER_FRACTIONS,
    accelerations: float | Sequence[float] = DEFAULT_ACCELERATIONS,
) -> MaskFunc:
    """Build a fastMRI mask function after checking its arguments (:func:`check_mask_settings`).

    Args:
        mask_type: one of :data:`MASK_TYPES`.
        center_fractions: fraction(s) of fully sampled centre columns, each in ``(0, 1)``.
        accelerations: undersampling factor(s), each ``> 1``; same count as
            ``center_fractions``; ``centre_fraction × acceleration < 1`` for every pair.

    Raises:
        ValueError: unknown mask type, acceleration ``<= 1``, centre fraction outside ``(0, 1)``,
            mismatched lengths, a pair breaking the centre rule, a non-integer stride.
    """
    check_mask_settings(mask_type, center_fractions, accelerations)
    cfs, accs = _as_list(center_fractions), _as_list(accelerations)
    # fastmri's equispaced/magic masks use the acceleration as a column stride (an int)
    accs_int = [int(a) if float(a).is_integer() else a for a in accs]
    return create_mask_for_mask_type(mask_type, cfs, accs_int)


def check_mask_func(mask_func: MaskFunc | None) -> None:
    """Reject a ``MaskFunc`` whose ``accelerations`` include a value ``<= 1`` (fastmri itself
    would silently sample everything or divide by zero), or whose centre fraction ×
    acceleration is ``>= 1`` for a pair it can draw."""
    accs = getattr(mask_func, "accelerations", None)
    if accs is None:
        return
    if any(a <= 1 for a in accs):
        raise ValueError(f"mask_func accelerations must all be > 1, got {list(accs)}")
    for cf, acc in _pairs(mask_func):
        if cf * acc >= 1.0:
            raise ValueError(
                f"mask_func: centre fraction {_num(cf)} × acceleration {_num(acc)} = "
                f"{_num(round(cf * acc, 4))} ≥ 1: the centre alone would exceed 1/{_num(acc)} of "
                "the columns; lower the centre fraction or the acceleration"
            )


def _pairs(mask_func: MaskFunc) -> list[tuple[float, float]]:
    cfs = list(getattr(mask_func, "center_fractions", []))
    accs = list(getattr(mask_func, "accelerations", []))
    if getattr(mask_func, "allow_any_combination", False) or len(cfs) != len(accs):
        return list(product(cfs, accs))
    return list(zip(cfs, accs, strict=True))


def check_mask_width(mask_func: MaskFunc | None, num_cols: int) -> None:
    """Check that fastmri's ``mask_func`` can mask ``num_cols`` columns: for every pair it can
    draw, the rounded centre ``n = round(num_cols × centre_fraction)`` × acceleration must stay
    below ``num_cols`` (else fastmri crashes or samples only the centre); ``magic_fraction``
    also needs ``n < round(num_cols / acceleration)`` (else its outer stride is 0 and it
    crashes).

    Raises:
        ValueError: one line with the numbers (no file name; callers prefix it).
    """
    magic_fraction = isinstance(mask_func, MagicMaskFractionFunc)
    for cf, acc in _pairs(mask_func) if mask_func is not None else []:
        nlow = round(num_cols * cf)
        if nlow * acc >= num_cols:
            raise ValueError(
                f"centre fraction {_num(cf)} of {num_cols} columns rounds to {nlow} centre "
                f"columns, × acceleration {_num(acc)} = {_num(nlow * acc)} ≥ {num_cols}: the "
                f"centre alone would exceed 1/{_num(acc)} of the columns; lower the centre "
                "fraction or the acceleration"
            )
        if magic_fraction and max(nlow, 1) >= round(num_cols / acc):
            raise ValueError(
                f"magic_fraction: centre fraction {_num(cf)} of {num_cols} columns rounds to "
                f"{nlow} centre columns, not fewer than the {round(num_cols / acc)} columns "
                f"acceleration {_num(acc)} allows; lower the centre fraction or the acceleration"
            )


def _cols(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).reshape(-1).astype(bool)


def sampled_acceleration(
    mask: np.ndarray | torch.Tensor, padding_left: int = 0, padding_right: int | None = None
) -> float:
    """The acceleration a mask achieves inside the acquired window.

    Args:
        mask: ``[W]`` (or any shape holding ``W`` entries, e.g. ``[1, 1, W, 1]``) bool/0-1 mask.
        padding_left, padding_right: acquired columns ``[padding_left, padding_right)``
            (fastMRI's ``attrs``; default: all ``W``).

    Returns:
        ``(padding_right - padding_left) / sampled columns inside the window``, e.g. 4.0.

    Raises:
        ValueError: an empty window or no sampled column inside it.
    """
    cols = _cols(mask)
    right = cols.shape[0] if padding_right is None else min(int(padding_right), cols.shape[0])
    left = max(int(padding_left), 0)
    if right <= left:
        raise ValueError(f"empty acquired window [{padding_left}, {padding_right})")
    sampled = int(cols[left:right].sum())
    if sampled == 0:
        raise ValueError(f"the mask samples no column inside [{left}, {right})")
    return (right - left) / sampled


def centre_run(mask: np.ndarray | torch.Tensor) -> int:
    """Length of the contiguous run of sampled columns through the k-space centre column
    ``W // 2`` of a ``[W]`` mask (0 when the centre is not sampled)."""
    cols = _cols(mask)
    w = cols.shape[0]
    center = w // 2
    if not cols[center]:
        return 0
    start, stop = center, center + 1
    while start > 0 and cols[start - 1]:
        start -= 1
    while stop < w and cols[stop]:
        stop += 1
    return stop - start
