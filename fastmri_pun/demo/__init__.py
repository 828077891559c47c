"""The embedded demo set: fastMRI-format multicoil h5 files simulated from real MR images that
ship in packages (see :mod:`fastmri_pun.demo.builder`)."""

from .builder import LAYOUTS, SPLITS, DemoLayout, build_demo_dataset, ensure_demo_dataset

__all__ = ["LAYOUTS", "SPLITS", "DemoLayout", "build_demo_dataset", "ensure_demo_dataset"]
