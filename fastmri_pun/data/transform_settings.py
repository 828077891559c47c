"""One place that turns settings into a :class:`~fastmri_pun.data.transforms.SenseDataTransform`.

Training, evaluation (shift datasets), the ESPIRiT-maps precompute workflow and the examples
build their transforms only through :class:`TransformSettings`, so the same settings always give
the same masks, maps and cache keys. The settings are stored in checkpoints as
:meth:`TransformSettings.to_dict` (JSON-able) and read back with :meth:`TransformSettings.from_dict`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from fastmri.data.subsample import MaskFunc

from .espirit import EspiritSettings
from .masks import (
    DEFAULT_ACCELERATIONS,
    DEFAULT_CENTER_FRACTIONS,
    DEFAULT_MASK_TYPE,
    check_mask_settings,
    make_mask_func,
)
from .transform_steps import CHALLENGES
from .transforms import SenseDataTransform

__all__ = ["SENS_MAPS", "TransformSettings"]

#: values of ``TransformSettings.sens_maps``
SENS_MAPS = ("espirit", "learned")


def _floats(values: Any) -> tuple[float, ...]:
    if isinstance(values, int | float):
        return (values,)
    return tuple(values)


@dataclass(frozen=True)
class TransformSettings:
    """Everything that defines a data transform (besides per-run noise and seeding).

    Attributes:
        challenge: ``"multicoil"`` or ``"singlecoil"`` (fastMRI's challenge, k-space layout).
        mask_type, center_fractions, accelerations: the fastMRI mask
            (:func:`~fastmri_pun.data.masks.make_mask_func`; paired in order, checked with
            :func:`~fastmri_pun.data.masks.check_mask_settings`).
        sens_maps: ``"espirit"`` (maps in every sample; the unit map for single-coil data) or
            ``"learned"``.
        crop_readout: remove the 2× readout oversampling (k-space ``[C, H, W]`` → ``[C, h, W]``).
        espirit: ESPIRiT calibration settings.
        maps_cache_dir: ESPIRiT map cache folder (``None``: the default cache).

    Raises:
        ValueError: on construction, a bad combination (one line naming it).
    """

    challenge: str = "multicoil"
    mask_type: str = DEFAULT_MASK_TYPE
    center_fractions: tuple[float, ...] = DEFAULT_CENTER_FRACTIONS
    accelerations: tuple[float, ...] = DEFAULT_ACCELERATIONS
    sens_maps: str = "espirit"
    crop_readout: bool = True
    espirit: EspiritSettings = field(default_factory=EspiritSettings)
    maps_cache_dir: str | None = None

    def __post_init__(self) -> None:
        # tolerate lists / scalars / Paths from configs; store hashable, JSON-stable values
        object.__setattr__(self, "center_fractions", _floats(self.center_fractions))
        object.__setattr__(self, "accelerations", _floats(self.accelerations))
        if self.maps_cache_dir is not None:
            object.__setattr__(self, "maps_cache_dir", os.fspath(self.maps_cache_dir))
        self.check()

    def check(self) -> None:
        """Check challenge, ``sens_maps``, the ESPIRiT type and the mask combination.

        Raises:
            ValueError: one line naming the bad setting.
        """
        if self.challenge not in CHALLENGES:
            raise ValueError(
                f"challenge must be one of {', '.join(CHALLENGES)}, got {self.challenge!r}"
            )
        if self.sens_maps not in SENS_MAPS:
            raise ValueError(
                f"sens_maps must be one of {', '.join(SENS_MAPS)}, got {self.sens_maps!r}"
            )
        if not isinstance(self.espirit, EspiritSettings):
            raise ValueError(
                f"espirit must be an EspiritSettings, got {type(self.espirit).__name__}"
            )
        check_mask_settings(self.mask_type, self.center_fractions, self.accelerations)

    def mask_func(self) -> MaskFunc:
        """A fresh fastMRI mask function for these settings."""
        return make_mask_func(self.mask_type, self.center_fractions, self.accelerations)

    def with_mask(
        self,
        mask_type: str | None = None,
        center_fractions: float | tuple[float, ...] | None = None,
        accelerations: float | tuple[float, ...] | None = None,
    ) -> TransformSettings:
        """These settings with another mask (``None`` keeps a field); checked."""
        return replace(
            self,
            mask_type=mask_type if mask_type is not None else self.mask_type,
            center_fractions=_floats(center_fractions)
            if center_fractions is not None
            else self.center_fractions,
            accelerations=_floats(accelerations)
            if accelerations is not None
            else self.accelerations,
        )

    def build(
        self,
        use_seed: bool = True,
        *,
        mask_func: MaskFunc | None = None,
        file_mask: str = "use",
        noise_snr_db: float | None = None,
        noise_seed: int = 0,
        use_cache: bool = True,
        shift_name: str | None = None,
        max_values: Mapping[str, float] | None = None,
    ) -> SenseDataTransform:
        """The transform these settings describe.

        Args:
            use_seed: masks seeded by file name (validation/test) or drawn anew (training).
            mask_func: overrides the settings' mask (``None``: :meth:`mask_func`).
            file_mask: ``"use"`` a file's own mask, or ``"error"`` to refuse such files (a
                caller asking for another mask).
            noise_snr_db, noise_seed: k-space noise (the ``noise`` shift).
            use_cache: read/write the ESPIRiT map cache.
            shift_name: named in ``file_mask="error"`` messages.
            max_values: volume maxima of files without a ``max`` attribute.
        """
        return SenseDataTransform.from_settings(
            self,
            use_seed,
            mask_func=mask_func,
            noise_snr_db=noise_snr_db,
            noise_seed=noise_seed,
            use_cache=use_cache,
            file_mask=file_mask,
            shift_name=shift_name,
            max_values=max_values,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: tuples as lists, ``espirit`` as a nested dict."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "espirit":
                value = asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransformSettings:
        """Settings from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: an unknown key (one line naming it and the known ones), a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown transform setting(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(sorted(known))}"
            )
        kwargs = dict(d)
        esp = kwargs.get("espirit")
        if isinstance(esp, Mapping):
            esp_known = {f.name for f in fields(EspiritSettings)}
            bad = sorted(set(esp) - esp_known)
            if bad:
                raise ValueError(
                    f"unknown espirit setting(s) {', '.join(map(repr, bad))}; known: "
                    f"{', '.join(sorted(esp_known))}"
                )
            kwargs["espirit"] = EspiritSettings(**esp)
        return cls(**kwargs)
