"""A training run's ``config.yaml`` is read with YAML 1.2 floats by evaluation, as jsonargparse
reads it for ``--config``: ``1e-3`` is 0.001, not the string ``"1e-3"``."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastmri_pun.app.evaluate.model_settings import (
    _training_config,
    check_training_configs,
    checkpoint_settings,
)
from fastmri_pun.data.transform_settings import TransformSettings

CONFIG = """\
lr: 1e-3
weight_decay: 5E-5
center_fractions: [16e-2]
accelerations: [4]
crop_readout: false
"""


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """``run/checkpoints/best.ckpt`` (empty) beside ``run/config.yaml`` holding :data:`CONFIG`."""
    ck = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"")
    (tmp_path / "run" / "config.yaml").write_text(CONFIG)
    return ck


def test_recorded_exponent_floats_read_back_as_numbers(checkpoint: Path) -> None:
    trained = _training_config(checkpoint)
    assert trained["lr"] == 0.001 and type(trained["lr"]) is float
    assert trained["weight_decay"] == 5e-5
    assert trained["center_fractions"] == [0.16]


def test_old_checkpoint_settings_take_exponent_floats(checkpoint: Path) -> None:
    old = SimpleNamespace(hparams={"sens_maps": "learned"})  # no transform_settings stored
    assert checkpoint_settings(old, checkpoint) == TransformSettings(
        sens_maps="learned", center_fractions=(0.16,), accelerations=(4,), crop_readout=False
    )


def test_same_mask_written_with_an_exponent_is_no_mismatch(checkpoint: Path) -> None:
    settings = TransformSettings(center_fractions=(0.16,), accelerations=(4,), crop_readout=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_training_configs({"run": checkpoint}, {"run": settings})
    with pytest.warns(UserWarning, match=r"'center_fractions': \[0\.16\]"):
        check_training_configs({"run": checkpoint}, {"run": TransformSettings()})
