"""Coil sensitivity maps by ESPIRiT from the ACS band of *masked* k-space, with a disk cache.

Only what a scanner has is used: the fully sampled centre columns (ACS) of the undersampled
k-space. The calibration block is **rectangular**: every ACS column (or the centred
``calib_width`` of them) × a centred readout window of ``calib_rows`` rows. A square block as
wide as a 10-line ACS holds too few ``k × k`` patches (36 rows for 400 unknowns with 16 coils and
kernel 5) to estimate the ESPIRiT null space: on a 16-coil phantom the eigenvalue map then fell
below a 0.70 crop *inside* the object and CG-SENSE lost 12 dB to the uncropped maps.

Algorithm (Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating parallel MRI",
MRM 71:990, 2014): calibration (Hankel) matrix of all ``k × k × C`` patches of the block, its
right singular vectors above ``thresh · σ_max`` as k-space kernels, the image-space matrix
``G(x) = Σ_n v_n(x) v_n(x)ᴴ`` of the kernels (``C × C`` per pixel), its top eigenvector as the
map and its eigenvalue (≈ 1 where the coil model holds) for the crop; phase relative to coil 0.
Written by hand because sigpy's ``EspiritCalib`` only takes a centred square calibration region.
``G`` is computed from the kernels' autocorrelation (lags within ``±(k-1)``) by one inverse FFT
per coil pair instead of one per kernel and coil, and the eigenvectors by batched ``eigh``
(torch) instead of power iterations: on a square block the maps equal sigpy's (``1e-6``
inside the object, ``tests/test_data_espirit.py``) at a fraction of its time
(``benchmarks/bench_espirit.py``).

Defaults (:class:`EspiritSettings`), chosen with ``benchmarks/bench_espirit.py`` (CG-SENSE PSNR
with estimated vs true coil maps, demo simulator and the test-fixture simulator, see
``benchmarks/RESULTS.md``):

``kernel_width`` auto (4 with fewer than 10 calibration columns, else 5), ``crop=0.9``,
``thresh=0.005``, ``calib_rows`` auto (4 × the ACS width, at least 32, at most H). Measured on
equispaced 4× masks, CG-SENSE PSNR with these maps minus with the true maps (mean / worst over
the slices; *holes*: object pixels with every map zero; *eig*: smallest top eigenvalue over the
object, the margin below the crop):

==========  ====  =====  ===  ================  =====  =====
simulator   N     coils  ACS  ΔPSNR dB          holes  eig
==========  ====  =====  ===  ================  =====  =====
demo        128   8      10   +2.64 / +2.55     0      0.991
demo        128   16     10   +0.15 / −0.32     0      0.988
demo        64    8      8    +1.57 / +1.20     0      0.995
demo        256   16     24   −0.23             0      0.999
test files  128   16     10   +6.45 / +6.41     0      0.999
test files  64    8      8    +6.32 / +6.17     0      0.998
==========  ====  =====  ===  ================  =====  =====

Over all cases of the grid: the square ``ACS × ACS`` block (kernel 5, thresh 0.02) lost 10 dB
at crop 0.7 and had holes from crop 0.8 on (smallest object eigenvalue 0.77), the rectangular
block kept it ≥ 0.98; without a crop (0) the background pixels, whose maps are noise, cost
3–5 dB; ``thresh`` 0.02 lost up to 1.3 dB against 0.005 with 16 coils; the readout window
mattered little beyond 32 rows; crop 0.95 was 0.07 dB better in the worst case but leaves only
0.03 below the smallest object eigenvalue (with thresh 0.02 it already made holes), so 0.9.
Positive ΔPSNR: the crop zeroes the background, which the
everywhere-nonzero true maps cannot. Not reached: a Shepp–Logan object filling the 64² FOV with
8 ACS columns (−0.3 to −0.6 dB on 2 of 3 seeds).

An eigenvalue map whose *second* eigenvalue is also close to 1 over much of the object is the
sign of a field of view smaller than the object (aliasing along phase encoding): one set of maps
cannot represent two overlapping tissues, so :func:`espirit_maps` warns (soft-SENSE with two sets
of maps would be needed, or a wider acquired FOV / ``sens_maps="learned"``). A noise-dominated
ACS gives the same sign (measured: 4 coils at 15 dB k-space SNR with ``thresh=0.005``, where 0.02
also gave better maps), so the warning suggests raising ``thresh`` too.

Cache: maps are stored as ``<cache_dir>/<file stem>/<file stem>_s<slice>_<settings>_<key>.npy``
(``[C, H, W]`` complex64), ``settings`` the resolved settings as ``k5-c0.9-t0.005-w10-r40``
(kernel, crop, thresh, calibration columns and rows). ``key`` hashes the
exact calibration block (so the file, slice, mask, added noise and readout crop), the k-space
shape and every resolved calibration setting: a cached map is never served for other data or
settings. When a slice has maps only under other keys (precomputed with other settings or another
mask centre), :class:`SensitivityCache` warns once per cache folder, naming the settings that
differ. Files are written atomically (:func:`fastmri_pun.utils.io.atomic_path`), so concurrent
DataLoader workers are safe; non-finite maps are never written.

Precompute maps for a whole fastMRI folder (same code path and keys as training) with
:func:`fastmri_pun.workflows.espirit.precompute_maps`, or from the shell::

    python -m fastmri_pun.cli.espirit --data_path /data/multicoil_train \\
        --maps_cache_dir /data/sens_maps --num_workers 2   # training's mask and crop by default

Disk: ``C·H·W·8`` bytes per slice, e.g. 30 MB for a 16-coil 640×368 brain slice (15 MB with
the readout crop, the default).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..utils.io import atomic_path
from ..utils.seeding import default_cache_dir

__all__ = ["EspiritSettings", "SensitivityCache", "acs_bounds", "espirit_eigen", "espirit_maps"]

_KEY_VERSION = b"fastmri_pun-espirit-v2-rect"

#: auto kernel (``kernel_width=None``): 4 below this many calibration columns, else 5
AUTO_KERNEL_MIN_COLUMNS_FOR_5 = 10
#: auto readout window (``calib_rows=None``), see :meth:`EspiritSettings.resolve`
AUTO_CALIB_ROWS_PER_ACS_COLUMN = 4
AUTO_CALIB_ROWS_MIN = 32
#: aliasing warning: share of the object (calibration image > ALIAS_OBJECT of its maximum) whose
#: second eigenvalue exceeds ALIAS_EIG
ALIAS_OBJECT = 0.2
ALIAS_EIG = 0.95
ALIAS_FRACTION = 0.1


@dataclass(frozen=True)
class EspiritSettings:
    """ESPIRiT calibration settings (every field JSON-able; ``None`` = chosen by size; defaults
    measured, see the module docstring).

    Attributes:
        kernel_width: ESPIRiT kernel size k (k × k k-space patches); needs at least k + 2 ACS
            columns (None = auto: 4 with fewer than 10 calibration columns, else 5).
        crop: eigenvalue threshold in [0, 1): map pixels whose top eigenvalue is not above it
            are zeroed (0 keeps every pixel).
        thresh: singular-value threshold of the calibration matrix, relative to the largest.
        max_iter: kept for saved settings; no effect (the eigenvectors are computed exactly).
        calib_width: at most this many centre ACS columns calibrate (None = all ACS columns).
        calib_rows: readout window of the calibration block in rows (None = auto: 4 × the ACS
            width, at least 32, at most the readout length).
    """

    kernel_width: int | None = None
    crop: float = 0.9
    thresh: float = 0.005
    max_iter: int = 100
    calib_width: int | None = None
    calib_rows: int | None = None

    def __post_init__(self) -> None:
        if self.kernel_width is not None and self.kernel_width < 2:
            raise ValueError(f"ESPIRiT kernel_width must be >= 2, got {self.kernel_width}")
        if not 0.0 <= self.crop < 1.0:
            raise ValueError(f"ESPIRiT crop must be in [0, 1), got {self.crop}")
        if not 0.0 < self.thresh < 1.0:
            raise ValueError(f"ESPIRiT thresh must be in (0, 1), got {self.thresh}")
        if self.max_iter < 1:
            raise ValueError(f"ESPIRiT max_iter must be >= 1, got {self.max_iter}")
        for name in ("calib_width", "calib_rows"):
            value = getattr(self, name)
            if value is not None and value < (self.kernel_width or 2) + 2:
                raise ValueError(f"ESPIRiT {name} must be None or >= kernel_width + 2, got {value}")

    def resolve(self, acs_width: int, readout: int) -> EspiritSettings:
        """These settings with every ``None`` replaced for an ACS of ``acs_width`` columns and a
        readout of ``readout`` rows (what calibrates, and what the cache key holds).

        Raises:
            ValueError: fewer than ``kernel_width + 2`` calibration columns or rows.
        """
        cols = min(acs_width, self.calib_width or acs_width)
        kernel = self.kernel_width or (4 if cols < AUTO_KERNEL_MIN_COLUMNS_FOR_5 else 5)
        if cols < kernel + 2:
            raise ValueError(
                f"ESPIRiT needs a calibration region of at least kernel_width + 2 = {kernel + 2} "
                f"fully sampled centre columns, the mask has {acs_width} (calib_width {cols}); "
                "raise the centre fraction, lower kernel_width, or use sens_maps='learned'"
            )
        auto_rows = max(AUTO_CALIB_ROWS_PER_ACS_COLUMN * cols, AUTO_CALIB_ROWS_MIN)
        rows = min(readout, self.calib_rows or auto_rows)
        if rows < kernel + 2:
            raise ValueError(
                f"ESPIRiT needs at least kernel_width + 2 = {kernel + 2} readout rows, "
                f"k-space has {readout}"
            )
        return replace(self, kernel_width=kernel, calib_width=cols, calib_rows=rows)


def acs_bounds(mask_cols: np.ndarray, num_low_frequencies: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of the ACS (fully sampled centre) columns of a ``[W]`` boolean mask.

    With ``num_low_frequencies`` (what fastMRI's mask functions report) the ACS is fastMRI's
    centre block ``[(W - n + 1) // 2, … + n)``, so masks of any acceleration with the same centre
    fraction share their ACS (and ESPIRiT cache entries); otherwise (e.g. a mask stored in the
    file) it is the contiguous run of sampled columns around ``W // 2``.

    Raises:
        ValueError: the centre column ``W // 2`` is not sampled.
    """
    mask_cols = np.asarray(mask_cols).reshape(-1).astype(bool)
    w = mask_cols.shape[0]
    if num_low_frequencies:
        start = (w - int(num_low_frequencies) + 1) // 2
        stop = start + int(num_low_frequencies)
        if mask_cols[start:stop].all():
            return start, stop
    center = w // 2
    if not mask_cols[center]:
        raise ValueError(f"the sampling mask does not sample the k-space centre column {center}")
    start, stop = center, center + 1
    while start > 0 and mask_cols[start - 1]:
        start -= 1
    while stop < w and mask_cols[stop]:
        stop += 1
    return start, stop


