"""``prune_at_init`` and ``build_pruned_model`` on a GPU, under the accelerator simulator
(``tests/device_simulator.py``): MoDL, fastmri's VarNet and Unet, every registered method and
every loss name, with the batches the user's DataLoader yields (on the CPU). The masks are the
CPU's for the same seed (every random draw of a method comes from the CPU generator), the pruned
model stays on the device, and the caller's generators are left as they were."""

from __future__ import annotations

import pytest
import torch
from device_simulator import SIM_DEVICE, DeviceTensor, simulated_gpu
from test_prune_at_init import _batches, _model

import fastmri_pun
from fastmri_pun.pruning import PruneConfig, get_masks, list_pruning_methods, prune_at_init
from fastmri_pun.pruning.sample_loss import LOSS_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")


def _prune(kind: str, method: str, device: torch.device | None, **kwargs):
    model = _model(kind)
    density = 0.2 if method == "pun-it-channels" else 0.1
    args = dict(steps=2, train_steps=2, config=PruneConfig(imp_rounds=2), seed=5, **kwargs)
    if device is None:
        return get_masks(prune_at_init(model, _batches(kind), density, method, **args))
    with simulated_gpu():
        pruned = prune_at_init(model.to(device), _batches(kind), density, method, **args)
        assert all(isinstance(p, DeviceTensor) for p in pruned.parameters())
        return {n: m.cpu() for n, m in get_masks(pruned).items()}


@pytest.mark.parametrize("method", list_pruning_methods())
@pytest.mark.parametrize("kind", ["modl", "varnet", "unet"])
def test_every_method_prunes_every_model_on_the_gpu_with_the_cpu_masks(kind, method):
    """The default loss (SSIM + L1) included: its SSIM window follows the model's device."""
    cpu = _prune(kind, method, None)
    gpu = _prune(kind, method, SIM_DEVICE)
    assert cpu.keys() == gpu.keys()
    for name in cpu:
        assert torch.equal(cpu[name], gpu[name]), (kind, method, name)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_loss_name_prunes_on_the_gpu(loss):
    cpu = _prune("varnet", "pun-it", None, loss=loss)
    gpu = _prune("varnet", "pun-it", SIM_DEVICE, loss=loss)
    assert all(torch.equal(cpu[n], gpu[n]) for n in cpu)


def test_build_pruned_model_prunes_on_the_given_device():
    kwargs = dict(num_unrolls=2, num_cg_iters=2, chans=8, num_layers=3, learn_sens_maps=False)
    args = dict(prune="snip", density=0.1, seed=3, model_kwargs=kwargs)
    cpu = fastmri_pun.build_pruned_model("modl", _batches("modl"), **args)
    with simulated_gpu():
        gpu = fastmri_pun.build_pruned_model("modl", _batches("modl"), device=SIM_DEVICE, **args)
        assert all(isinstance(p, DeviceTensor) for p in gpu.parameters())
        gpu_sd = {k: v.cpu() for k, v in gpu.state_dict().items()}
    assert all(torch.equal(v, gpu_sd[k]) for k, v in cpu.state_dict().items())


def test_the_gpu_generators_are_not_forked(monkeypatch):
    """Seeding a pruning call forks the CPU generator and the model's own GPU only: forking every
    visible GPU's generator would create a CUDA context on each."""
    from fastmri_pun.pruning.at_init import _seeded

    forked: list = []

    class Spy:
        def __init__(self, devices=None, enabled=True, **kwargs) -> None:
            forked.append(list(devices) if devices is not None else "all")

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc) -> None:
            return None

    monkeypatch.setattr(torch.random, "fork_rng", Spy)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for device in (None, torch.device("cpu"), SIM_DEVICE, torch.device("cuda", 2)):
        with _seeded(3, device):
            pass
    assert forked == [[], [], [], [torch.device("cuda", 2)]]
