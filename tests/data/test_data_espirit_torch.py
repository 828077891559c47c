"""ESPIRiT's torch core: sigpy's maps up to a per-pixel phase, a batch equals its slices, the
power-iteration solver equals ``eigh``, numpy and torch inputs agree, bad inputs raise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quirk_files import equispaced_mask, simulate_volume

from fastmri_pun.data import espirit_numerics
from fastmri_pun.data.espirit import (
    EspiritSettings,
    _aliasing_share,
    calibration_block,
    espirit_eigen,
    espirit_maps,
)
from fastmri_pun.data.espirit_numerics import espirit_eigenmaps

SQUARE = EspiritSettings(5, 0.9, 0.02, calib_rows=12)  # the 12 × 12 block sigpy can take


def _kspace(coils: int, width: int, seed: int, slices: int = 1) -> np.ndarray:
    """``[S, C, 2W, W]`` complex64 k-space of the test-file simulator."""
    k, _ = simulate_volume(np.random.default_rng(seed), slices, coils, width, recon=width)
    return k


def _residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``‖a − b (bᴴa)‖`` per pixel of unit-normalised ``[C, ...]`` maps where both are nonzero
    (0: the same map up to a phase)."""
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    both = (na > 0) & (nb > 0)
    a, b = a[:, both] / na[both], b[:, both] / nb[both]
    return np.linalg.norm(a - b * (b.conj() * a).sum(0), axis=0)


def _blocks(k: np.ndarray, cols: np.ndarray, settings: EspiritSettings) -> torch.Tensor:
    block, _ = calibration_block(k * cols, cols, settings, None)
    return torch.from_numpy(block.reshape(-1, *block.shape[-3:]))


def test_maps_equal_sigpy_up_to_a_phase_inside_the_support() -> None:
    import sigpy.mri

    (k,) = _kspace(8, 64, seed=1)
    c, h, w = k.shape
    cols = equispaced_mask(w, 4, 12, offset=0)
    ours = espirit_maps(k * cols, cols, SQUARE)
    square = np.zeros_like(k)
    r0, c0 = h // 2 - 6, w // 2 - 6
    square[:, r0 : r0 + 12, c0 : c0 + 12] = k[:, r0 : r0 + 12, c0 : c0 + 12]
    ref = sigpy.mri.app.EspiritCalib(
        square, calib_width=12, thresh=0.02, kernel_width=5, crop=0.9, show_pbar=False
    ).run()
    both = (np.abs(ours).sum(0) > 0) & (np.abs(ref).sum(0) > 0)
    assert both.mean() > 0.3  # the support is most of the object
    residual = _residual(ours, ref)
    # measured: 99th percentile 5e-5, max 8e-5 (sigpy: 100 power iterations, ours: certified
    # power iterations, sin θ ≤ 1e-3 to the exact eigenvector)
    assert np.quantile(residual, 0.99) < 1e-4 and residual.max() < 1e-3


