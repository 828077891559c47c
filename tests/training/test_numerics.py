"""The numerics policy: TF32 chosen by one setting, deterministic mode that runs on CUDA, bf16
only where the hardware computes it natively."""

from __future__ import annotations

import pytest
import torch

from fastmri_pun.models.fast_paths import bf16_supported
from fastmri_pun.training.numerics import float32_precision, set_float32_precision


@pytest.fixture
def restore_precision():
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


def test_highest_turns_tf32_off_for_matmuls_and_cudnn_convolutions(restore_precision):
    torch.backends.cudnn.allow_tf32 = True  # torch's default: TF32 convolutions on Ampere+
    set_float32_precision("highest")
    assert float32_precision() == {"matmul": "highest", "cudnn_tf32": False}
    set_float32_precision("high")
    assert float32_precision() == {"matmul": "high", "cudnn_tf32": True}
    with pytest.raises(ValueError, match="highest, high, medium"):
        set_float32_precision("tf32")


@pytest.mark.parametrize(
    ("capability", "native"), [((6, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)]
)
def test_bf16_only_from_compute_capability_8(monkeypatch, capability, native):
    """torch.cuda.is_bf16_supported() is also true on pre-Ampere GPUs, which emulate bf16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert bf16_supported(torch.device("cuda", 0)) is native


def test_the_training_flags_set_the_precision_and_the_deterministic_mode(
    demo_root, tmp_path, restore_precision
):
    from fastmri_pun.app.train.cli import parse_args
    from fastmri_pun.app.train.run import prepare
    from fastmri_pun.app.train.trainers import deterministic_mode, trainer_kwargs

    torch.backends.cudnn.allow_tf32 = True
    base = ["--data_path", str(demo_root), "--output_dir", str(tmp_path / "a")]
    cfg = parse_args([*base, "--center_fractions", "0.16"])
    assert cfg.trainer.float32_matmul_precision == "highest"
    prepare(cfg)
    assert float32_precision() == {"matmul": "highest", "cudnn_tf32": False}
    cfg = parse_args([*base, "--center_fractions", "0.16", "--float32_matmul_precision", "high"])
    prepare(cfg)
    assert float32_precision() == {"matmul": "high", "cudnn_tf32": True}
    # deterministic by default, but an op without a deterministic CUDA kernel (fastmri's
    # reflection-pad backward at 5 U-Net pools) warns instead of stopping the run
    assert trainer_kwargs(cfg)["deterministic"] == "warn"
    assert [deterministic_mode(v) for v in (True, "strict", "warn", False)] == [
        "warn",
        True,
        "warn",
        False,
    ]
