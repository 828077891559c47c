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
The numerics are torch end to end (:mod:`fastmri_pun.data.espirit_core`): kernels from the
float64 ``eigh`` of the calibration matrix's Gram matrix, ``G`` from the kernels' autocorrelation
(lags within ``±(k-1)``) by two small DFTs instead of one inverse FFT per kernel and coil, and
the eigenvectors by batched ``torch.linalg.eigh`` (CUDA) or by certified power iterations
(CPU: within ``1e-3`` of ``eigh``'s up to a phase wherever the map is kept). A batch
``[B, C, H, W]`` of slices sharing one mask is computed in one call, on the device of a torch
input (CPU or CUDA); numpy in gives numpy out. On a square block the maps equal sigpy's up to a
per-pixel phase (``1e-4`` inside the object, ``tests/test_data_espirit_torch.py``), in less
than half of BART ``ecalib``'s time on one thread (``benchmarks/bench_espirit_speed.py``, which
also compares the maps with BART's; its ``-t`` bounds the squared singular values: ``-t`` =
thresh²).

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

Cache: :class:`~fastmri_pun.data.espirit_cache.SensitivityCache` (re-exported here) stores
the maps of one slice per file, keyed by the exact calibration block and the resolved settings.

Precompute maps for a whole fastMRI folder (same code path and keys as training) with
:func:`fastmri_pun.app.espirit.precompute.precompute_maps`, or from the shell::

    python -m fastmri_pun.app.espirit --data_path /data/multicoil_train \\
        --maps_cache_dir /data/sens_maps --num_workers 2   # training's mask and crop by default

"""

from .espirit_cache import SensitivityCache
from .espirit_calib import (
    ALIAS_EIG,
    ALIAS_FRACTION,
    ALIAS_OBJECT,
    AUTO_CALIB_ROWS_MIN,
    AUTO_CALIB_ROWS_PER_ACS_COLUMN,
    AUTO_KERNEL_MIN_COLUMNS_FOR_5,
    EspiritSettings,
    acs_bounds,
    espirit_eigen,
    espirit_maps,
)

__all__ = [
    "ALIAS_EIG",
    "ALIAS_FRACTION",
    "ALIAS_OBJECT",
    "AUTO_CALIB_ROWS_MIN",
    "AUTO_CALIB_ROWS_PER_ACS_COLUMN",
    "AUTO_KERNEL_MIN_COLUMNS_FOR_5",
    "EspiritSettings",
    "SensitivityCache",
    "acs_bounds",
    "espirit_eigen",
    "espirit_maps",
]
