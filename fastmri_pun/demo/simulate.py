"""Simulated multicoil acquisition of a real magnitude image (the demo-data recipe).

The recipe avoids the "inverse crime": the data are made with a forward model that is *not* the
one used for reconstruction.

1. the magnitude image is sampled on a grid ``fine_factor`` (2×) finer than the reconstruction grid;
2. a smooth random phase and smooth, *not* RSS-normalised loop-coil sensitivities are evaluated
   analytically on that fine grid (so they are not band-limited to the reconstruction grid);
3. the field of view is doubled along the readout (rows), as fastMRI's 2× readout oversampling;
4. coil images are Fourier transformed on the fine grid and k-space is cropped to
   ``[2N, N]`` (readout × phase) for an ``N × N`` reconstruction;
5. complex Gaussian noise with a small inter-coil correlation is added;
6. the ground truth is the RSS of the fully sampled (noisy) coil images, centre-cropped to
   ``N × N``, exactly how fastMRI's ``reconstruction_rss`` is made.

Coordinates: the reconstruction field of view is ``[-1, 1)²`` in (row, column) = (readout, phase);
the oversampled readout extends to ``[-2, 2)``. Pixel ``j`` of an ``n``-point axis covering
``[-e, e)`` sits at ``(j - n/2) · 2e/n``, which makes coarse pixel ``j`` coincide with fine pixel
``2j`` (the centred-FFT convention of ``fastmri.fft2c``).

The k-space SNR used throughout the project (acquisition noise here, the ``noise`` shift in
:mod:`fastmri_pun.data.shifts`) is ``SNR_dB = 10·log10(mean|k|² / σ²)``: the mean is over coils and
all k-space locations of the fully sampled k-space, ``σ² = E|n|²`` the per-sample complex noise
power (``σ²/2`` per real/imaginary part).

Everything is numpy; the pure-numpy helpers below are written by hand because no library we depend
on simulates unnormalised loop coils (sigpy's ``birdcage_maps`` RSS-normalises its maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from ..data.crop import center_crop

__all__ = [
    "AcquisitionConfig",
    "Lesion",
    "add_kspace_noise",
    "axis_coords",
    "coil_sensitivities",
    "fft2c",
    "ifft2c",
    "kspace_noise_sigma",
    "noise_covariance",
    "render_lesions",
    "resample_to_grid",
    "rss",
    "simulate_coils",
    "simulate_slice",
    "smooth_phase",
]


# --------------------------------------------------------------------------------------- FFTs
def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (``fastmri.fft2c`` convention)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def ifft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT over the last two axes (``fastmri.ifft2c``)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def rss(coil_images: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares over ``axis`` (coils). ``[C, H, W]`` complex → ``[H, W]`` real."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))


# ------------------------------------------------------------------------------- coordinates
def axis_coords(n: int, extent: float) -> np.ndarray:
    """Pixel centres of an ``n``-point axis covering ``[-extent, extent)``: ``[n]`` float64."""
    return (np.arange(n) - n / 2) * (2.0 * extent / n)


def _grid(rows: int, cols: int, row_extent: float, col_extent: float) -> tuple[np.ndarray, ...]:
    u = axis_coords(rows, row_extent)[:, None]
    v = axis_coords(cols, col_extent)[None, :]
    return np.broadcast_to(u, (rows, cols)), np.broadcast_to(v, (rows, cols))


def resample_to_grid(
    image: np.ndarray, rows: int, cols: int, row_extent: float = 1.0, col_extent: float = 1.0
) -> np.ndarray:
    """Sample a 2-D image whose field of view is ``[-1, 1)²`` on a ``rows × cols`` grid covering
    ``[-row_extent, row_extent) × [-col_extent, col_extent)`` (cubic spline, zero outside).

    ``image``: ``[h, w]`` real (Gaussian anti-aliasing when downsampling). Returns
    ``[rows, cols]`` float64, clipped at 0.
    """
    h, w = image.shape
    image = np.asarray(image, dtype=np.float64)
    # anti-alias before downsampling (output pixels per input pixel < 1)
    zoom_r, zoom_c = rows / (h * row_extent), cols / (w * col_extent)
    if min(zoom_r, zoom_c) < 1.0:
        sigma = (max(1.0 / zoom_r - 1.0, 0.0) / 2.0, max(1.0 / zoom_c - 1.0, 0.0) / 2.0)
        image = gaussian_filter(image, sigma)
    u, v = _grid(rows, cols, row_extent, col_extent)
    # inverse of axis_coords for the source grid: j = u · h/2 + h/2
    src_r = u * (h / 2.0) + h / 2.0
    src_c = v * (w / 2.0) + w / 2.0
    out = map_coordinates(image, [src_r, src_c], order=3, mode="constant", cval=0.0)
    return np.clip(out, 0.0, None)


# ------------------------------------------------------------------------- smooth fields
def smooth_phase(
    u: np.ndarray,
    v: np.ndarray,
    rng: np.random.Generator,
    max_freq: int = 2,
    amplitude: float = 1.5,
) -> np.ndarray:
    """Smooth random phase (radians) evaluated analytically at coordinates ``u, v``.

    A random low-order Fourier series (frequencies ``≤ max_freq`` cycles per 4 units) plus a random
    linear ramp; ``amplitude`` scales the typical excursion. Returns an array shaped like ``u``.
    """
    phase = rng.uniform(-np.pi, np.pi) + rng.normal(0.0, 0.3) * u + rng.normal(0.0, 0.3) * v
    for fu in range(max_freq + 1):
        for fv in range(-max_freq, max_freq + 1):
            if fu == 0 and fv <= 0:
                continue
            coef = rng.normal(0.0, amplitude / (1.0 + fu * fu + fv * fv))
            offset = rng.uniform(0.0, 2.0 * np.pi)
            phase = phase + coef * np.cos(np.pi / 2.0 * (fu * u + fv * v) + offset)
    return phase


def coil_sensitivities(
    u: np.ndarray,
    v: np.ndarray,
    num_coils: int,
    rng: np.random.Generator,
    ring_radius: float = 1.25,
    loop_radius: float = 0.6,
) -> np.ndarray:
    """Loop-coil sensitivities around the object, evaluated at coordinates ``u, v``.

    Coil ``c`` sits on a ring of radius ``ring_radius`` (rows/cols in reconstruction-FOV units)
    at angle ``2πc/C`` plus a random rotation and jitter. Its magnitude follows the on-axis
    Biot–Savart fall-off of a loop of radius ``a``: ``(a² / (a² + d²))^{3/2}``, ``d`` the distance to
    the coil; its phase winds around the coil (the in-plane field direction) plus a random offset.
    Not RSS-normalised. Returns ``[C, *u.shape]`` complex128.
    """
    rotation = rng.uniform(0.0, 2.0 * np.pi)
    maps = np.empty((num_coils, *u.shape), dtype=np.complex128)
    for c in range(num_coils):
        angle = rotation + 2.0 * np.pi * c / num_coils + rng.normal(0.0, 0.1)
        radius = ring_radius * (1.0 + rng.normal(0.0, 0.05))
        cu, cv = radius * np.cos(angle), radius * np.sin(angle)
        du, dv = u - cu, v - cv
        d2 = du * du + dv * dv
        gain = rng.uniform(0.8, 1.2)
        magnitude = gain * (loop_radius**2 / (loop_radius**2 + d2)) ** 1.5
        phase = np.arctan2(dv, -du) + rng.uniform(-np.pi, np.pi)
        maps[c] = magnitude * np.exp(1j * phase)
    return maps


def noise_covariance(num_coils: int, correlation: float = 0.2) -> np.ndarray:
    """Inter-coil noise covariance with unit diagonal: ``Ψ_ij = ρ^{d(i, j)}`` with ``d`` the
    distance of coils ``i, j`` around the ring. ``[C, C]`` float64 (positive definite for small
    ``ρ`` such as the default; :func:`add_kspace_noise` Cholesky-factors it, which fails loudly
    otherwise)."""
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"noise correlation must be in [0, 1), got {correlation}")
    idx = np.arange(num_coils)
    dist = np.abs(idx[:, None] - idx[None, :])
    dist = np.minimum(dist, num_coils - dist)
    return correlation**dist


def kspace_noise_sigma(kspace: np.ndarray, snr_db: float) -> float:
    """Per-sample complex noise std ``σ`` for ``SNR_dB = 10·log10(mean|k|² / σ²)`` on ``kspace``
    (any shape; the mean is over every entry)."""
    power = float(np.mean(np.abs(kspace) ** 2))
    return float(np.sqrt(power / 10.0 ** (snr_db / 10.0)))


def add_kspace_noise(
    kspace: np.ndarray,
    sigma: float,
    rng: np.random.Generator,
    covariance: np.ndarray | None = None,
) -> np.ndarray:
    """Add circular complex Gaussian noise of per-sample power ``σ²`` to ``[C, H, W]`` k-space,
    correlated across coils by ``covariance`` (``[C, C]`` with unit diagonal; ``None`` = white).
    Returns a new array of the input dtype."""
    white = rng.standard_normal((2, *kspace.shape))
    noise = (white[0] + 1j * white[1]) * (sigma / np.sqrt(2.0))
    if covariance is not None:  # coil-correlated: n = L w with Ψ = L Lᴴ
        noise = np.tensordot(np.linalg.cholesky(covariance), noise, axes=([1], [0]))
    return (kspace + noise).astype(kspace.dtype, copy=False)


# ---------------------------------------------------------------------------------- lesions
@dataclass(frozen=True)
class Lesion:
    """A soft-edged elliptical lesion in reconstruction-pixel coordinates.

    ``row, col``: centre (pixels of the ``N × N`` reconstruction; continuous); ``radius_row,
    radius_col``: semi-axes in pixels; ``angle``: rotation (radians); ``contrast``: multiplicative
    change of the local intensity at the centre (``> 0`` bright, ``< 0`` dark, e.g. ``+0.8`` or
    ``-0.6``); the edge is a raised-cosine over the outer ``edge`` fraction of the radius.
    """

    row: float
    col: float
    radius_row: float
    radius_col: float
    angle: float
    contrast: float
    edge: float = 0.35

    def profile(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Lesion weight in ``[0, 1]`` at (continuous) reconstruction-pixel coordinates."""
        dr, dc = rows - self.row, cols - self.col
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        a = (ca * dr + sa * dc) / self.radius_row
        b = (-sa * dr + ca * dc) / self.radius_col
        r = np.sqrt(a * a + b * b)
        inner = 1.0 - self.edge
        t = np.clip((r - inner) / self.edge, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * t))

    def bbox(self) -> tuple[int, int, int, int]:
        """Integer bounding box ``(top, left, height, width)`` in reconstruction pixels covering
        the whole ellipse (outer radius) of the rotated lesion."""
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        half_r = np.hypot(self.radius_row * ca, self.radius_col * sa)
        half_c = np.hypot(self.radius_row * sa, self.radius_col * ca)
        top, bottom = int(np.floor(self.row - half_r)), int(np.ceil(self.row + half_r))
        left, right = int(np.floor(self.col - half_c)), int(np.ceil(self.col + half_c))
        return top, left, bottom - top + 1, right - left + 1