def _calibration_block(
    masked_kspace: np.ndarray,
    mask_cols: np.ndarray,
    settings: EspiritSettings,
    num_low_frequencies: int | None,
) -> tuple[np.ndarray, EspiritSettings]:
    """The centred ``[C, calib_rows, calib_width]`` block of the ACS band, and the resolved
    settings."""
    _, h, _ = masked_kspace.shape
    start, stop = acs_bounds(mask_cols, num_low_frequencies)
    resolved = settings.resolve(stop - start, h)
    cols, rows = int(resolved.calib_width), int(resolved.calib_rows)
    c0 = start + (stop - start - cols) // 2
    r0 = h // 2 - rows // 2
    block = masked_kspace[:, r0 : r0 + rows, c0 : c0 + cols]
    return np.ascontiguousarray(block, dtype=np.complex64), resolved


def _kernels(block: np.ndarray, k: int, thresh: float) -> np.ndarray:
    """k-space ESPIRiT kernels ``[N, C, k, k]`` complex128 of a ``[C, rows, cols]`` block: the
    right singular vectors of its calibration matrix above ``thresh · σ_max`` (from the
    eigen-decomposition of the small ``Ck² × Ck²`` Gram matrix; ``N = 0`` for an all-zero block)."""
    c = block.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(block.astype(np.complex128), (k, k), (1, 2))
    mat = patches.transpose(1, 2, 0, 3, 4).reshape(-1, c * k * k)  # sigpy's column order
    eigval, eigvec = np.linalg.eigh(mat.conj().T @ mat)
    sigma = np.sqrt(np.clip(eigval, 0.0, None))
    if not sigma.max() > 0:
        return np.zeros((0, c, k, k), np.complex128)
    keep = sigma > thresh * sigma.max()
    return eigvec[:, keep].conj().T.reshape(-1, c, k, k)


