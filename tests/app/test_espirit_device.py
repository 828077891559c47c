"""ESPIRiT maps on the GPU (the accelerator simulator, ``tests/device_simulator.py``): the device
precompute writes the cache the CPU transform reads, ``train`` and ``evaluate`` on a GPU fill the
cache before their loaders run (and not on the CPU), ``--device cuda`` without CUDA is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from device_simulator import GPU_FLAGS, SIM_DEVICE, simulated_gpu
from fastmri.data import SliceDataset
from test_train_e2e import TINY

from fastmri_pun.app.espirit import device_maps
from fastmri_pun.app.espirit.precompute import MapsConfig, precompute_maps
from fastmri_pun.data import TransformSettings
from fastmri_pun.data import transforms as transforms_mod

CF = [0.16]  # 10 ACS columns at width 64 (tests/conftest.py)
#: slices of the tiny demo set per split folder
TRAIN, VAL, TEST = 4, 2, 4


def _files(cache: Path) -> dict[str, Path]:
    return {str(p.relative_to(cache)): p for p in sorted(cache.rglob("*.npy"))}


def _maps_cfg(cache: Path) -> MapsConfig:
    return MapsConfig(center_fractions=CF, maps_cache_dir=cache, enable_progress_bar=False)


@pytest.fixture
def no_loader_maps(monkeypatch):
    """Counts the maps the data transform computes itself (cache misses in the loaders)."""
    calls = []
    original = transforms_mod.espirit_maps

    def counting(*args, **kwargs):
        calls.append(args[2:4])
        return original(*args, **kwargs)

    monkeypatch.setattr(transforms_mod, "espirit_maps", counting)
    return calls


def _residual(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-pixel distance of unit-norm ``[C, H, W]`` maps up to a phase (kept pixels)."""
    kept = np.abs(a).sum(0) > 0
    x, y = a[:, kept], b[:, kept]
    return float(np.linalg.norm(x - y * (y.conj() * x).sum(0), axis=0).max())


# ------------------------------------------------------------------------------ precompute
def test_device_precompute_writes_the_cache_the_cpu_transform_reads(
    demo_root, tmp_path, monkeypatch, no_loader_maps
):
    cpu = precompute_maps(demo_root, _maps_cfg(tmp_path / "cpu"))
    ref = _files(tmp_path / "cpu")
    volumes = sum(len(list(folder.glob("*.h5"))) for folder in cpu.folders)
    with simulated_gpu() as sim:
        dev = precompute_maps(demo_root, _maps_cfg(tmp_path / "dev"), device=SIM_DEVICE)
        # one ESPIRiT call per volume (its slices share the mask), a few host syncs per call
        # (the maps' one copy back among them; the power solver's pixels to redo by eigh)
        calls = sim.sync_sites[next(s for s in sim.sync_sites if s.endswith("in _compute"))]
        assert calls == volumes < 18 and sim.syncs <= 8 * volumes, sim.sync_sites
        again = precompute_maps(demo_root, _maps_cfg(tmp_path / "dev"), device=SIM_DEVICE)
    assert (cpu.computed, cpu.found) == (dev.computed, dev.found) == (18, 0)
    assert (again.computed, again.found, again.num_slices) == (0, 18, 18)
    assert dev.folders == cpu.folders and dev.maps_cache_dir == tmp_path / "dev"
    got = _files(tmp_path / "dev")
    assert list(got) == list(ref) and len(got) == 18  # same names: same keys
    for name, path in ref.items():
        a, b = np.load(path), np.load(got[name])
        header = len(path.read_bytes()) - a.nbytes  # the .npy header: same format
        assert path.read_bytes()[:header] == got[name].read_bytes()[:header]
        assert (a.dtype, a.shape) == (b.dtype, b.shape) == (np.complex64, (4, 64, 64))
        # one solver on every device: the device's files are the CPU's, byte for byte
        assert path.read_bytes() == got[name].read_bytes()
    # the CPU transform (training's, random masks) reads the device cache: nothing computed
    assert len(no_loader_maps) == 18  # the CPU precompute's, through the transform
    no_loader_maps.clear()
    settings = TransformSettings(center_fractions=tuple(CF), maps_cache_dir=str(tmp_path / "dev"))
    ds = SliceDataset(demo_root / "multicoil_train", "multicoil", settings.build(use_seed=False))
    for i in range(len(ds)):
        sample = ds[i]
        name = next(n for n in got if f"_s{sample.slice_num:03d}_" in n and sample.fname[:-3] in n)
        stored = torch.view_as_real(torch.from_numpy(np.load(got[name])))
        assert torch.equal(sample.sens_maps, stored)
    assert no_loader_maps == []