def render_lesions(
    image: np.ndarray, lesions: list[Lesion], size: int, fine_factor: int
) -> np.ndarray:
    """Insert lesions into a magnitude image sampled on the fine reconstruction grid
    (``[size·f, size·f]`` covering the reconstruction FOV). Each lesion scales the local
    intensity by ``1 + contrast · profile``. Returns a new ``float64`` array."""
    n_fine = size * fine_factor
    if image.shape != (n_fine, n_fine):
        raise ValueError(f"image must be [{n_fine}, {n_fine}] on the fine grid, got {image.shape}")
    # fine pixel k sits at reconstruction pixel k / f (see module docstring)
    coords = np.arange(n_fine) / fine_factor
    rows, cols = coords[:, None], coords[None, :]
    out = np.array(image, dtype=np.float64)
    for lesion in lesions:
        out = out * (1.0 + lesion.contrast * lesion.profile(rows, cols))
    return out


# ------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class AcquisitionConfig:
    """Settings of the simulated acquisition.

    ``size``: reconstruction matrix ``N`` (``N × N``); k-space is
    ``[coils, readout_oversampling·N, N]``. ``snr_db``: acquisition noise, k-space SNR (module
    docstring); 30 dB puts the RSS background at ~1.2 % of the brain's mean intensity. ``scale``: overall intensity so that ``reconstruction_rss`` peaks near fastMRI's
    brain values (~1e-3), keeping the demo numerically like real data.
    """

    size: int = 128
    num_coils: int = 8
    fine_factor: int = 2
    readout_oversampling: int = 2
    snr_db: float = 30.0
    noise_correlation: float = 0.2
    ring_radius: float = 1.25
    loop_radius: float = 0.6
    phase_amplitude: float = 1.5
    scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even integer >= 16, got {self.size}")
        if self.num_coils < 1:
            raise ValueError(f"coils must be >= 1, got {self.num_coils}")
        if self.fine_factor < 1 or self.readout_oversampling < 1:
            raise ValueError("fine_factor and readout_oversampling must be >= 1")

    @property
    def kspace_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the simulated k-space (readout, phase)."""
        return (self.readout_oversampling * self.size, self.size)


def fine_object_grid(cfg: AcquisitionConfig) -> tuple[int, int]:
    """``(rows, cols)`` of the fine simulation grid over the oversampled field of view."""
    h, w = cfg.kspace_shape
    return h * cfg.fine_factor, w * cfg.fine_factor


def _fine_coords(cfg: AcquisitionConfig) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = fine_object_grid(cfg)
    return _grid(rows, cols, float(cfg.readout_oversampling), 1.0)


def simulate_coils(cfg: AcquisitionConfig, rng: np.random.Generator) -> np.ndarray:
    """One coil array on the fine grid (:func:`coil_sensitivities`): ``[C, rows, cols]``
    complex64. Simulate it once per volume and pass it to every slice."""
    u, v = _fine_coords(cfg)
    maps = coil_sensitivities(u, v, cfg.num_coils, rng, cfg.ring_radius, cfg.loop_radius)
    return maps.astype(np.complex64)


def simulate_slice(
    image_fine: np.ndarray,
    cfg: AcquisitionConfig,
    coils: np.ndarray,
    phase_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one fully sampled multicoil slice.

    Args:
        image_fine: ``[N·f, N·f]`` real magnitude image on the fine grid covering the
            reconstruction FOV (use :func:`resample_to_grid` with ``rows = cols = N·f``).
        cfg: acquisition settings.
        coils: ``[C, rows, cols]`` complex fine-grid coil maps (:func:`simulate_coils`).
        phase_rng, noise_rng: generators of the object phase and the noise.

    Returns:
        ``kspace`` ``[C, ro·N, N]`` complex64 and ``target`` ``[N, N]`` float32 (RSS of the noisy
        fully sampled coil images, centre-cropped).
    """
    n, f = cfg.size, cfg.fine_factor
    if image_fine.shape != (n * f, n * f):
        raise ValueError(f"image_fine must be [{n * f}, {n * f}], got {image_fine.shape}")
    rows, cols = fine_object_grid(cfg)
    if coils.shape != (cfg.num_coils, rows, cols):
        raise ValueError(f"coils must be [{cfg.num_coils}, {rows}, {cols}], got {coils.shape}")
    # object in the central rows of the oversampled FOV
    obj = np.zeros((rows, cols), dtype=np.float64)
    top = (rows - n * f) // 2
    obj[top : top + n * f] = image_fine * cfg.scale
    u, v = _fine_coords(cfg)
    obj_c = obj * np.exp(1j * smooth_phase(u, v, phase_rng, amplitude=cfg.phase_amplitude))
    k_fine = fft2c(coils * obj_c.astype(np.complex64)[None])
    h, w = cfg.kspace_shape
    # cropping a centred orthonormal FFT from M to m samples scales the image by sqrt(M/m)
    kspace = center_crop(k_fine, (h, w)) * np.float32(np.sqrt((h * w) / (rows * cols)))
    sigma = kspace_noise_sigma(kspace, cfg.snr_db)
    cov = noise_covariance(cfg.num_coils, cfg.noise_correlation)
    kspace = add_kspace_noise(kspace, sigma, noise_rng, cov).astype(np.complex64)
    target = center_crop(rss(ifft2c(kspace)), (n, n)).astype(np.float32)
    return kspace, target
