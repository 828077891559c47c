"""End-to-end runs of ``fastmri_pun.app.train.run.fit`` (and ``python -m fastmri_pun.train``)
on the tiny demo set (64², 4 coils, 4 train slices).

One dense run (module fixture) is shared: it must beat zero-filling, its saved reconstructions
must score the same under ``fastmri.evaluate``, ``--mode test`` must reproduce it, and a crashed
and resumed copy of it must end with the same weights.
"""

from __future__ import annotations

import csv
import json
from argparse import Namespace
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from fastmri import evaluate

from fastmri_pun.app.train.cli import main, parse_args
from fastmri_pun.app.train.run import fit

TINY = [
    "--center_fractions", "0.16",  # 10 ACS lines at width 64 (ESPIRiT needs >= 7)
    "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--num_layers", "3",
    "--sens_chans", "2", "--sens_pools", "1", "--lr", "0.003", "--lr_scheduler", "cosine",
    "--max_epochs", "3", "--batch_size", "1", "--num_log_images", "1",
    "--enable_progress_bar", "false", "--accelerator", "cpu", "--devices", "1",
]  # fmt: skip


def _args(demo_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data_path", str(demo_root), "--output_dir", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def dense_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    return fit(parse_args(_args(demo_root, out))), out


def test_dense_run_beats_zero_filled_and_writes_outputs(dense_run):
    result, out = dense_run
    for split in ("val", "test"):
        s = getattr(result, split)["summary"]
        assert s["psnr"] > s["zf_psnr"] + 1.5, (split, s)
        assert s["ssim"] > s["zf_ssim"] + 0.05, (split, s)
        assert s["nmse"] < s["zf_nmse"]
    assert result.test["summary"]["num_volumes"] == 2
    assert result.test["summary"]["num_slices"] == 4
    assert result.best_checkpoint == out / "checkpoints" / "best.ckpt"
    assert result.last_checkpoint == out / "checkpoints" / "last.ckpt"
    assert (result.metrics_md, result.metrics_csv) == (out / "metrics.md", out / "metrics.csv")
    assert result.figure == out / "figures" / "test_example.png"
    assert result.reconstructions == out / "reconstructions" and not result.interrupted
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.md", "metrics.csv",
                 "config.yaml", "figures/test_example.png", "compute_accounting.json"):  # fmt: skip
        assert (out / name).is_file(), name
    table = (out / "metrics.md").read_text()
    assert "| test | zero-filled (RSS) |" in table and "| val | modl |" in table
    assert "## Compute per phase" in table and "| dense | 12 | 12 |" in table
    accounting = json.loads((out / "compute_accounting.json").read_text())
    assert [r["phase"] for r in accounting] == ["dense"]
    assert accounting[0]["train_samples"] == 3 * 4
    assert list((out / "logs" / "tensorboard").glob("version_0/events.*"))
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2 and "pruning_masks" not in ckpt


def test_saved_reconstructions_score_the_same_under_fastmri_evaluate(dense_run, demo_root):
    result, out = dense_run
    args = Namespace(
        target_path=Path(demo_root) / "multicoil_test",
        predictions_path=out / "reconstructions",
        acquisition=None,
        acceleration=None,
    )
    means = evaluate.evaluate(args, "reconstruction_rss").means()
    summary = result.test["summary"]
    assert summary["nmse"] == pytest.approx(means["NMSE"], rel=1e-4)
    assert summary["psnr"] == pytest.approx(means["PSNR"], rel=1e-5)
    assert summary["ssim"] == pytest.approx(means["SSIM"], rel=1e-5)


