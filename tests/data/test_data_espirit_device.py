"""ESPIRiT on an accelerator (the simulator, ``tests/device_simulator.py``): device k-space and a
device mask give the CPU's maps, computed on the device, with the mask read on the host once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from device_simulator import SIM_DEVICE, DeviceTensor, simulated_gpu
from quirk_files import equispaced_mask, simulate_volume

from fastmri_pun.data import espirit_numerics
from fastmri_pun.data.espirit import EspiritSettings, espirit_eigen, espirit_maps


def _batch(slices: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``[S, 8, 128, 64]`` complex64 masked k-space of the test-file simulator and its
    equispaced mask (10 ACS columns)."""
    k, _ = simulate_volume(np.random.default_rng(4), slices, 8, 64, recon=64)
    cols = equispaced_mask(64, 4, 10, offset=0)
    return np.ascontiguousarray(k * cols, dtype=np.complex64), cols


@pytest.mark.parametrize("mask_on_device", [True, False])
def test_device_kspace_and_mask_give_the_cpu_maps_of_the_same_solver(monkeypatch, mask_on_device):
    k, cols = _batch()
    # every device runs the same solver (AUTO_SOLVER: certified power iterations), so the
    # device computes the same ops on the same numbers
    ref = espirit_maps(torch.from_numpy(k), cols)
    with simulated_gpu() as sim:
        ksp = torch.from_numpy(k).to(SIM_DEVICE)
        mask = torch.from_numpy(cols).to(SIM_DEVICE) if mask_on_device else cols
        maps = espirit_maps(ksp, mask)
        assert isinstance(maps, DeviceTensor) and maps.device == SIM_DEVICE
        mask_syncs = sum(n for s, n in sim.sync_sites.items() if s.endswith("in _host_mask"))
        syncs = sim.syncs
        sim.reset()
        espirit_maps(ksp[:1], mask)  # one slice: about as many host syncs as three
        assert abs(sim.syncs - syncs) <= 2 and syncs <= 10, sim.sync_sites
        got = maps.cpu()
    assert got.dtype == torch.complex64 and got.shape == k.shape
    assert torch.equal(got, ref)
    # a device mask comes to the host once (its W entries), a numpy mask never leaves it
    assert mask_syncs == (1 if mask_on_device else 0), sim.sync_sites


def test_exact_eigh_on_the_device_agrees_with_the_default_up_to_a_phase(monkeypatch):
    """The default solver is certified power iterations (``sin θ ≤ 1e-3`` to ``eigh``) on every
    device; ``eigh`` on a device: same crop, maps within 1e-3 up to a per-pixel phase, not bit
    for bit (element-wise more where coil 0, the phase reference, is weak)."""
    k, cols = _batch()
    cpu = espirit_maps(k, cols)
    monkeypatch.setitem(espirit_numerics.AUTO_SOLVER, SIM_DEVICE.type, "eigh")
    with simulated_gpu():
        dev = espirit_maps(
            torch.from_numpy(k).to(SIM_DEVICE), torch.from_numpy(cols).to(SIM_DEVICE)
        )
        dev = dev.cpu().numpy()
    kept = np.abs(cpu).sum(1) > 0  # [S, H, W]
    assert np.array_equal(kept, np.abs(dev).sum(1) > 0) and kept.mean() > 0.2  # same crop
    a, b = np.moveaxis(cpu, 1, 0)[:, kept], np.moveaxis(dev, 1, 0)[:, kept]  # [C, pixels]
    residual = np.linalg.norm(a - b * (b.conj() * a).sum(0), axis=0)  # unit-norm maps
    assert 0 < residual.max() < 1e-3, residual.max()
    assert not np.array_equal(cpu, dev)


def test_the_default_solver_on_the_device_equals_the_cpu_default():
    k, cols = _batch(2)
    ref_maps, ref_eig, _ = espirit_eigen(k, cols, EspiritSettings())
    ref = espirit_maps(k, cols)
    with simulated_gpu():
        ksp = torch.from_numpy(k).to(SIM_DEVICE)
        mask = torch.from_numpy(cols).to(SIM_DEVICE)
        maps = espirit_maps(ksp, mask).cpu().numpy()
        e_maps, e_eig, res = espirit_eigen(ksp, mask, EspiritSettings())
        e_maps, e_eig = e_maps.cpu().numpy(), e_eig.cpu().numpy()
    assert np.array_equal(maps, ref)
    assert np.array_equal(e_maps, ref_maps) and np.array_equal(e_eig, ref_eig)
    assert res == EspiritSettings().resolve(10, 128)


def test_a_device_mask_of_the_wrong_width_raises_as_on_the_cpu():
    k, cols = _batch(1)
    with simulated_gpu(), pytest.raises(ValueError, match="the mask has 32 columns"):
        espirit_maps(
            torch.from_numpy(k[0]).to(SIM_DEVICE),
            torch.ones(32, dtype=torch.bool, device=SIM_DEVICE),
        )
