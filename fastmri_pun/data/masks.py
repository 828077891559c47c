"""fastMRI undersampling masks with argument checks (the masks themselves are fastmri's).

:func:`make_mask_func` validates its arguments with one-line errors and returns fastmri's own
``MaskFunc`` from ``fastmri.data.subsample.create_mask_for_mask_type``.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastmri.data.subsample import MaskFunc, create_mask_for_mask_type

__all__ = [
    "DEFAULT_ACCELERATIONS",
    "DEFAULT_CENTER_FRACTIONS",
    "DEFAULT_MASK_TYPE",
    "MASK_TYPES",
    "check_mask_func",
    "make_mask_func",
]

#: mask types understood by ``fastmri.data.subsample.create_mask_for_mask_type``
MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
#: the package's default acquisition (every command's): fastMRI's brain setting, an equispaced 4×
#: mask with 8 % fully sampled centre columns
DEFAULT_MASK_TYPE = "equispaced_fraction"
DEFAULT_CENTER_FRACTIONS = (0.08,)
DEFAULT_ACCELERATIONS = (4,)


def _as_list(x: float | Sequence[float]) -> list[float]:
    return [x] if isinstance(x, int | float) else list(x)


def make_mask_func(
    mask_type: str = DEFAULT_MASK_TYPE,
    center_fractions: float | Sequence[float] = DEFAULT_CENTER_FRACTIONS,
    accelerations: float | Sequence[float] = DEFAULT_ACCELERATIONS,
) -> MaskFunc:
    """Build a fastMRI mask function after checking its arguments.

    Args:
        mask_type: one of :data:`MASK_TYPES`.
        center_fractions: fraction(s) of fully sampled centre columns, each in ``(0, 1)``.
        accelerations: undersampling factor(s), each ``> 1``; same count as
            ``center_fractions``.

    Raises:
        ValueError: unknown mask type, acceleration ``<= 1``, centre fraction outside ``(0, 1)``
            or mismatched lengths.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}")
    cfs, accs = _as_list(center_fractions), _as_list(accelerations)
    if not accs or any(a <= 1 for a in accs):
        raise ValueError(f"accelerations must all be > 1, got {accs}")
    if not cfs or any(not 0.0 < c < 1.0 for c in cfs):
        raise ValueError(f"center_fractions must all be in (0, 1), got {cfs}")
    if len(cfs) != len(accs):
        raise ValueError(
            f"center_fractions ({len(cfs)}) and accelerations ({len(accs)}) need the same length"
        )
    # fastmri's equispaced/magic masks use the acceleration as a column stride (an int)
    accs_int = [int(a) if float(a).is_integer() else a for a in accs]
    return create_mask_for_mask_type(mask_type, cfs, accs_int)


def check_mask_func(mask_func: MaskFunc | None) -> None:
    """Reject a ``MaskFunc`` whose ``accelerations`` include a value ``<= 1`` (fastmri itself
    would silently sample everything or divide by zero)."""
    accs = getattr(mask_func, "accelerations", None)
    if accs is not None and any(a <= 1 for a in accs):
        raise ValueError(f"mask_func accelerations must all be > 1, got {list(accs)}")