def _image_gram(kernels: np.ndarray, h: int, w: int) -> torch.Tensor:
    """Per-pixel ``G(x) = Σ_n v_n(x) v_n(x)ᴴ`` as ``[H, W, C, C]`` complex64, ``v_n`` the centred
    orthonormal inverse FFT of kernel ``n`` zero-padded to ``[C, H, W]``, times ``√(HW)/k``
    (sigpy's scaling, eigenvalue ≈ 1 where the maps hold). ``G`` only has frequencies within
    ``±(k-1)``: computed from the kernels' cross-correlations, one FFT per coil pair."""
    n, c, k, _ = kernels.shape
    lags = 2 * k - 1
    spec = np.fft.fft2(kernels, s=(lags, lags))
    corr = np.fft.fftshift(
        np.fft.ifft2(np.einsum("nayx,nbyx->abyx", spec, spec.conj())), axes=(-2, -1)
    )
    pad = torch.zeros((c, c, h, w), dtype=torch.complex64)
    pad[:, :, h // 2 - k + 1 : h // 2 + k, w // 2 - k + 1 : w // 2 + k] = torch.from_numpy(
        corr.astype(np.complex64)
    )
    dims = (-2, -1)
    gram = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(pad, dim=dims)), dim=dims)
    return gram.mul_(h * w / k**2).permute(2, 3, 0, 1)


