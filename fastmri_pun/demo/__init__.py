"""The embedded demo set: fastMRI-format multicoil h5 files simulated from real MR images that
ship in packages, plus their emulated single-coil versions (see :mod:`fastmri_pun.demo.builder`). Build it from the shell with
``python -m fastmri_pun.demo --help``."""

from .builder import DemoConfig, build_demo_dataset, demo_dir_name, ensure_demo_dataset
from .layout import DEMO_FOLDERS, LAYOUTS, SINGLECOIL_FOLDERS, DemoLayout

__all__ = [
    "LAYOUTS",
    "DEMO_FOLDERS",
    "SINGLECOIL_FOLDERS",
    "DemoConfig",
    "DemoLayout",
    "build_demo_dataset",
    "demo_dir_name",
    "ensure_demo_dataset",
]
