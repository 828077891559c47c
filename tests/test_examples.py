"""The example scripts run and give the numbers they print: ``modl_in_fastmri_loop`` with its
own defaults (the demo set of ``train``), ``pun_varnet`` with fewer steps."""

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


def test_modl_example_as_shipped_beats_zero_filling_and_learns():
    """``python examples/modl_in_fastmri_loop.py`` with no argument: the default demo set
    (128², 8 coils; built here in the test cache), 20 steps, 6 validation slices."""
    out = _load("modl_in_fastmri_loop").main([])
    # the demo set's validation slices, fastMRI's equispaced 4x mask, RSS of the zero-filled coils
    assert out["psnr_zero_filled"] == pytest.approx(22.93, abs=0.02)
    # the untrained MoDL is the SENSE solution of its CG data consistency (ESPIRiT maps) ...
    assert out["psnr_untrained"] > out["psnr_zero_filled"] + 5.0
    # ... and the 20 training steps improve on it
    assert out["psnr"] > out["psnr_untrained"] + 1.0
