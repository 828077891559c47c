"""``train`` as a GPU user runs it, under the accelerator simulator (``tests/device_simulator.py``):
every pruning method, every loss, every model, learned coil maps, checkpointed unrolls, ``--mode
test``, resume and the export of a GPU-trained checkpoint. The simulator raises where CUDA would
(a CPU tensor meeting a device tensor, ``.numpy()`` of a device tensor) and counts host syncs.

The same seed gives the same pruning masks on the CPU and on the (simulated) GPU: every random
draw of a pruning method comes from the CPU generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from device_simulator import GPU_FLAGS, SIM_DEVICE, simulated_gpu

from fastmri_pun.app.export.cli import main as export_main
from fastmri_pun.app.train.cli import parse_args
from fastmri_pun.app.train.run import fit
from fastmri_pun.pruning import list_pruning_methods
from fastmri_pun.pruning.sparse_file import load_sparse

RUN = [
    "--center_fractions", "0.16", "--lr", "0.003", "--max_epochs", "1", "--batch_size", "1",
    "--num_log_images", "1", "--enable_progress_bar", "false", "--search_steps", "3",
    "--imp_rounds", "1",
]  # fmt: skip
MODL = [
    "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--num_layers", "3",
    "--sens_chans", "2", "--sens_pools", "1",
]  # fmt: skip
TINY = RUN + MODL
CPU_FLAGS = ["--accelerator", "cpu", "--devices", "1"]


def _train(demo_root: Path, out: Path, *extra: str, gpu: bool = True, callbacks=(), model=MODL):
    args = ["--data_path", str(demo_root), "--output_dir", str(out), *RUN, *model, *extra]
    if not gpu:
        return fit(parse_args([*args, *CPU_FLAGS]), callbacks)
    with simulated_gpu():
        return fit(parse_args([*args, *GPU_FLAGS]), callbacks)


def _masks(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "masks.pt", weights_only=False)["masks"]


def _finite_summary(result) -> dict:
    summary = result.test["summary"]
    assert all(torch.isfinite(torch.tensor(summary[k])) for k in ("psnr", "ssim", "nmse"))
    return summary


@pytest.mark.parametrize("method", list_pruning_methods())
def test_every_pruning_method_finds_the_cpu_masks_on_the_gpu(demo_root, tmp_path, method):
    """With the default loss (SSIM + L1, whose SSIM window once stayed on the CPU)."""
    density = ["--density", "0.1"] if method == "pun-it-channels" else []
    gpu = _train(demo_root, tmp_path / "gpu", "--prune", method, *density)
    cpu = _train(demo_root, tmp_path / "cpu", "--prune", method, *density, gpu=False)
    gpu_masks, cpu_masks = _masks(tmp_path / "gpu"), _masks(tmp_path / "cpu")
    assert gpu_masks.keys() == cpu_masks.keys()
    for name in gpu_masks:
        assert torch.equal(gpu_masks[name], cpu_masks[name]), (method, name)
    report = json.loads((tmp_path / "gpu" / "density_report.json").read_text())
    assert report["kept"] == sum(int(m.sum()) for m in gpu_masks.values())
    # the whole run computes the CPU's numbers (the simulator keeps real CPU data)
    assert _finite_summary(gpu) == pytest.approx(_finite_summary(cpu), rel=1e-5)


@pytest.mark.parametrize("loss", ["ssim", "l1", "mse", "ssim_l1"])
def test_every_loss_through_the_pun_search_and_the_training(demo_root, tmp_path, loss):
    result = _train(demo_root, tmp_path, "--prune", "pun-it", "--loss", loss)
    summary = _finite_summary(result)
    assert summary["psnr"] > summary["zf_psnr"], summary


VARNET = [
    "--model", "varnet", "--num_cascades", "2", "--chans", "4", "--pools", "1",
    "--sens_chans", "2", "--sens_pools", "1", "--sens_maps", "learned",
]  # fmt: skip


@pytest.mark.parametrize(
    "model",
    [
        VARNET,
        [*MODL, "--denoiser", "unet", "--unet_chans", "4", "--unet_pools", "2"],
        [*MODL, "--sens_maps", "learned"],
        [*MODL, "--checkpoint_unrolls", "true"],
    ],
    ids=["varnet", "modl-unet-denoiser", "modl-learned-maps", "modl-checkpointed-unrolls"],
)  # fmt: skip
def test_models_and_model_settings_train_and_prune_on_the_gpu(demo_root, tmp_path, model):
    result = _train(demo_root, tmp_path, "--prune", "snip", model=model)
    _finite_summary(result)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_mode_test_resume_and_export_of_a_gpu_trained_checkpoint(demo_root, tmp_path):
    out = tmp_path / "run"
    first = _train(demo_root, out, "--prune", "pun-it")
    # --mode test on the GPU reproduces the run's own test metrics
    again = _train(demo_root, out, "--mode", "test", "--resume", "best")
    assert again.test["summary"]["psnr"] == pytest.approx(first.test["summary"]["psnr"], rel=1e-6)
    # a second epoch continues the GPU checkpoint on the GPU
    more = _train(demo_root, out, "--prune", "pun-it", "--max_epochs", "2", "--resume", "last")
    assert more.last_checkpoint.is_file()
    state = torch.load(more.last_checkpoint, weights_only=False, map_location="cpu")
    assert state["epoch"] == 1
    # export of the GPU-trained checkpoint (its tensors load onto the CPU)
    sparse = tmp_path / "model.sparse.pt"
    assert export_main([str(more.best_checkpoint), str(sparse), "--check"]) == 0
    exported = load_sparse(sparse)
    assert all(v.device.type == "cpu" for v in exported.state_dict.values())
    report = json.loads((out / "density_report.json").read_text())
    assert sum(int(m.sum()) for m in exported.masks.values()) == report["kept"]


def test_a_training_step_waits_for_the_gpu_at_most_four_times(demo_root, tmp_path):
    """Host syncs per MoDL training step at the paper's 10 unrolls x 10 CG iterations, batch 1:
    one finiteness check of the inputs, one of the loss and gradient norm together (ESPIRiT and
    learned coil maps)."""

    class CountSyncs(pl.Callback):
        def __init__(self, sim) -> None:
            self.sim, self.per_step, self.start = sim, [], 0

        def on_train_batch_start(self, *args) -> None:
            self.start = self.sim.syncs

        def on_train_batch_end(self, *args) -> None:
            self.per_step.append(self.sim.syncs - self.start)

    paper = ["--num_unrolls", "10", "--num_cg_iters", "10", "--max_epochs", "1"]
    for maps in ("espirit", "learned"):
        with simulated_gpu() as sim:
            counter = CountSyncs(sim)
            args = ["--data_path", str(demo_root), "--output_dir", str(tmp_path / maps), *TINY]
            fit(parse_args([*args, *paper, "--sens_maps", maps, *GPU_FLAGS]), [counter])
        assert len(counter.per_step) == 4
        assert max(counter.per_step) <= 4, (maps, counter.per_step, sim.sync_sites)


def test_snip_scores_on_the_device_the_model_trains_on(demo_root, tmp_path, monkeypatch):
    import fastmri_pun.pruning.procedures as procedures

    devices = []
    original = procedures.snip_scores

    def spy(model, names, batches, loss_fn):
        devices.append(next(model.parameters()).device)
        return original(model, names, batches, loss_fn)

    monkeypatch.setattr(procedures, "snip_scores", spy)
    _train(demo_root, tmp_path, "--prune", "snip")
    assert devices == [SIM_DEVICE]


def test_slim_export_of_a_gpu_trained_channel_pruned_checkpoint(demo_root, tmp_path):
    result = _train(demo_root, tmp_path / "run", "--prune", "pun-it-channels", "--density", "0.1")
    slim = tmp_path / "model.slim.pt"
    assert export_main([str(result.best_checkpoint), str(slim), "--slim", "--check"]) == 0
    assert 0 < slim.stat().st_size < result.best_checkpoint.stat().st_size
