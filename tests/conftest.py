"""Shared test fixtures.

- ``_isolated_cache`` (autouse, session): points ``$FASTMRI_PUN_CACHE`` at a temporary folder, so
  no test reads or writes ``~/.cache/fastmri_pun`` (demo data, ESPIRiT map cache).
- ``demo_root`` (session): a tiny demo dataset built once (size 64, 4 coils, ``layout="tiny"``:
  4 train / 2 val / 4 test slices + shifted sets; k-space ``[4, 128, 64]``, targets 64×64).
- ``quirk_root`` (session): a fastMRI-quirk dataset written with plain h5py by
  ``tests/quirk_files.py`` (read-only: tests copy files out of it before changing anything).
- ``demo_mask_func``: a fastMRI random 4× mask with centre fraction 0.16 — 10 ACS columns at
  width 64, enough for ESPIRiT (kernel 5 needs ≥ 7; the usual 0.08 gives only 5 at this width).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DEMO_SIZE = 64  # tests/test_data_*.py rely on these two values
DEMO_COILS = 4


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("FASTMRI_PUN_CACHE")
    os.environ["FASTMRI_PUN_CACHE"] = str(tmp_path_factory.mktemp("fastmri_pun_cache"))
    yield
    if old is None:
        os.environ.pop("FASTMRI_PUN_CACHE", None)
    else:
        os.environ["FASTMRI_PUN_CACHE"] = old


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a tiny demo dataset (``multicoil_train/``, ``multicoil_val/``, ``multicoil_test/``,
    ``multicoil_test_{anatomy,contrast,lesions}/``, ``annotations/lesions.csv``)."""
    from fastmri_pun.demo.builder import build_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "tiny"
    return build_demo_dataset(
        out, size=DEMO_SIZE, coils=DEMO_COILS, seed=0, layout="tiny", progress=False
    )


@pytest.fixture(scope="session")
def quirk_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the fastMRI-quirk dataset (:func:`quirk_files.write_quirk_dataset`)."""
    from quirk_files import write_quirk_dataset

    root = tmp_path_factory.mktemp("quirks")
    write_quirk_dataset(root)
    return root


@pytest.fixture
def demo_mask_func():
    """fastMRI random mask, 4×, centre fraction 0.16 (10 ACS columns at width 64)."""
    from fastmri_pun.data.masks import make_mask_func

    return make_mask_func("random", 0.16, 4)


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster and timing-stable on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
