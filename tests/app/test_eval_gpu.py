"""``evaluate`` on a GPU, under the accelerator simulator (``tests/device_simulator.py``): two
models over two shifts give the CPU's rows, with a bounded number of host syncs per slice."""

from __future__ import annotations

import pandas as pd
from device_simulator import SIM_DEVICE, simulated_gpu
from test_eval_suite import _cfg, _save_checkpoint

import fastmri_pun.app.evaluate.suite as suite


def test_two_shift_evaluation_on_the_gpu_gives_the_cpu_rows(demo_root, tmp_path, monkeypatch):
    ckpts = {
        "dense": _save_checkpoint(tmp_path / "dense.ckpt", False, 0),
        "sparse": _save_checkpoint(tmp_path / "sparse.ckpt", True, 1),
    }
    cpu = suite.evaluate(ckpts, _cfg(demo_root, tmp_path / "cpu", accelerator="cpu"))
    monkeypatch.setattr(suite, "_device", lambda accelerator: SIM_DEVICE)
    with simulated_gpu() as sim:
        gpu = suite.evaluate(ckpts, _cfg(demo_root, tmp_path / "gpu", accelerator="gpu"))
    keys = ["model", "shift", "fname", "slice_num"]
    metrics = ["psnr", "ssim", "nmse", "maps_fit"]
    want = cpu.results.sort_values(keys).reset_index(drop=True)
    got = gpu.results.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got[keys + metrics], want[keys + metrics], rtol=1e-6)
    # per reconstructed slice: the model's input check and the copy of the image to the host
    sites = {site.split(" in ")[1]: n for site, n in sim.sync_sites.items()}
    assert sites.keys() == {"_check_inputs", "reconstruct"}, sim.sync_sites
    assert sites["_check_inputs"] == sites["reconstruct"]