# the cache warns (once) that the slices have maps under the other centre's settings
@pytest.mark.filterwarnings("ignore:ESPIRiT cache .* has maps only under other settings")
def test_fill_covers_every_centre_a_random_training_mask_draws(demo_root, tmp_path, no_loader_maps):
    settings = TransformSettings(
        center_fractions=(0.16, 0.2), accelerations=(4, 4), maps_cache_dir=str(tmp_path)
    )
    ds = SliceDataset(demo_root / "multicoil_train", "multicoil", settings.build(use_seed=False))
    with simulated_gpu():
        counts = device_maps.fill_on_device([ds], SIM_DEVICE)
    assert counts == device_maps.MapCounts(computed=2 * TRAIN, found=0)
    assert len(_files(tmp_path)) == 2 * TRAIN  # 10 and 13 ACS columns: two keys per slice
    for _ in range(4):  # random masks, either centre
        for i in range(len(ds)):
            ds[i]
    assert no_loader_maps == []


def test_fill_map_cache_does_nothing_on_the_cpu_or_without_espirit(demo_root, tmp_path):
    espirit = TransformSettings(center_fractions=tuple(CF), maps_cache_dir=str(tmp_path))
    ds = SliceDataset(demo_root / "multicoil_val", "multicoil", espirit.build())
    assert device_maps.fill_map_cache([ds], torch.device("cpu")) is None
    learned = TransformSettings(sens_maps="learned", maps_cache_dir=str(tmp_path))
    other = SliceDataset(demo_root / "multicoil_val", "multicoil", learned.build())
    with simulated_gpu():
        counts = device_maps.fill_map_cache([other, ds], SIM_DEVICE)
    assert counts == (VAL, 0) and len(_files(tmp_path)) == VAL