def espirit_maps(
    masked_kspace: np.ndarray,
    mask_cols: np.ndarray,
    settings: EspiritSettings | None = None,
    num_low_frequencies: int | None = None,
) -> np.ndarray:
    """ESPIRiT sensitivity maps from the ACS band of undersampled multicoil k-space.

    Args:
        masked_kspace: ``[C, H, W]`` complex k-space (zeros where not sampled), H = readout.
        mask_cols: ``[W]`` boolean column mask.
        settings: calibration settings (defaults: :class:`EspiritSettings`).
        num_low_frequencies: ACS width reported by the mask function (:func:`acs_bounds`).

    Returns:
        ``[C, H, W]`` complex64 maps, RSS 1 where kept, phase relative to coil 0, zero where the
        top eigenvalue is not above the resolved ``crop`` (all zero for an all-zero ACS).

    Raises:
        ValueError: too few ACS columns/rows for the kernel, unsampled centre column, or
            non-finite maps (e.g. non-finite k-space).

    Warns:
        UserWarning: the second eigenvalue is close to 1 over much of the object (aliasing).
    """
    settings = settings or EspiritSettings()
    maps, eigval, res = espirit_eigen(masked_kspace, mask_cols, settings, num_low_frequencies)
    maps *= eigval[0] > float(res.crop)
    share = _aliasing_share(masked_kspace, mask_cols, res, num_low_frequencies, eigval)
    if share > ALIAS_FRACTION:
        warnings.warn(
            f"ESPIRiT: the second eigenvalue exceeds {ALIAS_EIG} over {share:.0%} of the object, "
            "the sign of a field of view smaller than the object (phase-encoding aliasing, which "
            "one set of maps cannot resolve: use sens_maps='learned' or a wider acquired FOV) or "
            "of a noise-dominated ACS (raise thresh)",
            stacklevel=2,
        )
    return maps