@pytest.mark.parametrize("solver", ["eigh", "power"])
def test_batch_equals_its_slices(solver: str) -> None:
    k = _kspace(8, 64, seed=2, slices=3)
    cols = equispaced_mask(64, 4, 10, offset=0)
    blocks = _blocks(k, cols, EspiritSettings())
    res = EspiritSettings().resolve(10, 128)
    together = espirit_eigenmaps(blocks, 128, 64, res.kernel_width, res.thresh, solver=solver)
    for i in range(3):
        alone = espirit_eigenmaps(
            blocks[i : i + 1], 128, 64, res.kernel_width, res.thresh, solver=solver
        )
        torch.testing.assert_close(together[0][i], alone[0][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(together[1][i], alone[1][0], atol=1e-6, rtol=0)
    maps = espirit_maps(k * cols, cols)
    assert maps.shape == k.shape and maps.dtype == np.complex64
    for i in range(3):
        np.testing.assert_allclose(maps[i], espirit_maps(k[i] * cols, cols), atol=1e-6)


def test_power_iterations_equal_eigh() -> None:
    (k,) = _kspace(16, 128, seed=3)
    cols = equispaced_mask(128, 4, 10, offset=0)
    res = EspiritSettings().resolve(10, 256)
    blocks = _blocks(k, cols, EspiritSettings())
    args = (blocks, 256, 128, res.kernel_width, res.thresh)
    exact_maps, exact_val = espirit_eigenmaps(*args, solver="eigh")
    power_maps, power_val = espirit_eigenmaps(*args, crop=0.0, solver="power")
    # every map within the certified bound (sin θ ≤ 1e-3; measured max 9e-4, float32
    # rounding allowed for); the top eigenvalue to rounding (measured 8e-7)
    residual = _residual(power_maps[0].numpy(), exact_maps[0].numpy())
    assert residual.size == 256 * 128 and residual.max() <= 1.1e-3
    torch.testing.assert_close(power_val[0, 0], exact_val[0, 0], atol=1e-5, rtol=0)
    # second eigenvalue: the nearest coarse pixel's, within ‖G − G'‖_F (measured max 0.05, 90th percentile 0.006)
    second = (power_val[0, 1] - exact_val[0, 1]).abs()
    assert second.max() < 0.1 and torch.quantile(second.flatten(), 0.9) < 0.03
    # with a crop: the same kept pixels, maps within the bound wherever they are kept
    crop = float(res.crop)
    cropped_maps, cropped_val = espirit_eigenmaps(*args, crop=crop, solver="power")
    kept = exact_val[0, 0] > crop
    near = (exact_val[0, 0] - crop).abs() < 1e-5
    assert torch.equal((cropped_val[0, 0] > crop)[~near], kept[~near])
    keep = (kept & ~near).numpy()
    assert (
        _residual(cropped_maps[0].numpy()[:, keep], exact_maps[0].numpy()[:, keep]).max() <= 1.1e-3
    )


def test_aliasing_share_with_the_estimated_second_eigenvalue() -> None:
    (k,) = _kspace(8, 128, seed=1)
    aliased = k[:, :, ::2] * np.float32(np.sqrt(2))  # FOV halved: the object folds over itself
    cols = equispaced_mask(64, 4, 12, offset=0)
    blocks = _blocks(aliased, cols, EspiritSettings())
    res = EspiritSettings().resolve(12, 256)
    shares = []
    for solver in ("eigh", "power"):
        _, val = espirit_eigenmaps(blocks, 256, 64, res.kernel_width, res.thresh, solver=solver)
        shares.append(_aliasing_share(blocks, val)[0])
    assert shares[0] > 0.1 and abs(shares[0] - shares[1]) < 0.02, shares


def test_numpy_and_torch_inputs_give_the_same_maps() -> None:
    (k,) = _kspace(4, 64, seed=4)
    cols = equispaced_mask(64, 4, 10, offset=0)
    ref = espirit_maps(k * cols, cols)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.complex64
    ours = espirit_maps(torch.from_numpy(k * cols), cols)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.complex64
    np.testing.assert_array_equal(ours.numpy(), ref)
    batch = espirit_maps(torch.from_numpy(k * cols)[None], cols)
    assert batch.shape == (1, *k.shape)
    np.testing.assert_array_equal(batch[0].numpy(), ref)
    maps, eigval, res = espirit_eigen(torch.from_numpy(k * cols), cols, EspiritSettings())
    ref_maps, ref_eigval, ref_res = espirit_eigen(k * cols, cols, EspiritSettings())
    assert eigval.shape == (2, *k.shape[1:]) and res == ref_res
    np.testing.assert_array_equal(maps.numpy(), ref_maps)
    np.testing.assert_array_equal(eigval.numpy(), ref_eigval)


def test_bad_inputs_raise() -> None:
    (k,) = _kspace(4, 64, seed=4)
    cols = equispaced_mask(64, 4, 10, offset=0)
    with pytest.raises(ValueError, match=r"\[C, H, W\] or \[B, C, H, W\]"):
        espirit_maps(k[0], cols)
    with pytest.raises(ValueError, match="the mask has 32 columns"):
        espirit_maps(k, cols[:32])
    with pytest.raises(ValueError, match="NaN"):
        bad = torch.from_numpy(k * cols)
        bad[0, 64, 32] = float("nan")
        espirit_maps(bad, cols)
    blocks = _blocks(k, cols, EspiritSettings())
    with pytest.raises(ValueError, match="solver"):
        espirit_eigenmaps(blocks, 128, 64, 5, 0.005, solver="lanczos")
    with pytest.raises(ValueError, match="complex"):
        espirit_eigenmaps(blocks.real, 128, 64, 5, 0.005)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        espirit_eigenmaps(blocks[..., :4], 128, 64, 5, 0.005)
    assert espirit_numerics.AUTO_SOLVER["cpu"] == "power"
