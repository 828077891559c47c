"""ESPIRiT numerics in torch for a batch of calibration blocks, on the blocks' device.

Three steps (Uecker et al., MRM 71:990, 2014), see :mod:`fastmri_pun.data.espirit`:

1. :func:`kernel_correlations`: calibration (Hankel) matrix of every ``k × k × C`` patch of a
   block, the eigen-decomposition of its ``Ck² × Ck²`` Gram matrix in float64 (``eigh``), and the
   cross-correlations of the kernels whose singular value is above ``thresh · σ_max``. Kernels
   are selected by a 0/1 weight rather than by indexing, so blocks with different kernel counts
   share one batched computation.
2. :func:`image_gram`: the per-pixel ``C × C`` matrix ``G(x) = Σ_n v_n(x) v_n(x)ᴴ`` of the
   kernels' images. ``G`` only holds spatial frequencies within ``±(k-1)``, so instead of one
   ``H × W`` inverse FFT per coil pair it is two small DFTs: ``(2k-1)`` lags to ``W`` columns,
   then one matrix product ``[R, 2k-1] @ [2k-1, W·C·C]`` for ``R`` rows at a time. Every
   entry is computed although ``G`` is Hermitian: selecting the ``C(C+1)/2`` pairs and
   scattering them into the ``C × C`` layout that ``eigh`` reads cost more than the product
   saved (measured at 320², 16 coils, one thread: product 0.08 s, scatter 0.23 s).
3. :func:`espirit_eigenmaps`: the top eigenvector of ``G`` per pixel as the map (phase relative
   to coil 0) and the two largest eigenvalues (crop, aliasing check), row chunk by row chunk (a
   reused buffer of about ``chunk_bytes``). Two solvers:

   - ``"eigh"``: batched ``torch.linalg.eigh``, exact; the CUDA default (one batched solver
     call; not yet timed against ``"power"`` on a GPU).
   - ``"power"`` (:func:`_top_eigen_power`), the CPU default: ``eigh`` on every 4th pixel of
     both axes, 6 power iterations elsewhere from the nearest such pixel's eigenvector, and a
     per-pixel certificate ``sin θ ≤ r / (ρ − λ₂) ≤ 1e-3`` (Davis–Kahan, with a Weyl bound on
     ``λ₂``); uncertified pixels (about 15 %) get ``eigh``, unless their top eigenvalue is
     provably below the crop. Measured at 320², 16 coils, one thread
     (``benchmarks/bench_espirit_speed.py``): 1.15 s against 3.0 s for ``eigh`` of every pixel.
     Plain power iterations from a column of ``G`` were slower than ``eigh`` for the same
     accuracy: where the two top eigenvalues are close (ratio above 0.9 on several % of the
     support) hundreds of iterations are needed, and one batched ``16 × 16`` product over
     a 320² image already costs about 1/50 of ``eigh``. The price: the second eigenvalue is
     exact only where ``eigh`` ran, elsewhere the nearest coarse pixel's (within
     ``‖G − G'‖_F``, 0.05 at most in the tests), which is what the aliasing check needs.
"""

from __future__ import annotations

import math

import torch

__all__ = ["espirit_eigenmaps", "image_gram", "kernel_correlations"]

#: size of the reused per-chunk buffer of ``G`` (rows of ``W·C·C`` complex64 entries)
#: (CPU: a few MiB, so the chunk and its temporaries stay in a 32 MiB L3 cache: 1.15 s instead of
#: 1.4 s with 16 MiB for the power solver at 320², 16 coils)
CHUNK_BYTES = {"cpu": 6 * 2**20, "cuda": 1024 * 2**20}
#: per-pixel solver ``"power"``: exact ``eigh`` on every this-many-th pixel of both axes
COARSE_STRIDE = 4
#: per-pixel solver ``"power"``: iterations from the nearest coarse pixel's eigenvector
POWER_ITERATIONS = 6
#: per-pixel solver ``"power"``: bound on ``sin θ`` to the exact eigenvector (else ``eigh``)
TOLERANCE = 1e-3
#: per-pixel solver of ``solver="auto"``: the certified power iterations on every device (on the
#: CPU measured faster, see the module docstring), so maps computed on a GPU are the CPU's and a
#: map cache holds the same files whichever device filled it. ``"eigh"`` (exact, one batched
#: call; its maps differ from these by up to ``TOLERANCE`` up to a phase) is not timed on a GPU.
AUTO_SOLVER = {"cpu": "power", "cuda": "power"}


