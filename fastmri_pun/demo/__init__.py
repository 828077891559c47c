"""The embedded demo set: fastMRI-format multicoil h5 files simulated from real MR images that
ship in packages, plus their emulated single-coil versions.

Build it with :func:`ensure_demo_dataset` (a complete set in the cache, built once per settings)
or :func:`build_demo_dataset` (into a given folder, with :class:`DemoConfig`'s settings), or from
the shell with ``python -m fastmri_pun.demo --help``. :data:`DEMO_FOLDERS` and
:data:`SINGLECOIL_FOLDERS` name its data folders, :data:`LAYOUTS` its slice counts.

Modules: :mod:`~fastmri_pun.demo.builder` (the build, its settings and manifest),
:mod:`~fastmri_pun.demo.layout` (which slices go where), :mod:`~fastmri_pun.demo.sources` (the
real images), :mod:`~fastmri_pun.demo.volume_simulation` (a volume's lesions and acquisition),
:mod:`~fastmri_pun.demo.simulate` (one slice's acquisition), :mod:`~fastmri_pun.demo.singlecoil`
(the emulated single-coil files).
"""

from .builder import DemoConfig, build_demo_dataset, ensure_demo_dataset
from .layout import DEMO_FOLDERS, LAYOUTS, SINGLECOIL_FOLDERS

__all__ = [
    "DEMO_FOLDERS",
    "LAYOUTS",
    "SINGLECOIL_FOLDERS",
    "DemoConfig",
    "build_demo_dataset",
    "ensure_demo_dataset",
]
