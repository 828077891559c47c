"""``maps_fit`` on an accelerator (the simulator, ``tests/device_simulator.py``): device tensors
give the CPU's value, computed on the device, with two host reads (the mask, the result)."""

from __future__ import annotations

import math

import numpy as np
import torch
from device_simulator import SIM_DEVICE, simulated_gpu
from fastmri import ifft2c
from quirk_files import equispaced_mask, simulate_volume

from fastmri_pun.data.espirit import espirit_maps
from fastmri_pun.evaluation.coil_maps import OBJECT_FRACTION, maps_fit


def _slice(noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real-view masked k-space ``[8, 128, 64, 2]``, mask ``[1, 1, 64, 1]`` and its ESPIRiT maps
    ``[8, 128, 64, 2]`` (maps of the noise-free data)."""
    rng = np.random.default_rng(7)
    (k,), _ = simulate_volume(rng, 1, 8, 64, recon=64)
    cols = equispaced_mask(64, 4, 10, offset=0)
    maps = espirit_maps(k * cols, cols)
    k = k + noise * np.abs(k).max() * (
        rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)
    )
    ksp = torch.view_as_real(torch.from_numpy((k * cols).astype(np.complex64)))
    mask = torch.from_numpy(cols).reshape(1, 1, -1, 1)
    return ksp, mask, torch.view_as_real(torch.from_numpy(maps))


def _reference(ksp: torch.Tensor, cols: np.ndarray, maps: torch.Tensor) -> float:
    """The module docstring's definition in float64 numpy (ACS: the sampled run around the centre)."""
    acs = torch.zeros_like(ksp)
    c = len(cols) // 2
    start, stop = c, c + 1
    while cols[start - 1]:
        start -= 1
    while cols[stop]:
        stop += 1
    acs[:, :, start:stop] = ksp[:, :, start:stop]
    x = torch.view_as_complex(ifft2c(acs).contiguous()).numpy().astype(np.complex128)
    s = torch.view_as_complex(maps.contiguous()).numpy().astype(np.complex128)
    rss = np.sqrt((np.abs(x) ** 2).sum(0))
    obj = rss > OBJECT_FRACTION * rss.max()
    return float(np.mean(np.abs((s.conj() * x).sum(0))[obj] / rss[obj]))


def test_maps_fit_of_device_tensors_is_the_cpu_value_with_two_host_reads():
    for noise in (0.0, 0.05):
        ksp, mask, maps = _slice(noise)
        cpu = maps_fit(ksp, mask, maps, 10)
        assert math.isclose(cpu, _reference(ksp, mask.reshape(-1).numpy(), maps), rel_tol=1e-12)
        with simulated_gpu() as sim:
            dev = maps_fit(ksp.to(SIM_DEVICE), mask.to(SIM_DEVICE), maps.to(SIM_DEVICE), 10)
            assert sim.syncs == 2, sim.sync_sites  # the mask's W entries, the result
        assert isinstance(dev, float) and dev == cpu, (dev, cpu)
    assert 0.99 < maps_fit(*_slice(), 10) <= 1 + 1e-6  # consistent maps fit


def test_maps_fit_on_the_device_without_signal_or_maps_is_nan():
    ksp, mask, maps = _slice()
    with simulated_gpu() as sim:
        zero = maps_fit(
            torch.zeros_like(ksp).to(SIM_DEVICE), mask.to(SIM_DEVICE), maps.to(SIM_DEVICE)
        )
        learned = maps_fit(
            ksp.to(SIM_DEVICE), mask.to(SIM_DEVICE), torch.zeros(0, device=SIM_DEVICE)
        )
        assert sim.syncs == 2
    assert math.isnan(zero) and math.isnan(learned)
    assert math.isnan(maps_fit(torch.zeros_like(ksp), mask, maps))
