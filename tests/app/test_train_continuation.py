"""A killed training continues only with the settings it was started with: new values of the
learning rate, seed or loss would be recorded without taking effect (the checkpoint's optimiser
state, data order and masks win), so the continuation is refused in one line listing them."""

from __future__ import annotations

import pytest
import torch
from test_train_e2e import _args, _Crash

from fastmri_pun.app.train.cli import main, parse_args
from fastmri_pun.app.train.run import fit


def test_a_killed_run_continues_only_with_its_own_settings(demo_root, tmp_path, capsys):
    args = _args(demo_root, tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(parse_args(args), callbacks=[_Crash()])
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    changed = ["--lr", "0.01", "--seed", "3", "--loss", "l1"]
    assert main([*args, *changed]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for flag in ("--lr 0.003 -> 0.01", "--seed 42 -> 3", "--loss 'ssim_l1' -> 'l1'"):
        assert flag in err[0], err[0]
    assert last.read_bytes() == before  # nothing was continued
    # how long it trains and how it reports may change: it continues
    result = fit(parse_args([*args, "--max_epochs", "4", "--enable_progress_bar", "false"]))
    assert torch.load(result.last_checkpoint, weights_only=True)["epoch"] == 3
