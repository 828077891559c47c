"""The example scripts run as shipped (tiny settings) and give the numbers they print."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == ["modl_in_fastmri_loop", "pun_varnet"]


def test_pun_varnet_example_keeps_the_density_and_beats_zero_filling():
    out = _load("pun_varnet").main(["--search_steps", "10", "--train_steps", "30"])
    for method in ("pun-it", "random"):
        # global top-k keeps round(0.1 * N) weights: within one weight of 10 %
        assert out[method]["density"] == pytest.approx(0.1, abs=2e-3)
        assert math.isfinite(out[method]["psnr"])
    assert out["pun-it"]["psnr"] > out["zero-filled"]["psnr"]


def test_modl_example_beats_zero_filling_on_fastmri_files(demo_root):
    argv = ["--data_path", str(demo_root), "--center_fractions", "0.16", "--steps", "4",
            "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--val_slices", "2"]  # fmt: skip
    out = _load("modl_in_fastmri_loop").main(argv)
    # ESPIRiT-SENSE data consistency alone lifts PSNR well above zero-filled RSS
    assert out["psnr"] > out["psnr_zero_filled"] + 1.0