def test_mode_test_reproduces_the_run(dense_run, demo_root, tmp_path):
    result, out = dense_run
    best = out / "checkpoints" / "best.ckpt"
    again = fit(parse_args(_args(demo_root, tmp_path, "--mode", "test", "--resume", str(best))))
    assert again.test["summary"] == result.test["summary"]
    assert again.best_checkpoint is None and again.val is None
    # the command writes the same test metrics (csv: full precision) and exits with status 0
    assert main(_args(demo_root, tmp_path / "cli", "--mode", "test", "--resume", str(best))) == 0
    with open(tmp_path / "cli" / "metrics.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["reconstruction"] == "modl")
    assert row["split"] == "test"
    assert {m: float(row[m]) for m in ("nmse", "ssim", "psnr")} == {
        m: result.test["summary"][m] for m in ("nmse", "ssim", "psnr")
    }
    # a checkpoint of another model cannot be resumed
    with pytest.raises(ValueError, match=r"another model .*differing settings \['chans'\]"):
        fit(parse_args(_args(demo_root, tmp_path, "--chans", "16", "--resume", str(best))))


class _Crash(pl.Callback):
    """Simulated crash at the start of the third epoch (two end-of-epoch checkpoints exist)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            raise RuntimeError("simulated crash")


def test_resume_after_crash_matches_uninterrupted_run(dense_run, demo_root, tmp_path):
    _, out = dense_run
    args = _args(demo_root, tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(parse_args(args), callbacks=[_Crash()])
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    fit(parse_args([*args, "--resume", "last"]))
    ref = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == ref["global_step"] == 3 * 4
    assert ref["state_dict"].keys() == got["state_dict"].keys()
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, got["state_dict"][key]), key
    ref_adam, got_adam = ref["optimizer_states"][0]["state"], got["optimizer_states"][0]["state"]
    for i, state in ref_adam.items():
        assert torch.equal(state["exp_avg_sq"], got_adam[i]["exp_avg_sq"])


def test_pruned_run_checkpoint_reloads_and_resumes(demo_root, tmp_path):
    args = _args(demo_root, tmp_path, "--prune", "pun-it", "--density", "0.2",
                 "--search_steps", "3", "--max_epochs", "1")  # fmt: skip
    result = fit(parse_args(args))
    report = json.loads((tmp_path / "density_report.json").read_text())
    assert report["method"] == "pun-it" and report["phases"] == ["search"]
    assert report["density"] == pytest.approx(0.2, abs=1e-3)
    phases = json.loads((tmp_path / "compute_accounting.json").read_text())
    assert [r["phase"] for r in phases] == ["search", "sparse"]
    assert phases[0]["train_steps"] == 3
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    masks = ckpt["pruning_masks"]
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept / sum(m.numel() for m in masks.values()) == pytest.approx(0.2, abs=1e-3)
    for name, mask in masks.items():  # torch.nn.utils.prune buffers hold the same masks
        assert torch.equal(ckpt["state_dict"][f"model.{name}_mask"].bool(), mask)
    # --mode test rebuilds the pruned model from the checkpoint alone
    best = str(tmp_path / "checkpoints" / "best.ckpt")
    again = fit(parse_args(_args(demo_root, tmp_path / "test", "--mode", "test", "--resume", best)))
    assert again.test["summary"] == result.test["summary"]
    # resuming a pruned run re-applies its masks before the state dict loads
    resumed = fit(parse_args([*args, "--max_epochs", "2", "--resume", "last"]))
    after = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["epoch"] == 1 and resumed.test is not None
    for name, mask in masks.items():
        assert torch.equal(after["pruning_masks"][name], mask)


class _CtrlC(pl.Callback):
    """Ctrl-C at the start of the first training epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        raise KeyboardInterrupt


def test_interrupted_run_returns_without_checkpoint(demo_root, tmp_path):
    import signal

    handler = signal.getsignal(signal.SIGINT)
    result = fit(parse_args(_args(demo_root, tmp_path, "--max_epochs", "1")), callbacks=[_CtrlC()])
    assert result.interrupted and result.best_checkpoint is None and result.test is None
    assert result.output_dir == tmp_path
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's SIG_IGN is undone


class _WorseEveryEpoch(pl.Callback):
    """Validation SSIM that only gets worse, so the best checkpoint stays at epoch 0."""

    def on_validation_end(self, trainer, pl_module):
        trainer.callback_metrics["val_metrics/ssim"] = torch.tensor(
            1.0 - 0.1 * trainer.current_epoch
        )


def test_last_checkpoint_is_the_latest_epoch_even_when_the_score_drops(demo_root, tmp_path):
    result = fit(parse_args(_args(demo_root, tmp_path)), callbacks=[_WorseEveryEpoch()])
    assert result.last_checkpoint == tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(result.last_checkpoint, weights_only=True)["epoch"] == 2  # max_epochs 3
    assert torch.load(result.best_checkpoint, weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.ckpt",
        "best.ckpt.sha256",
        "last.ckpt",
        "last.ckpt.sha256",
    ]
