"""Reliability of ``python -m fastmri_pun.train``: damaged checkpoints are named for what they
are (never with advice to disable safe loading), a finished run is not trained again, flags that
contradict the checkpoint are refused, and bad input fails up front in one line with nothing
written."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from fastmri_pun.app.train.cli import main, parse_args
from fastmri_pun.app.train.run import fit, prepare
from fastmri_pun.training import ReconstructionModule, load_checkpoint_file

TINY = [
    "--center_fractions", "0.16", "--num_unrolls", "1", "--num_cg_iters", "2", "--chans", "4",
    "--num_layers", "3", "--sens_chans", "2", "--sens_pools", "1", "--max_epochs", "1",
    "--batch_size", "1", "--num_log_images", "1", "--enable_progress_bar", "false",
    "--accelerator", "cpu", "--devices", "1",
]  # fmt: skip

#: phrases of torch's advice to load with weights_only=False
TORCH_ADVICE = ("weights_only` set to `False`", "Re-running `torch.load`", "two options")


def _args(demo_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data_path", str(demo_root), "--output_dir", str(out), *TINY, *extra]


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """``{relative path: (mtime_ns, content)}`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(demo_root, tmp_path_factory):
    """One finished dense run (1 epoch)."""
    out = tmp_path_factory.mktemp("finished")
    result = fit(parse_args(_args(demo_root, out)))
    return result, out


# ----------------------------------------------------------------------------- checkpoints
def _message(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        load_checkpoint_file(path)
    text = str(info.value)
    assert "\n" not in text
    assert not any(advice in text for advice in TORCH_ADVICE), text
    return text


def test_each_kind_of_bad_checkpoint_is_named(finished, tmp_path):
    _, out = finished
    real = out / "checkpoints" / "best.ckpt"
    data = real.read_bytes()

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert _message(empty) == f"{empty}: empty (0 bytes)"

    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    assert _message(cut) == (
        f"{cut}: truncated ({len(data) // 2} bytes; the end of its zip archive is missing)"
    )

    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 4)
    assert _message(noise) == f"{noise}: not a PyTorch checkpoint"
    assert "weights_only" not in _message(noise)

    class RunsCode:  # a pickle payload that would run a command when unpickled
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    for name, save, payload in (
        ("pickle.ckpt", lambda f, o: pickle.dump(o, open(f, "wb"), protocol=2), None),
        ("torch.ckpt", lambda f, o: torch.save(o, f), None),
        ("system.ckpt", lambda f, o: torch.save(o, f), RunsCode()),
    ):
        evil = tmp_path / name
        obj = {"state_dict": {}, "args": payload or argparse.Namespace(lr=1.0)}
        save(evil, obj)
        assert _message(evil) == (
            f"{evil}: refused for safety: it holds objects other than tensors and plain data "
            "(torch.load(weights_only=True) refuses them; never load untrusted checkpoints "
            "with weights_only=False)"
        )
    assert not (tmp_path / "PWNED").exists()

    ckpt = torch.load(real, weights_only=True)
    first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    for bad, what in (
        (float("nan"), "NaN or Inf values"),
        (1e35, "values above 1e+30 in magnitude"),
    ):
        broken = {**ckpt, "state_dict": dict(ckpt["state_dict"])}
        weight = broken["state_dict"][first].clone()
        weight.view(-1)[0] = bad
        broken["state_dict"][first] = weight
        path = tmp_path / "bad_weights.ckpt"
        torch.save(broken, path)
        assert _message(path) == f"{path}: weight {first!r} holds {what}"
        with pytest.raises(ValueError, match="holds "):
            ReconstructionModule.load_checkpoint(path)


def test_bad_last_checkpoint_points_at_best(finished, demo_root, tmp_path):
    _, out = finished
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(out / "checkpoints" / "best.ckpt", run / "checkpoints" / "best.ckpt")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError) as info:
        fit(parse_args(_args(demo_root, run)))  # an unfinished run continues from last.ckpt
    assert str(info.value) == (
        f"{last}: empty (0 bytes); continue from the best checkpoint instead with --resume best"
    )
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_sha256_sidecar_is_verified(finished, tmp_path):
    _, out = finished
    path = tmp_path / "model.ckpt"
    shutil.copy(out / "checkpoints" / "best.ckpt", path)
    sidecar = tmp_path / "model.ckpt.sha256"
    sidecar.write_text("0" * 64 + "  model.ckpt\n")
    with pytest.raises(ValueError, match=r"model.ckpt: content does not match its recorded sha256"):
        load_checkpoint_file(path)
    import hashlib

    sidecar.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "  model.ckpt\n")
    assert "state_dict" in load_checkpoint_file(path)


# ----------------------------------------------------------------------------- finished runs
def test_finished_run_is_not_trained_again(finished, demo_root, capsys):
    result, out = finished
    done = json.loads((out / "DONE.json").read_text())
    assert done["best_checkpoint"] == str(out / "checkpoints" / "best.ckpt")
    assert done["last_checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert done["test"]["summary"]["psnr"] == pytest.approx(result.test["summary"]["psnr"])
    before = _snapshot(out)
    assert len(json.loads((out / "compute_accounting.json").read_text())) == 1

    again = fit(parse_args(_args(demo_root, out)))
    assert again.best_checkpoint == result.best_checkpoint
    assert again.last_checkpoint == result.last_checkpoint
    assert again.metrics_md == result.metrics_md
    assert again.test["summary"]["psnr"] == pytest.approx(result.test["summary"]["psnr"])
    assert main(_args(demo_root, out)) == 0  # the CLI prints the recorded report
    printed = capsys.readouterr().out
    assert f"{out} holds this run, finished earlier: nothing was run" in printed
    assert again.reused and not result.reused
    assert _snapshot(out) == before  # config, accounting, checkpoints: untouched

    with pytest.raises(ValueError, match=r"holds a finished run .*--mode test --resume best"):
        prepare(parse_args(_args(demo_root, out)))
    with pytest.raises(
        ValueError, match=r"finished run with other settings \(differing \['lr'\]\)"
    ):
        fit(parse_args(_args(demo_root, out, "--lr", "0.01")))
    assert _snapshot(out) == before


# ----------------------------------------------------------------------------- --prune vs ckpt
def test_prune_flags_must_match_the_checkpoint(finished, demo_root, tmp_path):
    _, out = finished
    dense = out / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError) as info:
        fit(parse_args(_args(demo_root, tmp_path / "a", "--resume", str(dense), "--prune",
                             "pun-it", "--density", "0.2")))  # fmt: skip
    assert str(info.value) == (
        f"--resume {dense} holds a dense model but --prune is 'pun-it'; resume it without "
        "--prune, or start the pruned run in another --output_dir"
    )
    assert not (tmp_path / "a").exists()

    ckpt = torch.load(dense, weights_only=True)
    module = ReconstructionModule.load_checkpoint(dense)
    masks = {}
    for name, param in module.model.named_parameters():
        if name.endswith("weight") and param.ndim == 4:
            mask = torch.zeros(param.shape, dtype=torch.bool)
            mask.view(-1)[: max(1, param.numel() // 4)] = True
            masks[name] = mask
    pruned = tmp_path / "pruned.ckpt"
    module.set_pruning_masks(masks)
    state = module.state_dict()
    torch.save(
        {**ckpt, "state_dict": state, "pruning_masks": masks, "pruning_method": "magnitude"}, pruned
    )
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    with pytest.raises(ValueError) as info:
        fit(parse_args(_args(demo_root, tmp_path / "b", "--resume", str(pruned))))
    assert str(info.value) == (
        f"--resume {pruned} holds a pruned model (magnitude, density {kept:.4g}) but --prune "
        f"is 'none'; resume it with --prune magnitude --density {kept:.4g}"
    )
    with pytest.raises(ValueError, match="was pruned with magnitude at density"):
        fit(parse_args(_args(demo_root, tmp_path / "c", "--resume", str(pruned), "--prune",
                             "random", "--density", f"{kept}")))  # fmt: skip

    # --mode test labels the run from the checkpoint, whatever --prune says
    prepared = prepare(
        parse_args(
            _args(
                demo_root,
                tmp_path / "t",
                "--mode",
                "test",
                "--resume",
                str(dense),
                "--prune",
                "pun-it",
            )
        )  # fmt: skip
    )
    assert prepared.cfg.prune == "none"
    prepared = prepare(
        parse_args(_args(demo_root, tmp_path / "u", "--mode", "test", "--resume", str(pruned)))
    )
    assert prepared.cfg.prune == "magnitude"
    assert prepared.cfg.pruning.density == pytest.approx(kept, abs=1e-6)


# ----------------------------------------------------------------------------- up-front checks
def test_tiny_density_is_refused_before_any_search(demo_root, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError) as info:
        prepare(parse_args(_args(demo_root, out, "--prune", "pun-it", "--density", "1e-9")))
    message = str(info.value)
    assert message.startswith("--density 1e-09 keeps 0 of the ")
    assert "needed (1 in each of" in message
    assert not out.exists()


def test_output_dir_that_cannot_be_written_is_refused(demo_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError) as info:
        prepare(parse_args(_args(demo_root, blocker)))
    assert str(info.value) == f"--output_dir {blocker}: a file is in the way (a folder is needed)"
    assert blocker.read_text() == "x"
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not bite")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=rf"--output_dir {locked}: not writable \("):
            prepare(parse_args(_args(demo_root, locked)))
        with pytest.raises(ValueError, match=r"cannot create the folder \("):
            prepare(parse_args(_args(demo_root, locked / "sub")))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_without_cuda_is_refused(demo_root, tmp_path):
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(ValueError) as info:
            prepare(parse_args([*_args(demo_root, tmp_path / "out"), "--accelerator", accelerator]))
        assert str(info.value) == (
            f"--accelerator {accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False); use --accelerator cpu or auto"
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--density", "1e-9", "--prune", "pun-it"], "--density 1e-09 keeps 0 of the "),
        (["--center_fractions", "1.5"], "center_fraction"),
    ]
    + (
        []
        if torch.cuda.is_available()
        else [(["--accelerator", "gpu", "--devices", "2"], "--accelerator gpu: no CUDA GPU")]
    ),  # fmt: skip
)
def test_cli_reports_one_line_and_exit_2(demo_root, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main([*_args(demo_root, out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m fastmri_pun.train: error: "), err
    assert message in err[0]
    assert not out.exists() or list(out.iterdir()) == []
