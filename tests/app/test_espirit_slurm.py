"""``fastmri-pun espirit --shards N``: the slices split deterministically (split folder, file name,
slice) into contiguous runs, each run one job of ``--executor local`` (in this process) or
``--executor slurm`` (one job array on the project's SLURM test cluster); the cache written is
the unsharded run's, file for file and byte for byte, and a rerun finds every map.

The SLURM test skips with one line without a running cluster (``scripts/slurm_cluster.sh``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import pytest
from slurm_cluster import require_slurm

from fastmri_pun.app.espirit import cli as espirit_cli
from fastmri_pun.app.espirit.precompute import (
    MapsConfig,
    precompute_maps,
    shard_slices,
    split_folders,
)

CF = ["--center_fractions", "0.16"]  # 10 ACS columns at width 64 (tests/conftest.py)
QUIET = ["--enable_progress_bar", "false"]
#: slices of the tiny demo set (tests/conftest.py)
SLICES = 18
LOGS = "slurm_logs"


def _cache_files(cache: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file of a map cache, its job logs left out."""
    return {
        p.relative_to(cache).as_posix(): p.read_bytes()
        for p in sorted(cache.rglob("*"))
        if p.is_file() and p.relative_to(cache).parts[0] != LOGS
    }


@pytest.fixture(scope="module")
def reference(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The cache of an unsharded local precompute of the demo set."""
    cache = tmp_path_factory.mktemp("reference")
    argv = ["--data_path", str(demo_root), "--maps_cache_dir", str(cache), *CF, *QUIET]
    assert espirit_cli.main(argv) == 0
    files = _cache_files(cache)
    assert len(files) == SLICES and all(name.endswith(".npy") for name in files)
    return files


def _slice_order(demo_root: Path) -> list[str]:
    """``"<file stem>_s<slice>_"`` of every slice, in split folder, file name, slice order."""
    order = []
    for folder in sorted(demo_root.glob("multicoil_*")):
        for path in sorted(folder.glob("*.h5")):
            with h5py.File(path, "r") as f:
                order += [f"{path.stem}_s{k:03d}_" for k in range(f["kspace"].shape[0])]
    return order


def test_shards_are_contiguous_near_equal_runs_in_file_and_slice_order(demo_root, tmp_path):
    assert shard_slices(demo_root, shards=3) == [(0, 6), (6, 12), (12, 18)]
    assert shard_slices(demo_root, shards=4) == [(0, 5), (5, 10), (10, 14), (14, 18)]
    assert shard_slices(demo_root, shards=1) == [(0, SLICES)]
    assert shard_slices(demo_root, shards=50) == [(k, k + 1) for k in range(SLICES)]
    assert shard_slices(demo_root / "multicoil_val", shards=3) == [(0, 1), (1, 2)]
    empty = tmp_path / "multicoil_empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="data folder is empty"):  # checked as precompute's
        shard_slices(empty, shards=3)
    with pytest.raises(ValueError, match="^--shards must be >= 1, got 0$"):
        shard_slices(demo_root, shards=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        shard_slices(tmp_path / "nowhere", shards=2)
    # a shard computes exactly its run of slices: the files sorted, then the slices
    order = _slice_order(demo_root)
    assert len(order) == SLICES and [f.name for f in split_folders(demo_root)][:2] == [
        "multicoil_test",
        "multicoil_test_anatomy",
    ]
    cfg = MapsConfig(center_fractions=[0.16], maps_cache_dir=tmp_path, enable_progress_bar=False)
    seen: set[Path] = set()
    for start, stop in shard_slices(demo_root, cfg, shards=4):
        summary = precompute_maps(demo_root, cfg, slices=(start, stop))
        assert (summary.computed, summary.found) == (stop - start, 0)
        new = set(tmp_path.rglob("*.npy")) - seen
        assert sorted(re.sub(r"k5-.*", "", p.name) for p in new) == sorted(order[start:stop])
        seen |= new
    assert len(seen) == SLICES


def test_local_shards_write_the_unsharded_cache(demo_root, tmp_path, reference, capsys):
    cache = tmp_path / "maps"
    argv = ["--data_path", str(demo_root), "--maps_cache_dir", str(cache), *CF, *QUIET]
    assert espirit_cli.main([*argv, "--shards", "3"]) == 0
    out = capsys.readouterr().out
    pid = os.getpid()
    assert f"maps for {SLICES} slices in {cache}: {SLICES} computed, 0 found" in out
    assert out.rstrip().endswith(f"; 3 local job(s): local-{pid}-0, local-{pid}-1, local-{pid}-2")
    assert _cache_files(cache) == reference
    assert not (cache / LOGS).exists()  # local jobs log only a failure
    # rerunning (a resume) finds every map
    assert espirit_cli.main([*argv, "--shards", "2"]) == 0
    assert f"0 computed, {SLICES} found" in capsys.readouterr().out
    assert _cache_files(cache) == reference


def test_a_failed_shard_is_one_line_naming_its_log_and_exit_status_1(
    demo_root, tmp_path, monkeypatch, capsys
):
    calls = []

    def flaky(data_path, cfg, device, slices):
        calls.append(slices)
        if slices[0] == 6:
            raise ValueError("shard broke")
        return precompute_maps(data_path, cfg, device, slices)

    monkeypatch.setattr(espirit_cli, "precompute_maps", flaky)
    cache = tmp_path / "maps"
    argv = ["--data_path", str(demo_root), "--maps_cache_dir", str(cache), *CF, *QUIET]
    assert espirit_cli.main([*argv, "--shards", "3"]) == 1
    err = capsys.readouterr().err
    log = cache / LOGS / f"local-{os.getpid()}-1_log.err"
    assert err == (
        f"{espirit_cli.PROG}: error: job espirit (local-{os.getpid()}-1) failed: ValueError: "
        f"shard broke; log: {log}\n"
    )
    assert calls == [(0, 6), (6, 12), (12, 18)]  # the other shards ran
    assert "ValueError: shard broke" in log.read_text()
    assert len(list(cache.rglob("*.npy"))) == 12


def test_slurm_shards_write_the_unsharded_cache(
    demo_root, tmp_path, reference, monkeypatch, capsys
):
    pytest.importorskip("submitit")
    for key, value in require_slurm().items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        if key != "SLURM_CONF":
            monkeypatch.delenv(key)
    cache = tmp_path / "maps"
    argv = ["--data_path", str(demo_root), "--maps_cache_dir", str(cache), *CF, *QUIET]
    assert espirit_cli.main([*argv, "--executor", "slurm", "--shards", "3", "--time_min", "5"]) == 0
    out = capsys.readouterr().out
    jobs = re.search(r"; 3 slurm job\(s\): (\d+)_0, \1_1, \1_2$", out.strip())
    assert jobs is not None, out
    assert f"maps for {SLICES} slices in {cache}: {SLICES} computed, 0 found" in out
    assert _cache_files(cache) == reference  # same names, same bytes
    logs = cache / LOGS
    array = jobs.group(1)
    script = (logs / f"{array}_submission.sh").read_text().splitlines()
    assert "#SBATCH --array=0-2%3" in script and "#SBATCH --job-name=espirit" in script
    assert {p.name for p in logs.glob("*_result.pkl")} == {
        f"{array}_{task}_0_result.pkl" for task in range(3)
    }
    # an interrupted run, resumed: the same command computes only the maps still missing
    lost = sorted(cache.rglob("*.npy"))[::4]
    for path in lost:
        path.unlink()
    assert espirit_cli.main([*argv, "--executor", "slurm", "--shards", "3", "--time_min", "5"]) == 0
    found = SLICES - len(lost)
    assert f"{len(lost)} computed, {found} found in the cache" in capsys.readouterr().out
    assert _cache_files(cache) == reference
