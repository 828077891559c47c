"""Disk cache of ESPIRiT coil maps (:class:`SensitivityCache`).

Maps are stored as ``<cache_dir>/<file stem>/<file stem>_s<slice>_<settings>_<key>.npy``
(``[C, H, W]`` complex64), ``settings`` the resolved settings as ``k5-c0.9-t0.005-w10-r40``
(kernel, crop, thresh, calibration columns and rows). ``key`` hashes the
exact calibration block (so the file, slice, mask, added noise and readout crop), the k-space
shape and every resolved calibration setting: a cached map is never served for other data or
settings. When a slice has maps only under other keys (precomputed with other settings or another
mask centre), :class:`SensitivityCache` warns once per cache folder, naming the settings that
differ. Files are written atomically (:func:`fastmri_pun.utils.io.atomic_open`), so concurrent
DataLoader workers are safe, and a full disk is an ``OSError`` naming the file; non-finite maps
are never written.

Each file ends with a digest trailer (:func:`fastmri_pun.utils.io.read_sealed_bytes`: the
SHA-256 of the ``.npy`` bytes before it; ``np.load`` of the file ignores it), checked on every
read. A damaged entry (content not matching its digest, unreadable, of another shape or dtype,
non-finite) is never served: it is recomputed and overwritten, with one warning naming the file.
Files written before the digest (no trailer) are recomputed too, with one warning per cache
folder.

Maps are computed by :func:`fastmri_pun.data.espirit.espirit_maps`, looked up on that
module at call time (a test replaces it there to prove a cache hit).

Disk: ``C·H·W·8`` bytes per slice, e.g. 30 MB for a 16-coil 640×368 brain slice (15 MB with
the readout crop, the default).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..utils.io import atomic_open, read_sealed_bytes
from ..utils.seeding import default_cache_dir
from . import espirit
from .espirit import EspiritSettings, calibration_block

__all__ = ["SensitivityCache"]

#: v3: torch numerics, certified power iterations on the CPU (maps within 1e-3 of v2's)
_KEY_VERSION = b"fastmri_pun-espirit-v3-torch"

_warned_dirs: set[str] = set()
#: cache folders already warned about for files without digest (written before it)
_warned_undigested: set[str] = set()


#: resolved settings in cache file names: ``k<kernel>-c<crop>-t<thresh>-w<columns>-r<rows>``
_TAGS = {"k": "kernel_width", "c": "crop", "t": "thresh", "w": "calib_width", "r": "calib_rows"}


def _settings_tag(resolved: EspiritSettings) -> str:
    """The resolved settings that change the maps (``max_iter`` does not), as a file-name tag."""
    values = (getattr(resolved, name) for name in _TAGS.values())
    return "-".join(
        f"{t}{np.format_float_positional(v, trim='-') if isinstance(v, float) else v}"
        for t, v in zip(_TAGS, values, strict=True)
    )


def _parse_tag(tag: str) -> dict[str, str]:
    """``{field: value}`` of a :func:`_settings_tag` (empty for other names, e.g. older files)."""
    parts = tag.split("-")
    if len(parts) != len(_TAGS) or any(p[:1] not in _TAGS or len(p) < 2 for p in parts):
        return {}
    return {_TAGS[p[0]]: p[1:] for p in parts}


class SensitivityCache:
    """Disk cache of ESPIRiT maps (see the module docstring for the key and layout).

    ``cache_dir=None`` uses :func:`default_cache_dir` ``("sens_maps")``.

    Attributes:
        last_hit: whether the last :meth:`get_or_compute` served cached maps (``None`` before
            the first call); e.g. for counting hits when precomputing a folder.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else default_cache_dir("sens_maps")
        )
        self.last_hit: bool | None = None

    def _entry(
        self,
        masked_kspace: np.ndarray,
        mask_cols: np.ndarray,
        fname: str,
        slice_num: int,
        settings: EspiritSettings,
        num_low_frequencies: int | None,
    ) -> tuple[Path, str]:
        block, resolved = calibration_block(masked_kspace, mask_cols, settings, num_low_frequencies)
        digest = hashlib.sha256(_KEY_VERSION)
        tag = _settings_tag(resolved)  # every resolved setting that changes the maps
        digest.update(repr((fname, int(slice_num), masked_kspace.shape, tag)).encode())
        digest.update(block.tobytes())
        stem = Path(fname).stem
        name = f"{stem}_s{int(slice_num):03d}_{tag}_{digest.hexdigest()[:20]}.npy"
        return self.cache_dir / stem / name, tag

    def path_for(
        self,
        masked_kspace: np.ndarray,
        mask_cols: np.ndarray,
        fname: str,
        slice_num: int,
        settings: EspiritSettings,
        num_low_frequencies: int | None = None,
    ) -> Path:
        """Cache file of the maps for this slice, ACS data and settings."""
        return self._entry(
            masked_kspace, mask_cols, fname, slice_num, settings, num_low_frequencies
        )[0]

    def _warn_other_keys(self, path: Path, slice_num: int, tag: str) -> None:
        """Warn once per cache folder when this slice has maps only under other *settings*
        (precomputed with other ESPIRiT settings or another ACS width); maps of the same
        settings from other calibration data (noise, lesions, random masks) are expected."""
        folder = str(self.cache_dir)
        if folder in _warned_dirs:
            return
        prefix = f"{path.parent.name}_s{int(slice_num):03d}_"
        others = sorted(p for p in path.parent.glob(prefix + "*.npy") if p != path)
        if not others:
            return
        now = _parse_tag(tag)
        diffs = set()
        for other in others:
            cached = _parse_tag(other.stem[len(prefix) :].rsplit("_", 1)[0])
            diffs |= {
                f"{k} {cached[k]} (cached) vs {v} (now)"
                for k, v in now.items()
                if cached.get(k, v) != v
            }
        if not diffs:
            # same settings, other calibration data: the expected case of a noisy or lesion
            # shift, a random training mask or another readout crop; nothing was bypassed
            return
        _warned_dirs.add(folder)
        warnings.warn(
            f"ESPIRiT cache {folder}: {prefix[:-1]} has maps only under other settings "
            f"({', '.join(sorted(diffs))}); computing new maps (pass the same --espirit_* "
            "settings to reuse them)",
            stacklevel=3,
        )

    def get_or_compute(
        self,
        masked_kspace: np.ndarray,
        mask_cols: np.ndarray,
        fname: str,
        slice_num: int,
        settings: EspiritSettings | None = None,
        num_low_frequencies: int | None = None,
        compute: Callable[[], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Cached maps ``[C, H, W]`` complex64 of this slice, ACS data and ``settings`` (which
        name the cache file); on a miss ``compute()`` gives them (default:
        :func:`~fastmri_pun.data.espirit.espirit_maps` with ``settings``) and they are stored.

        Raises:
            ValueError: as :func:`~fastmri_pun.data.espirit.espirit_maps`.
            OSError: the disk is full (one line naming the cache file; nothing is left behind).

        Warns:
            UserWarning: once per cache folder, when the slice is cached only under other keys;
            once per damaged cache file (naming it), which is recomputed; once per cache folder
            for files without digest (written by an earlier version), which are recomputed.
        """
        settings = settings or EspiritSettings()
        path, tag = self._entry(
            masked_kspace, mask_cols, fname, slice_num, settings, num_low_frequencies
        )
        self.last_hit = False
        if path.is_file():
            maps = self._read(path, masked_kspace.shape)
            if maps is not None:
                self.last_hit = True
                return maps
        else:
            self._warn_other_keys(path, slice_num, tag)
        if compute is None:
            maps = espirit.espirit_maps(masked_kspace, mask_cols, settings, num_low_frequencies)
        else:
            maps = compute()
        if not np.isfinite(maps).all():  # espirit_maps raises first; never cache such maps
            raise ValueError("ESPIRiT produced non-finite coil maps")
        with atomic_open(path, trailer=True) as fh:
            np.save(fh, maps, allow_pickle=False)
        return maps

    def _read(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The maps ``[C, H, W]`` complex64 in ``path`` when its digest, shape, dtype and values
        are right; else ``None`` after one warning naming the file (the caller recomputes)."""
        try:
            body, sealed = read_sealed_bytes(path)
            maps = np.load(io.BytesIO(body), allow_pickle=False)  # a truncated file: damaged
            if not sealed:
                folder = str(self.cache_dir)
                if folder not in _warned_undigested:
                    _warned_undigested.add(folder)
                    warnings.warn(
                        f"ESPIRiT cache {folder}: {path} and maybe others were written without a "
                        "content digest (an earlier version); recomputing such maps",
                        stacklevel=4,
                    )
                return None
            if maps.shape != tuple(shape) or maps.dtype != np.complex64:
                raise ValueError(f"holds {maps.dtype} {maps.shape}, expected complex64 {shape}")
            if not np.isfinite(maps).all():
                raise ValueError("holds NaN or Inf")
        except (OSError, ValueError) as err:
            warnings.warn(
                f"ESPIRiT cache file {path} is damaged ({err}); recomputing it", stacklevel=4
            )
            return None
        return maps
