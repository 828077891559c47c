"""The regime map's configuration (``configs/regime_map.yaml``): one paper-style experiment (the
keys of :class:`~fastmri_pun.experiments.paper.config.ExperimentConfig`: methods, seeds, density,
reference, train, evaluate, demo, data_path, budget, executor) and a ``grid`` that varies it:

.. code-block:: yaml

    grid:
      chans: [8, 16, 32, 64]          # denoiser width of every method's model
      sizes:                          # training-set sizes: training volumes + training settings
        - {train_volumes: 1, max_epochs: 150, early_stopping_patience: 20}
        - {train_volumes: 24, max_epochs: 15, early_stopping_patience: 4}
      density_sweep: [0.01, 0.03, 0.1, 0.3]   # sweep_method's densities at the most
      sweep_method: pun-it                    # over-parameterised cell (widest, fewest slices)

Each (chans, size) pair is a *cell*: the experiment with ``train.chans`` and the size's settings
(``train_volumes`` and any training keys, e.g. epochs for a few slices) replaced. The grid's keys
are checked like the experiment's: unknown keys name the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from ...utils.config_checks import unknown_keys_message
from ..paper.config import ExperimentConfig, read_experiment_yaml

__all__ = ["Cell", "RegimeConfig", "sweep_method_name"]

_GRID_KEYS = {"chans", "sizes", "density_sweep", "sweep_method"}


@dataclass(frozen=True)
class Cell:
    """One cell of the grid.

    Attributes:
        name: ``c<chans>-v<train_volumes>`` (folder name of its runs and evaluation).
        chans: denoiser width.
        train_volumes: training volumes (``None``: all).
        experiment: the experiment of this cell.
    """

    name: str
    chans: int
    train_volumes: int | None
    experiment: ExperimentConfig


@dataclass
class RegimeConfig:
    """A grid of experiments over denoiser width × training-set size (module docstring).

    Attributes:
        base: the experiment every cell varies.
        chans: denoiser widths, ascending.
        sizes: per training-set size: ``train_volumes`` (``None``: all) and training keys.
        density_sweep: densities of ``sweep_method`` at the most over-parameterised cell
            (empty: no sweep).
        sweep_method: the method swept (default ``pun-it``).
        source: where it was read from (for messages).
    """

    base: ExperimentConfig
    chans: list[int]
    sizes: list[dict[str, Any]]
    density_sweep: list[float] = field(default_factory=list)
    sweep_method: str = "pun-it"
    source: str = "<regime>"

    def __post_init__(self) -> None:
        where = f"{self.source}: grid"
        if not self.chans or not all(isinstance(c, int) and c >= 1 for c in self.chans):
            raise ValueError(f"{where}.chans must be a non-empty list of widths >= 1")
        if len(set(self.chans)) != len(self.chans):
            raise ValueError(f"{where}.chans lists a width twice: {self.chans}")
        if not self.sizes or not all(isinstance(s, dict) for s in self.sizes):
            raise ValueError(f"{where}.sizes must be a non-empty list of mappings")
        volumes = [s.get("train_volumes") for s in self.sizes]
        if len(set(volumes)) != len(volumes):
            raise ValueError(f"{where}.sizes lists train_volumes {volumes} with a repeat")
        if not all(isinstance(d, (int, float)) and 0 < d <= 1 for d in self.density_sweep):
            raise ValueError(f"{where}.density_sweep values must be in (0, 1]")
        if self.density_sweep and self.sweep_method not in self.base.methods:
            raise ValueError(
                f"{where}.sweep_method {self.sweep_method!r} is not one of the methods "
                f"{list(self.base.methods)}"
            )
        self.cells()  # every cell's settings make valid training configurations

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Any, source: str = "<regime>") -> RegimeConfig:
        """Build from a mapping: the experiment's keys plus ``grid``.

        Raises:
            ValueError: no ``grid``, unknown keys, invalid settings (naming the key).
        """
        if not isinstance(data, dict):
            raise ValueError(f"regime config {source} must be a mapping")
        data = dict(data)
        grid = data.pop("grid", None)
        if not isinstance(grid, dict):
            raise ValueError(f"{source}: 'grid' (chans, sizes) is missing or not a mapping")
        bad = sorted(set(grid) - _GRID_KEYS)
        if bad:
            raise ValueError(unknown_keys_message(bad, _GRID_KEYS, f"{source}: grid"))
        base = ExperimentConfig.from_dict(data, source)
        return cls(
            base,
            list(grid.get("chans") or []),
            list(grid.get("sizes") or []),
            [float(d) for d in grid.get("density_sweep") or []],
            grid.get("sweep_method", "pun-it"),
            source,
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RegimeConfig:
        """Read a regime YAML (loader as :meth:`ExperimentConfig.from_yaml`).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a regular file, not YAML, bad keys or values.
        """
        return cls.from_dict(read_experiment_yaml(path, "regime config"), str(path))

    # ------------------------------------------------------------------ cells
    def cell(self, chans: int, size: dict[str, Any]) -> Cell:
        """The cell of width ``chans`` and training-set size ``size``.

        Raises:
            ValueError: settings that make no valid training configuration.
        """
        size = dict(size)
        volumes = size.pop("train_volumes", None)
        exp = dataclasses.replace(
            self.base,
            train={**self.base.train, "chans": chans, **size},
            train_volumes=volumes,
            source=f"{self.source} (cell chans={chans}, train_volumes={volumes})",
        )
        name = f"c{chans}-v{volumes if volumes is not None else 'all'}"
        return Cell(name, chans, volumes, exp)

    def cells(self) -> list[Cell]:
        """Every cell, widths outer, sizes inner (the order of the YAML lists)."""
        return [self.cell(c, s) for c in self.chans for s in self.sizes]

    def sweep_cell(self) -> Cell | None:
        """The cell of the density sweep: the widest denoiser with the fewest training volumes
        (the most over-parameterised), or ``None`` without a sweep."""
        if not self.density_sweep:
            return None
        fewest = min(self.sizes, key=lambda s: s.get("train_volumes") or 1 << 30)
        return self.cell(max(self.chans), fewest)

    def sweep_experiment(self, density: float) -> ExperimentConfig:
        """The sweep cell's experiment with only ``sweep_method`` (named ``<method>-d<density>``),
        at ``density``."""
        cell = self.sweep_cell()
        assert cell is not None
        name = sweep_method_name(self.sweep_method, density)
        return dataclasses.replace(
            cell.experiment,
            methods={name: dict(self.base.methods[self.sweep_method])},
            reference=name,
            density=float(density),
            source=f"{cell.experiment.source} (density {density:g})",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the output folder's ``experiment.yaml``)."""
        grid = {"chans": self.chans, "sizes": self.sizes, "density_sweep": self.density_sweep,
                "sweep_method": self.sweep_method}  # fmt: skip
        return {**self.base.to_dict(), "grid": grid}


def sweep_method_name(method: str, density: float) -> str:
    """``pun-it-d0.01``: the name of ``method`` at ``density`` in the density sweep."""
    return f"{method}-d{density:g}"
