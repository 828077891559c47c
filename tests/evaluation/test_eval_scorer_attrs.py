"""fastMRI's scorer on target files whose attributes MATLAB or C tools wrote: the
``acquisition`` / ``acceleration`` filters match a fixed-length byte string and a one-element
array as they match fastMRI's own attributes."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from matlab_files import matlab_like
from quirk_files import write_singlecoil_dataset

from fastmri_pun.evaluation.fastmri_scorer import score_folder


def _folders(root: Path) -> tuple[Path, Path]:
    """``(targets, predictions)``: the two single-coil train files (``acquisition`` CORPD_FBK,
    ``reconstruction_esc`` ``[2, 64, 64]``) and predictions of 0.9 times their targets."""
    write_singlecoil_dataset(root / "sc")
    targets = root / "targets"
    shutil.copytree(root / "sc" / "singlecoil_train", targets)
    preds = root / "preds"
    preds.mkdir()
    for path in targets.iterdir():
        with h5py.File(path, "r") as hf:
            recon = 0.9 * hf["reconstruction_esc"][()]
        with h5py.File(preds / path.name, "w") as hf:
            hf["reconstruction"] = recon
    return targets, preds


def test_filters_match_matlab_attributes(tmp_path: Path) -> None:
    targets, preds = _folders(tmp_path)
    paths = sorted(targets.iterdir())
    assert len(paths) == 2
    plain = score_folder(targets, preds, "singlecoil")
    assert plain["MSE"]["n"] == 2.0
    for path in paths:
        before = matlab_like(path, acceleration=4)
        assert before["acquisition"] == "CORPD_FBK"
        with h5py.File(path, "r") as hf:  # what the filters see without normalising
            assert hf.attrs["acquisition"] == np.bytes_(b"CORPD_FBK")
            assert hf.attrs["acceleration"].shape == (1, 1)
    for filters in ({"acquisition": "CORPD_FBK"}, {"acceleration": 4}):
        assert score_folder(targets, preds, "singlecoil", **filters) == plain
    mse = []
    for path in paths:
        with h5py.File(path, "r") as hf:
            mse.append(np.mean((0.1 * hf["reconstruction_esc"][()].astype(np.float64)) ** 2))
    assert plain["MSE"]["mean"] == pytest.approx(np.mean(mse), rel=1e-5)
    assert plain["NMSE"]["mean"] == pytest.approx(0.01, rel=1e-5)
    for filters in ({"acquisition": "AXT2"}, {"acceleration": 8}):
        with pytest.raises(ValueError, match=r"targets: no volume to score"):
            score_folder(targets, preds, "singlecoil", **filters)