def espirit_eigen(
    masked_kspace: np.ndarray,
    mask_cols: np.ndarray,
    settings: EspiritSettings,
    num_low_frequencies: int | None = None,
) -> tuple[np.ndarray, np.ndarray, EspiritSettings]:
    """Uncropped ESPIRiT maps and the two largest eigenvalues (what :func:`espirit_maps` crops).

    Returns:
        ``maps`` ``[C, H, W]`` complex64 (top eigenvectors, phase relative to coil 0; zero for an
        all-zero ACS), ``eigval`` ``[2, H, W]`` float32 (largest, second largest; zero rows when
        ``C == 1`` or the ACS is all zero) and the resolved settings.

    Raises:
        ValueError: as :func:`espirit_maps`.
    """
    c, h, w = masked_kspace.shape
    block, res = _calibration_block(masked_kspace, mask_cols, settings, num_low_frequencies)
    if not np.isfinite(block).all():
        raise ValueError("the ACS calibration block contains NaN or Inf values")
    kernels = _kernels(block, res.kernel_width, res.thresh)
    if len(kernels) == 0:
        return np.zeros((c, h, w), np.complex64), np.zeros((2, h, w), np.float32), res
    values, vectors = torch.linalg.eigh(_image_gram(kernels, h, w))  # ascending, [H, W, C(, C)]
    maps = vectors[..., -1]
    ref = maps[..., :1]
    mag = ref.abs()
    maps = maps * torch.where(mag > 0, ref.conj() / mag.clamp_min(1e-30), 1.0)
    maps = maps.permute(2, 0, 1).numpy().astype(np.complex64)
    eigval = np.zeros((2, h, w), np.float32)
    eigval[0] = values[..., -1].numpy()
    if c > 1:
        eigval[1] = values[..., -2].numpy()
    if not (np.isfinite(maps).all() and np.isfinite(eigval).all()):
        raise ValueError("ESPIRiT produced non-finite coil maps")
    return maps, eigval, res


def _aliasing_share(
    masked_kspace: np.ndarray,
    mask_cols: np.ndarray,
    resolved: EspiritSettings,
    num_low_frequencies: int | None,
    eigval: np.ndarray,
) -> float:
    """Share of the object (low-resolution image of the calibration block > ``ALIAS_OBJECT`` of
    its maximum) where the second eigenvalue exceeds ``ALIAS_EIG``."""
    c, h, w = masked_kspace.shape
    if c < 2:
        return 0.0
    block, _ = _calibration_block(masked_kspace, mask_cols, resolved, num_low_frequencies)
    rows, cols = block.shape[1:]
    pad = np.zeros((c, h, w), np.complex64)
    r0, c0 = h // 2 - rows // 2, w // 2 - cols // 2
    pad[:, r0 : r0 + rows, c0 : c0 + cols] = block
    dims = (-2, -1)
    low = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pad, axes=dims)), axes=dims)
    low = np.sqrt((np.abs(low) ** 2).sum(0))
    obj = low > ALIAS_OBJECT * low.max() if low.max() > 0 else np.zeros((h, w), bool)
    return float((eigval[1][obj] > ALIAS_EIG).mean()) if obj.any() else 0.0


_warned_dirs: set[str] = set()


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
        block, resolved = _calibration_block(
            masked_kspace, mask_cols, settings, num_low_frequencies
        )
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
    ) -> np.ndarray:
        """Cached maps ``[C, H, W]`` complex64, computed with :func:`espirit_maps` on a miss.

        Raises:
            ValueError: as :func:`espirit_maps`.

        Warns:
            UserWarning: once per cache folder, when the slice is cached only under other keys.
        """
        settings = settings or EspiritSettings()
        path, tag = self._entry(
            masked_kspace, mask_cols, fname, slice_num, settings, num_low_frequencies
        )
        self.last_hit = False
        if path.is_file():
            try:
                maps = np.load(path, allow_pickle=False)
                if (
                    maps.shape == masked_kspace.shape
                    and maps.dtype == np.complex64
                    and np.isfinite(maps).all()
                ):
                    self.last_hit = True
                    return maps
            except (OSError, ValueError):
                pass  # unreadable (e.g. disk was full): recompute and overwrite
        else:
            self._warn_other_keys(path, slice_num, tag)
        maps = espirit_maps(masked_kspace, mask_cols, settings, num_low_frequencies)
        if not np.isfinite(maps).all():  # espirit_maps raises first; never cache such maps
            raise ValueError("ESPIRiT produced non-finite coil maps")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, maps, allow_pickle=False)
        return maps
