"""The accelerator simulator itself (``tests/device_simulator.py``) enforces CUDA's rules and keeps
the numbers: a GPU bug it cannot see would pass every test that runs under it."""

from __future__ import annotations

import pytest
import torch
from device_simulator import SIM_DEVICE, DeviceMixError, DeviceTensor, simulated_gpu, to_device


def test_mixing_a_device_tensor_with_a_cpu_tensor_raises_as_on_cuda():
    with simulated_gpu():
        x = torch.randn(3, 4).to(SIM_DEVICE)
        with pytest.raises(DeviceMixError, match="same device"):
            x + torch.randn(3, 4)
        conv = torch.nn.Conv2d(1, 1, 3)  # weights left on the CPU
        with pytest.raises(DeviceMixError):
            conv(torch.randn(1, 1, 8, 8).to(SIM_DEVICE))
        # allowed on CUDA: 0-dim CPU tensors, CPU index tensors, copies
        y = x * torch.tensor(2.0) + x[torch.tensor([0, 2])].sum(0)
        x.copy_(torch.ones(3, 4))
        assert isinstance(y, DeviceTensor) and y.device == SIM_DEVICE
        assert torch.equal(x.cpu(), torch.ones(3, 4))


def test_numpy_of_a_device_tensor_fails_and_host_syncs_are_counted():
    with simulated_gpu() as sim:
        x = torch.arange(6.0, device=SIM_DEVICE)
        with pytest.raises((RuntimeError, TypeError)):
            x.numpy()
        assert sim.syncs == 0
        assert x.sum().item() == 15.0  # 1
        assert bool((x > 2).any())  # 2
        assert x[x > 2].shape == (3,)  # 3: boolean-mask indexing waits for the count
        assert x.cpu().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # 4
        assert x.tolist()[0] == 0.0  # 5
        assert sim.syncs == 5
        assert sum(sim.sync_sites.values()) == 5


def test_factories_and_module_moves_give_device_tensors_with_cpu_numbers():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU())
    x = torch.randn(2, 2, 8, 8)
    ref = net(x)
    ref.square().sum().backward()
    ref_grad = net[0].weight.grad.clone()
    net.zero_grad()
    with simulated_gpu():
        net.to(SIM_DEVICE)
        assert isinstance(net[0].weight, DeviceTensor)
        assert torch.zeros(2, device=SIM_DEVICE).device == SIM_DEVICE
        assert torch.tensor([1.0, 2.0], device=SIM_DEVICE).cpu().tolist() == [1.0, 2.0]
        out = net(to_device(x))
        out.square().sum().backward()
        assert torch.equal(out.cpu(), ref)
        assert torch.equal(net[0].weight.grad.cpu(), ref_grad)
        c = torch.randn(3, dtype=torch.complex64)
        assert torch.equal(
            (c.to(SIM_DEVICE).conj() * c.to(SIM_DEVICE)).real.cpu(), (c.conj() * c).real
        )


def test_modl_outputs_and_gradients_are_bit_identical_to_the_cpu_run():
    from fastmri_pun.models import MoDL

    torch.manual_seed(0)
    model = MoDL(num_unrolls=2, num_cg_iters=3, chans=8, num_layers=3, sens_chans=2, sens_pools=1)
    kspace = torch.randn(1, 4, 32, 32, 2)
    mask = torch.zeros(1, 1, 1, 32, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    mask[..., 14:18, :] = True
    kspace = kspace * mask
    out = model(kspace, mask, 4)
    out.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with simulated_gpu():
        model.to(SIM_DEVICE)
        sim_out = model(to_device(kspace), to_device(mask), 4)
        sim_out.sum().backward()
        assert torch.equal(sim_out.cpu(), out)
        for name, p in model.named_parameters():
            assert torch.equal(p.grad.cpu(), grads[name]), name


def test_torch_save_of_device_tensors_stores_their_data(tmp_path):
    with simulated_gpu():
        state = {"w": torch.arange(4.0, device=SIM_DEVICE)}
        torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(4.0))