def _hankel(blocks: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, P, C·k·k]`` complex128 calibration matrices of ``[B, C, rows, cols]`` blocks: one row
    per ``k × k`` patch, columns ordered (coil, row, column) as in sigpy."""
    b, c, _, _ = blocks.shape
    patches = blocks.to(torch.complex128).unfold(2, k, 1).unfold(3, k, 1)  # [B, C, r, s, k, k]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * k * k)


def kernel_correlations(blocks: torch.Tensor, k: int, thresh: float) -> torch.Tensor:
    """Summed cross-correlations of the ESPIRiT k-space kernels of each calibration block.

    Args:
        blocks: ``[B, C, rows, cols]`` complex calibration blocks (rows, cols ≥ k).
        k: kernel width.
        thresh: kernels are the right singular vectors of the calibration matrix whose singular
            value is above ``thresh · σ_max``.

    Returns:
        ``[B, 2k-1, 2k-1, C, C]`` complex128 ``R[l, a, b] = Σ_n Σ_m v_na[m + l] conj(v_nb[m])``
        over the kept kernels ``v_n`` (``[C, k, k]``), lag ``l`` at index ``l + k - 1``; zero
        for an all-zero block.
    """
    b, c, _, _ = blocks.shape
    mat = _hankel(blocks, k)
    eigval, eigvec = torch.linalg.eigh(mat.mH @ mat)  # ascending, columns = singular vectors
    sigma = eigval.clamp_min(0.0).sqrt()
    top = sigma.amax(-1, keepdim=True)
    keep = ((sigma > thresh * top) & (top > 0)).to(torch.complex128)  # [B, N]
    kernels = eigvec.conj().mT.reshape(b, -1, c, k, k)  # [B, N, C, k, k], kernel n = conj(v_n)
    lags = 2 * k - 1
    spec = torch.fft.fft2(kernels, s=(lags, lags)).permute(0, 3, 4, 2, 1)  # [B, L, L, C, N]
    cross = (spec * keep[:, None, None, None, :]) @ spec.mH  # [B, L, L, C, C]
    return torch.fft.fftshift(torch.fft.ifft2(cross, dim=(1, 2)), dim=(1, 2))


def _dft(n: int, k: int, device: torch.device) -> torch.Tensor:
    """``[n, 2k-1]`` complex128 ``exp(2πi · lag · (i - n//2) / n)``: lags to centred pixels."""
    pixel = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    lag = torch.arange(2 * k - 1, dtype=torch.float64, device=device) - (k - 1)
    return torch.polar(
        torch.ones((), dtype=torch.float64, device=device),
        2 * math.pi / n * torch.outer(pixel, lag),
    )


def _lag_columns(corr: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, 2k-1, W·C·C]`` complex64: the column DFT of :func:`kernel_correlations` (first
    stage of :func:`image_gram`), scaled by ``1/k²``."""
    b, lags, _, c, _ = corr.shape
    k = (lags + 1) // 2
    cols = torch.einsum("xl,bmlac->bmxac", _dft(width, k, corr.device), corr) / (k * k)
    return cols.to(torch.complex64).reshape(b, lags, width * c * c)


def image_gram(
    corr: torch.Tensor, height: int, width: int, rows: slice | None = None
) -> torch.Tensor:
    """Per-pixel ESPIRiT matrices ``G(x)`` of :func:`kernel_correlations`.

    ``G(x) = Σ_n v_n(x) v_n(x)ᴴ`` with ``v_n`` the centred orthonormal inverse FFT of kernel ``n``
    zero-padded to ``[C, H, W]``, times ``√(HW)/k`` (sigpy's scaling: eigenvalue ≈ 1 where the
    coil model holds).

    Args:
        corr: ``[B, 2k-1, 2k-1, C, C]`` complex128 kernel cross-correlations.
        height, width: image size ``H, W``.
        rows: the image rows to compute (default: all).

    Returns:
        ``[B, R, W, C, C]`` complex64 Hermitian matrices for the ``R`` selected rows.
    """
    b, lags, _, c, _ = corr.shape
    fy = _dft(height, (lags + 1) // 2, corr.device)[rows if rows is not None else slice(None)]
    out = fy.to(torch.complex64) @ _lag_columns(corr, width)  # [B, R, W·C·C]
    return out.reshape(b, -1, width, c, c)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norms of the rows of ``[P, N]`` complex ``x`` (as ``[P]`` float32; summing
    the real view is several times faster than ``vector_norm`` over a complex dimension)."""
    return torch.view_as_real(x).square().sum((1, 2)).sqrt()


def _phase_to_coil0(vectors: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` vectors times the conjugate phase of their coil-0 entry."""
    ref = vectors[..., :1]
    mag = ref.abs()
    return vectors * torch.where(mag > 0, ref.conj() / mag.clamp_min(1e-30), 1.0)


def _top_eigen_exact(gram: torch.Tensor, maps: torch.Tensor, eigval: torch.Tensor) -> None:
    """Top eigenvector of ``[..., C, C]`` ``gram`` into ``maps`` ``[..., C]`` (phase relative to
    coil 0) and the two largest eigenvalues into ``eigval`` ``[..., 2]``, by ``eigh``."""
    values, vectors = torch.linalg.eigh(gram)  # ascending
    maps.copy_(_phase_to_coil0(vectors[..., -1]))
    eigval[..., 0] = values[..., -1]
    if gram.shape[-1] > 1:
        eigval[..., 1] = values[..., -2]


def _top_eigen_power(
    gram: torch.Tensor, maps: torch.Tensor, eigval: torch.Tensor, crop: float
) -> None:
    """As :func:`_top_eigen_exact` for ``[R, W, C, C]`` ``gram``, by certified power iterations.

    ``eigh`` on every ``COARSE_STRIDE``-th pixel of both axes; every other pixel starts from its
    nearest coarse pixel's eigenvector and runs ``POWER_ITERATIONS`` iterations. With ``ρ`` the
    Rayleigh quotient and ``r = ‖Gv − ρv‖``, the angle to the exact eigenvector obeys
    ``sin θ ≤ r / (ρ − λ₂)`` (Davis–Kahan), and ``λ₂ ≤ λ₂' + ‖G − G'‖_F`` (Weyl, ``'`` = the
    coarse pixel). Pixels where that bound is not below ``TOLERANCE`` get ``eigh``, except where
    ``λ₁ ≤ λ₁' + ‖G − G'‖_F ≤ crop`` proves the map is cropped anyway (their map is then the
    power-iteration estimate and ``eigval[..., 0] = ρ ≤ crop``). ``eigval[..., 1]`` is exact where
    ``eigh`` ran and the coarse neighbour's ``λ₂'`` elsewhere (within ``‖G − G'‖_F``)."""
    rows, width, c, _ = gram.shape
    dev = gram.device
    ys = torch.arange(0, rows, COARSE_STRIDE, device=dev)
    xs = torch.arange(0, width, COARSE_STRIDE, device=dev)
    coarse = gram[ys][:, xs]
    values, vectors = torch.linalg.eigh(coarse)
    ny = ((torch.arange(rows, device=dev) + COARSE_STRIDE // 2) // COARSE_STRIDE).clamp_max(
        len(ys) - 1
    )
    nx = ((torch.arange(width, device=dev) + COARSE_STRIDE // 2) // COARSE_STRIDE).clamp_max(
        len(xs) - 1
    )
    dist = _norm(torch.sub(gram, coarse[ny][:, nx]).view(-1, c * c))  # ≥ spectral norm
    near_top = values[..., -1][ny][:, nx].flatten()
    near_second = values[..., -2][ny][:, nx].flatten() if c > 1 else torch.zeros_like(near_top)
    g = gram.reshape(-1, c, c)
    v = vectors[..., -1][ny][:, nx].reshape(-1, c, 1)
    for _ in range(POWER_ITERATIONS):
        v = g @ v
        v = v / _norm(v.view(-1, c)).clamp_min(1e-30)[:, None, None]
    gv = g @ v
    rho = torch.view_as_real(v.conj() * gv).sum((1, 2))[:, :1]  # [P, 1]: Re vᴴGv
    resid = _norm((gv - rho[:, :, None] * v).view(-1, c))
    gap = rho[:, 0] - (near_second + dist)
    certified = (gap > 0) & (resid <= TOLERANCE * gap)
    cropped = near_top + dist <= crop
    top, first, second = v[..., 0], rho[:, 0], near_second.clone()
    redo = torch.nonzero(~(certified | cropped)).flatten()
    if len(redo):
        exact_values, exact_vectors = torch.linalg.eigh(g[redo])
        top[redo] = exact_vectors[..., -1]
        first[redo] = exact_values[..., -1]
        if c > 1:
            second[redo] = exact_values[..., -2]
    maps.copy_(_phase_to_coil0(top).view(rows, width, c))
    eigval[..., 0] = first.view(rows, width)
    eigval[..., 1] = second.view(rows, width)


def espirit_eigenmaps(
    blocks: torch.Tensor,
    height: int,
    width: int,
    kernel_width: int,
    thresh: float,
    crop: float = 0.0,
    solver: str = "auto",
    chunk_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncropped ESPIRiT maps and eigenvalues of a batch of calibration blocks.

    Args:
        blocks: ``[B, C, rows, cols]`` complex calibration blocks (centred ACS region), on the
            device to compute on.
        height, width: image size ``H, W`` of the maps.
        kernel_width: kernel size ``k`` (``k ≤ rows, cols``).
        thresh: singular-value threshold relative to the largest.
        crop: pixels whose top eigenvalue is provably not above ``crop`` may keep an inexact
            map (``solver="power"``; the caller crops them); 0 = every map to ``TOLERANCE``.
        solver: per-pixel eigenvectors by ``"eigh"`` (exact), ``"power"`` (certified power
            iterations, maps within ``TOLERANCE`` of ``eigh``'s up to a phase where the top
            eigenvalue may exceed ``crop``; the second eigenvalue estimated, see
            :func:`_top_eigen_power`) or ``"auto"`` (``AUTO_SOLVER`` of the device type).
        chunk_bytes: size of the per-chunk buffer of ``G`` (default: 6 MiB on CPU, 1 GiB on
            CUDA); only speed and memory depend on it.

    Returns:
        ``maps`` ``[B, C, H, W]`` complex64 (top eigenvector per pixel, unit norm, phase relative
        to coil 0; zero for an all-zero block) and ``eigval`` ``[B, 2, H, W]`` float32 (largest,
        second largest; the second is zero when ``C == 1``), on ``blocks.device``.

    Raises:
        ValueError: ``blocks`` is not ``[B, C, rows, cols]`` complex with ``rows, cols ≥ k``, or
            an unknown ``solver``.
    """
    if blocks.ndim != 4 or not blocks.is_complex():
        raise ValueError(
            f"blocks must be [B, C, rows, cols] complex, got {tuple(blocks.shape)} {blocks.dtype}"
        )
    b, c, r, s = blocks.shape
    if min(r, s) < kernel_width:
        raise ValueError(f"calibration block {r}×{s} is smaller than the kernel {kernel_width}")
    device = blocks.device
    if solver == "auto":
        solver = AUTO_SOLVER.get(device.type, "power")
    if solver not in ("eigh", "power"):
        raise ValueError(f"solver must be 'auto', 'eigh' or 'power', got {solver!r}")
    corr = kernel_correlations(blocks, kernel_width, thresh)
    maps = torch.zeros((b, height, width, c), dtype=torch.complex64, device=device)
    eigval = torch.zeros((b, height, width, 2), dtype=torch.float32, device=device)
    budget = chunk_bytes or CHUNK_BYTES.get(device.type, CHUNK_BYTES["cpu"])
    step = max(1, budget // (width * c * c * 8))
    if solver == "power":  # whole coarse cells per chunk
        step = max(COARSE_STRIDE, step // COARSE_STRIDE * COARSE_STRIDE)
    nonzero = corr.flatten(1).abs().amax(1) > 0
    fy = _dft(height, kernel_width, device).to(torch.complex64)
    buffer = torch.empty((min(step, height), width * c * c), dtype=torch.complex64, device=device)
    for i in torch.nonzero(nonzero).flatten().tolist():  # slices with kernels
        cols = _lag_columns(corr[i : i + 1], width)[0]  # [2k-1, W·C·C]
        for y0 in range(0, height, step):
            y1 = min(y0 + step, height)
            gram = torch.matmul(fy[y0:y1], cols, out=buffer[: y1 - y0])
            gram = gram.view(y1 - y0, width, c, c)
            if solver == "eigh":
                _top_eigen_exact(gram, maps[i, y0:y1], eigval[i, y0:y1])
            else:
                _top_eigen_power(gram, maps[i, y0:y1], eigval[i, y0:y1], crop)
    return maps.permute(0, 3, 1, 2), eigval.permute(0, 3, 1, 2)