# ------------------------------------------------------------------------------ devices
def test_device_strings_and_run_devices(monkeypatch, capsys, demo_root):
    from fastmri_pun.app.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_maps.parse_device("cpu") == torch.device("cpu")
    assert device_maps.run_device("auto") == device_maps.run_device("cpu") == torch.device("cpu")
    assert device_maps.run_device("simulated_gpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--accelerator gpu: no CUDA GPU"):
        device_maps.run_device("gpu")
    argv = ["espirit", "--data_path", str(demo_root), "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda: no CUDA GPU is available" in err, err
    with pytest.raises(ValueError, match="must be cpu, cuda or cuda:N, got 'gpu'"):
        device_maps.parse_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_maps.parse_device("cuda:1") == torch.device("cuda", 1)
    assert device_maps.parse_device("CUDA") == torch.device("cuda")
    with pytest.raises(ValueError, match="--device cuda:2: this machine has 2 GPU"):
        device_maps.parse_device("cuda:2")
    for accelerator in ("auto", "gpu", "cuda"):
        assert device_maps.run_device(accelerator) == torch.device("cuda")
    assert device_maps.run_device("cpu") == torch.device("cpu")


# ------------------------------------------------------------------------------ train, evaluate
class _CacheAtStart(pl.Callback):
    """The cache's files when the first training batch is about to be drawn."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.files = cache, None

    def on_train_start(self, trainer, module) -> None:
        self.files = len(_files(self.cache))


def _train_args(demo_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--data_path", str(demo_root), "--output_dir", str(tmp_path / "run"),
        "--maps_cache_dir", str(tmp_path / "cache"), *TINY, "--max_epochs", "1", *extra,
    ]  # fmt: skip


def _fill_spy(monkeypatch) -> list[torch.device]:
    devices = []
    original = device_maps.fill_on_device

    def spy(datasets, device, *args, **kwargs):
        devices.append(device)
        return original(datasets, device, *args, **kwargs)

    monkeypatch.setattr(device_maps, "fill_on_device", spy)
    return devices


def test_train_on_a_gpu_fills_the_cache_before_the_first_batch(
    demo_root, tmp_path, monkeypatch, no_loader_maps
):
    from fastmri_pun.app.train.cli import parse_args
    from fastmri_pun.app.train.run import fit

    monkeypatch.setattr(device_maps, "run_device", lambda accelerator: SIM_DEVICE)
    fills = _fill_spy(monkeypatch)
    at_start = _CacheAtStart(tmp_path / "cache")
    with simulated_gpu():
        result = fit(parse_args(_train_args(demo_root, tmp_path, *GPU_FLAGS)), [at_start])
    assert fills == [SIM_DEVICE]
    assert at_start.files == TRAIN + VAL + TEST  # every slice's maps before training
    assert no_loader_maps == []  # the loaders computed none
    assert result.test["summary"]["num_slices"] == TEST


def test_train_on_the_cpu_leaves_the_maps_to_the_loaders(
    demo_root, tmp_path, monkeypatch, no_loader_maps
):
    from fastmri_pun.app.train.cli import parse_args
    from fastmri_pun.app.train.run import fit

    fills = _fill_spy(monkeypatch)
    fit(parse_args(_train_args(demo_root, tmp_path)))
    assert fills == []
    assert len(no_loader_maps) == TRAIN + VAL + TEST  # each slice once, by the loaders
    assert len(_files(tmp_path / "cache")) == TRAIN + VAL + TEST


def _evaluate(demo_root: Path, tmp_path: Path, device: torch.device, monkeypatch):
    from tiny_checkpoints import untrained_checkpoint

    from fastmri_pun.app.evaluate import suite
    from fastmri_pun.app.evaluate.suite import SuiteConfig, evaluate

    ckpt = untrained_checkpoint(tmp_path / "m.ckpt", center_fractions=tuple(CF))
    monkeypatch.setattr(suite, "_device", lambda accelerator: device)
    cfg = SuiteConfig(
        data_path=demo_root,
        output_dir=tmp_path / "eval",
        shifts=["in-dist", "noise"],
        max_slices=3,
        n_boot=100,
        enable_progress_bar=False,
        maps_cache_dir=tmp_path / "cache",
    )
    return evaluate({"m": ckpt}, cfg)


def test_evaluate_on_a_gpu_fills_the_evaluated_slices_first(
    demo_root, tmp_path, monkeypatch, no_loader_maps
):
    fills = _fill_spy(monkeypatch)
    with simulated_gpu():
        result = _evaluate(demo_root, tmp_path, SIM_DEVICE, monkeypatch)
    assert fills == [SIM_DEVICE, SIM_DEVICE]  # per shift
    assert no_loader_maps == []
    assert len(_files(tmp_path / "cache")) == 2 * 3  # 3 evaluated slices, noise-free and noisy
    assert len(result.results) == 2 * 3 and result.results["maps_fit"].gt(0.99).all()


def test_evaluate_on_the_cpu_leaves_the_maps_to_the_dataset(
    demo_root, tmp_path, monkeypatch, no_loader_maps
):
    fills = _fill_spy(monkeypatch)
    _evaluate(demo_root, tmp_path, torch.device("cpu"), monkeypatch)
    assert fills == [] and len(no_loader_maps) >= 2 * 3
    assert len(_files(tmp_path / "cache")) == 2 * 3
