"""``CenterMaskedSensitivityModel`` computes exactly what fastmri's ``SensitivityModel`` does,
without reading the ACS bounds on the host (no sync on a GPU)."""

from __future__ import annotations

import pytest
import torch
from device_simulator import SIM_DEVICE, simulated_gpu, to_device
from fastmri.data.subsample import EquiSpacedMaskFunc, RandomMaskFunc
from fastmri.models.varnet import SensitivityModel

from fastmri_pun.models.sensitivity import CenterMaskedSensitivityModel


def _pair() -> tuple[SensitivityModel, CenterMaskedSensitivityModel]:
    torch.manual_seed(0)
    ref = SensitivityModel(chans=4, num_pools=2)
    ours = CenterMaskedSensitivityModel(chans=4, num_pools=2)
    ours.load_state_dict(ref.state_dict())  # same keys
    return ref, ours


@pytest.mark.parametrize("width", [64, 61, 37])
@pytest.mark.parametrize(
    "mask_func", [RandomMaskFunc([0.08], [4], seed=1), EquiSpacedMaskFunc([0.16], [8], seed=2)]
)
@pytest.mark.parametrize("num_low", [None, 0, 6, "tensor"])
def test_same_maps_as_fastmri_for_every_way_of_giving_the_acs_size(width, mask_func, num_low):
    ref, ours = _pair()
    kspace = torch.randn(1, 3, 24, width, 2)
    mask, acs = mask_func((1, width, 1), seed=3)
    mask = mask.reshape(1, 1, 1, width, 1).bool()
    given = torch.tensor([acs]) if num_low == "tensor" else num_low
    assert torch.equal(ours(kspace * mask, mask, given), ref(kspace * mask, mask, given))


def test_per_sample_acs_sizes_in_one_batch():
    """fastmri takes one size per batch (a [B] tensor fails there); here each sample keeps its
    own, as fastmri computes each sample alone."""
    ref, ours = _pair()
    kspace = torch.randn(2, 3, 16, 40, 2)
    mask = torch.zeros(2, 1, 1, 40, 1, dtype=torch.bool)
    mask[0, ..., 16:24, :] = True
    mask[1, ..., 18:22, :] = True
    mask[..., ::3, :] = True
    out = ours(kspace * mask, mask, torch.tensor([8, 4]))
    for i, n in enumerate((8, 4)):
        want = ref(kspace[i : i + 1] * mask[i : i + 1], mask[i : i + 1], n)
        assert torch.equal(out[i : i + 1], want)
    # 0 in the tensor: that sample's size is read from its mask, as fastmri does for 0
    out = ours(kspace * mask, mask, torch.tensor([0, 4]))
    assert torch.equal(out[:1], ref(kspace[:1] * mask[:1], mask[:1], None))


def test_no_host_sync_on_a_gpu():
    ref, ours = _pair()
    kspace = torch.randn(1, 3, 16, 32, 2)
    mask = torch.zeros(1, 1, 1, 32, 1, dtype=torch.bool)
    mask[..., 12:20, :] = True
    expected = ours(kspace * mask, mask, torch.tensor([8]))
    with simulated_gpu() as sim:
        ours.to(SIM_DEVICE)
        out = ours(to_device(kspace * mask), to_device(mask), to_device(torch.tensor([8])))
        assert sim.syncs == 0
        assert torch.equal(out.cpu(), expected)
        ref.to(SIM_DEVICE)
        ref(to_device(kspace * mask), to_device(mask), to_device(torch.tensor([8])))
        assert sim.syncs >= 3  # fastmri's own reads the bounds on the host
