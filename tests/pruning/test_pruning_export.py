"""Compact sparse checkpoints: exact outputs after reload, size at 3 % density, the export CLI."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastmri.models import Unet

from fastmri_pun.app.export.cli import main as export_main
from fastmri_pun.pruning import (
    apply_masks,
    dense_state_dict,
    get_masks,
    load_sparse,
    load_sparse_into,
    save_sparse,
)
from fastmri_pun.pruning.baselines import magnitude_masks, random_masks
from fastmri_pun.pruning.sparse_file import from_sparse, to_sparse

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def _pruned_unet(density: float, seed: int = 0) -> tuple[Unet, dict]:
    """Unet (~0.47 M conv weights) pruned by magnitude, then trained 2 steps (kept weights move)."""
    torch.manual_seed(seed)
    model = Unet(1, 1, chans=16, num_pool_layers=3)
    masks = magnitude_masks(model, density)
    apply_masks(model, masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(2, 1, 32, 32)
    for _ in range(2):
        opt.zero_grad()
        (model(x) - x).pow(2).mean().backward()
        opt.step()
    return model.eval(), masks


def _nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def test_compact_checkpoint_reproduces_outputs_and_is_small(tmp_path):
    model, masks = _pruned_unet(0.03)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(x)
    dense = dense_state_dict(model.state_dict())
    path = save_sparse(tmp_path / "sparse.pt", dense, masks, meta={"note": "t", "obj": object()})
    # size: <= 0.1x of the dense-form checkpoint (measured 0.042x)
    ratio = path.stat().st_size / _nbytes(dense)
    assert ratio <= 0.1, ratio
    ckpt = load_sparse(path)
    assert ckpt.meta["note"] == "t" and ckpt.meta["obj"].startswith("<object")
    assert list(ckpt.state_dict) == list(dense)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in dense.items())
    assert all(torch.equal(ckpt.masks[k], m) for k, m in masks.items())
    for prune in (True, False):
        fresh = load_sparse_into(Unet(1, 1, chans=16, num_pool_layers=3), path, prune=prune).eval()
        with torch.no_grad():
            assert torch.equal(fresh(x), expected)
        assert bool(get_masks(fresh)) == prune


def test_bitmask_or_indices_whichever_smaller():
    weight = torch.randn(64, 64)
    sparse_mask = torch.zeros(64, 64, dtype=torch.bool)
    sparse_mask.view(-1)[::200] = True  # 0.5 %: int16 indices (2 B each) beat 512 B of bits
    dense_mask = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) < 0.3
    state = {"a": weight * sparse_mask, "b": weight * dense_mask, "bias": torch.randn(3)}
    payload = to_sparse(state, {"a": sparse_mask, "b": dense_mask})
    assert "indices" in payload["sparse"]["a"] and payload["sparse"]["a"]["indices"].dtype == (
        torch.int16
    )
    assert "bitmask" in payload["sparse"]["b"] and payload["sparse"]["b"]["bitmask"].numel() == 512
    back = from_sparse(payload)
    assert all(torch.equal(back.state_dict[k], v) for k, v in state.items())
    assert torch.equal(back.masks["a"], sparse_mask) and torch.equal(back.masks["b"], dense_mask)


def test_sparse_export_errors(tmp_path):
    weight = torch.randn(4, 4)
    mask = weight > 0
    with pytest.raises(ValueError, match="'w' has 8 non-zero weights outside its mask|outside"):
        to_sparse({"w": weight}, {"w": mask})
    with pytest.raises(ValueError, match="mask 'x' has no entry"):
        to_sparse({"w": weight}, {"x": mask})
    with pytest.raises(ValueError, match="mask 'w': expected a bool tensor"):
        to_sparse({"w": weight * mask}, {"w": mask.float()})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sparse(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a fastmri_pun.sparse payload"):
        load_sparse(tmp_path / "other.pt")


def _lightning_like_checkpoint(path: Path) -> tuple[Unet, dict]:
    model, masks = _pruned_unet(0.03, seed=1)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["loss_fn.w"] = torch.ones(1, 1, 7, 7)  # a non-model entry (fastmri SSIMLoss buffer)
    torch.save(
        {
            "state_dict": state,
            "pruning_masks": masks,
            "hyper_parameters": {"model_name": "unet", "model_kwargs": {"chans": 16}},
            "epoch": 3,
            "global_step": 30,
        },
        path,
    )
    return model, masks


def test_export_cli_with_check(tmp_path, capsys):
    model, masks = _lightning_like_checkpoint(tmp_path / "run.ckpt")
    assert export_main([str(tmp_path / "run.ckpt"), str(tmp_path / "out.pt"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out and "x the dense model" in out
    ckpt = load_sparse(tmp_path / "out.pt")
    assert ckpt.meta["prefix"] == "model." and ckpt.meta["epoch"] == 3
    assert ckpt.meta["hyper_parameters"]["model_kwargs"] == {"chans": 16}
    assert "loss_fn.w" not in ckpt.state_dict
    x = torch.randn(1, 1, 32, 32)
    fresh = load_sparse_into(Unet(1, 1, chans=16, num_pool_layers=3), tmp_path / "out.pt").eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    # errors: one line on stderr, exit status 2
    assert export_main([str(tmp_path / "nope.ckpt"), str(tmp_path / "o.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "dense.ckpt")
    assert export_main([str(tmp_path / "dense.ckpt"), str(tmp_path / "o.pt")]) == 2
    assert "no 'pruning_masks'" in capsys.readouterr().err
    bad = {"state_dict": {"w": torch.ones(2)}, "pruning_masks": {"v": torch.ones(2, dtype=bool)}}
    torch.save(bad, tmp_path / "bad.ckpt")
    assert export_main([str(tmp_path / "bad.ckpt"), str(tmp_path / "o.pt")]) == 2
    assert "mask 'v' has no matching entry" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()


def test_export_cli_config_file_and_flags(tmp_path, capsys):
    import yaml

    _lightning_like_checkpoint(tmp_path / "run.ckpt")
    ckpt, out = str(tmp_path / "run.ckpt"), str(tmp_path / "a.pt")
    conf = tmp_path / "export.yaml"
    conf.write_text(yaml.safe_dump({"checkpoint": ckpt, "out": out, "check": True}))
    assert export_main(["--config", str(conf)]) == 0
    assert "check passed" in capsys.readouterr().out
    assert export_main(["--config", str(conf), "--no_check"]) == 0  # flags override the file
    assert "check passed" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        export_main([ckpt, out, "--check", "--print_config"])
    assert done.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"checkpoint": ckpt, "out": out, "prefix": None, "check": True, "slim": False}
    # abbreviated flags and unknown config keys are errors; the latter name the valid keys
    other = str(tmp_path / "b.pt")
    assert export_main([ckpt, other, "--pre", "model."]) == 2
    assert "unrecognized arguments: --pre model." in capsys.readouterr().err
    conf.write_text(yaml.safe_dump({"chek": True}))
    assert export_main(["--config", str(conf), ckpt, other]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'chek' (did you mean 'check'?)" in err
    assert "valid keys: check, checkpoint, out, prefix, slim" in err
    assert not (tmp_path / "b.pt").exists()


def test_export_module_entry_point(tmp_path):
    _lightning_like_checkpoint(tmp_path / "run.ckpt")
    proc = subprocess.run(
        [sys.executable, "-m", "fastmri_pun.export", str(tmp_path / "run.ckpt"), "--check"]
        + [str(tmp_path / "out.pt")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "check passed" in proc.stdout
    masks = random_masks(Unet(1, 1, chans=16, num_pool_layers=3), 0.03)
    assert load_sparse(tmp_path / "out.pt").masks.keys() == masks.keys()
