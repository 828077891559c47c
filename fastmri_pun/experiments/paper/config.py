"""The experiment configuration of the paper's comparison (``configs/paper_<budget>.yaml``).

One YAML file names the methods (each a set of training settings, at least ``prune``), the
settings every run shares (``train``), the seeds, the density and the evaluation. Every key of
``train`` and of ``methods.<name>`` is a key of :class:`fastmri_pun.app.train.run.TrainConfig`
(a flag of ``python -m fastmri_pun.train``) and is checked by building that config, except the
control keys of a method (:data:`CONTROL_KEYS`: ``dense_from``, ``match_compute``,
``match_size``, ``select_weight_decay``), which the driver resolves from other runs
(:mod:`fastmri_pun.experiments.paper.plan`); the
``evaluate`` keys are fields of :class:`fastmri_pun.app.evaluate.suite.SuiteConfig`, with the
same defaults. Unknown keys are errors that name the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...app.config_files import check_regular_file, load_yaml, shipped_config
from ...app.evaluate.suite import SuiteConfig
from ...app.executor import ExecutorSettings
from ...app.train.run import TrainConfig
from ...data.shifts import DEFAULT_SHIFTS
from ...evaluation.shift_data import resolve_shifts
from ...utils.config_checks import unknown_keys_message

__all__ = [
    "CONTROL_KEYS",
    "DRIVER_KEYS",
    "DemoSettings",
    "ExperimentConfig",
    "packaged_config",
    "read_experiment_yaml",
]

# Training settings the driver sets for every run itself.
DRIVER_KEYS = frozenset({"data_path", "output_dir", "seed", "density", "mode", "resume"})
#: method keys that name controls the driver resolves (see fastmri_pun.experiments.paper.plan)
CONTROL_KEYS = frozenset({"dense_from", "match_compute", "match_size", "select_weight_decay"})
# Evaluation settings the driver derives from the training settings and its own arguments.
_SUITE_DRIVER_KEYS = frozenset(
    {
        "data_path",
        "output_dir",
        "reference",
        "seed",
        "mask_type",
        "center_fractions",
        "accelerations",
        "crop_readout",
        "maps_cache_dir",
        "enable_progress_bar",
    }
)


@dataclass(frozen=True)
class DemoSettings:
    """The demo set an experiment builds when it has no ``data_path``.

    Attributes:
        size: reconstruction matrix size N (N x N).
        coils: receive coils.
        layout: demo layout name (:data:`fastmri_pun.demo.LAYOUTS`).
        root: folder to build in (default: the cache folder).
        seed: demo seed (default: the driver's ``--seed``).
    """

    size: int = 128
    coils: int = 8
    layout: str = "default"
    root: str | None = None
    seed: int | None = None


def suite_keys() -> set[str]:
    """Keys of the ``evaluate`` section (fields of ``SuiteConfig`` the driver does not set)."""
    return {f.name for f in dataclasses.fields(SuiteConfig)} - _SUITE_DRIVER_KEYS


@dataclass
class ExperimentConfig:
    """A comparison of pruning methods: who is trained, on what, how often, and how evaluated.

    Attributes:
        methods: method name → training settings of that method (``{"prune": "pun-it"}``,
            plus any other ``TrainConfig`` key); table order = this order.
        seeds: training seeds; every method is trained once per seed.
        density: kept fraction of every pruned method, in (0, 1].
        reference: the method the others are compared with (default: the first).
        train: training settings shared by every method (a method's own settings win).
        evaluate: ``SuiteConfig`` fields of the evaluation (``shifts``, ``n_boot``, ...).
        demo: the demo set to build when ``data_path`` is not given.
        data_path: fastMRI root to use instead of the demo set.
        train_volumes: train on this many training volumes only (evenly spaced), to reach the
            over-parameterised regime; ``None``: all.
        budget: a label for the report.
        executor: where the jobs run by default: keys of
            :class:`~fastmri_pun.app.executor.ExecutorSettings` (``executor: slurm``,
            ``partition``, ``gpus_per_task``, ``cpus_per_task``, ``mem_gb``, ``time_min``,
            ``sbatch_lines``, ``log_dir``, ``max_parallel``); the command's flags of the same
            names override them.
        source: where the configuration was read from (for messages).
    """

    methods: dict[str, dict[str, Any]]
    seeds: list[int]
    density: float
    reference: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    demo: DemoSettings = field(default_factory=DemoSettings)
    data_path: str | None = None
    train_volumes: int | None = None
    budget: str = "custom"
    executor: dict[str, Any] = field(default_factory=dict)
    source: str = "<experiment>"

    def __post_init__(self) -> None:
        where = self.source
        if not self.methods:
            raise ValueError(f"{where}: 'methods' is missing or empty")
        if not self.seeds:
            raise ValueError(f"{where}: 'seeds' is missing or empty")
        self.seeds = [int(s) for s in self.seeds]
        clash = sorted(DRIVER_KEYS & set(self.train))
        for name, settings in self.methods.items():
            if not isinstance(settings, dict) or "prune" not in settings:
                raise ValueError(f"{where}: methods.{name} must be a mapping with a 'prune' key")
            clash += sorted(DRIVER_KEYS & set(settings))
        if clash:
            raise ValueError(
                f"{where}: {sorted(set(clash))} are set by the experiment driver "
                "(use data_path/density/seeds and --output_dir)"
            )
        bad = set(self.evaluate) - suite_keys()
        if bad:
            raise ValueError(unknown_keys_message(sorted(bad), suite_keys(), f"{where}: evaluate"))
        if self.reference is None:
            self.reference = next(iter(self.methods))
        if self.reference not in self.methods:
            raise ValueError(
                f"{where}: reference {self.reference!r} is not one of the methods "
                f"{list(self.methods)}"
            )
        if not isinstance(self.executor, dict):
            raise ValueError(f"{where}: executor must be a mapping of executor settings")
        self.executor_settings()  # checks the keys and values
        if self.train_volumes is not None and self.train_volumes < 1:
            raise ValueError(f"{where}: train_volumes must be >= 1, got {self.train_volumes}")
        for name in self.methods:
            self._check_controls(name)
        for name in self.methods:  # every method's settings make a valid training config
            self.train_config(name, self.seeds[0], Path("."), Path("."))
        self.check_shifts(self.evaluate.get("shifts", list(DEFAULT_SHIFTS)), "evaluate.shifts")

    def _check_controls(self, name: str) -> None:
        c = self.controls(name)
        where = f"{self.source}: methods.{name}"
        for key in ("dense_from", "match_compute"):
            if key in c and c[key] not in self.methods:
                raise ValueError(
                    f"{where}.{key}: {c[key]!r} is not one of the methods {list(self.methods)}"
                )
        if "match_size" in c and not isinstance(c["match_size"], bool):
            raise ValueError(f"{where}.match_size must be true or false, got {c['match_size']!r}")
        grid = c.get("select_weight_decay")
        if grid is not None and (
            not isinstance(grid, list)
            or not grid
            or not all(isinstance(v, (int, float)) and v >= 0 for v in grid)
        ):
            raise ValueError(
                f"{where}.select_weight_decay must be a non-empty list of values >= 0, got {grid!r}"
            )
        if grid is not None and "weight_decay" in self.methods[name]:
            raise ValueError(f"{where}: give weight_decay or select_weight_decay, not both")

    def check_shifts(self, shifts: list[str], where: str = "--shifts") -> None:
        """Check the names and mask rules of ``shifts`` against the training mask of the
        reference method, before any training.

        Raises:
            ValueError: an unknown shift or a mask rule broken (one line naming ``where``).
        """
        data = self.train_config(self.reference, self.seeds[0], Path("."), Path(".")).data
        try:
            resolve_shifts(
                shifts,
                data.mask_type,
                data.center_fractions[0],
                data.accelerations[0],
                self.evaluate.get("noise_snr_db"),
            )
        except ValueError as err:
            raise ValueError(f"{self.source}: {where}: {err}") from None

    def executor_settings(self) -> ExecutorSettings:
        """The ``executor`` section as :class:`~fastmri_pun.app.executor.ExecutorSettings`.

        Raises:
            ValueError: unknown keys (naming the valid ones) or invalid values.
        """
        valid = {f.name for f in dataclasses.fields(ExecutorSettings)}
        bad = sorted(set(self.executor) - valid)
        if bad:
            raise ValueError(unknown_keys_message(bad, valid, f"{self.source}: executor"))
        try:
            return ExecutorSettings(**self.executor)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.source}: executor: {err}") from None

    def controls(self, method: str) -> dict[str, Any]:
        """The control keys of ``method`` (:data:`CONTROL_KEYS`) with their values."""
        return {k: v for k, v in self.methods[method].items() if k in CONTROL_KEYS}

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Any, source: str = "<experiment>") -> ExperimentConfig:
        """Build from a mapping (a parsed YAML file); ``ValueError`` on unknown keys."""
        if not isinstance(data, dict):
            raise ValueError(f"experiment config {source} must be a mapping")
        valid = {f.name for f in dataclasses.fields(cls)} - {"source"}
        bad = set(data) - valid
        if bad:
            raise ValueError(unknown_keys_message(sorted(bad), valid, source))
        data = dict(data)
        demo = data.pop("demo", None) or {}
        demo_valid = {f.name for f in dataclasses.fields(DemoSettings)}
        if not isinstance(demo, dict) or set(demo) - demo_valid:
            raise ValueError(
                unknown_keys_message(sorted(set(demo) - demo_valid), demo_valid, f"{source}: demo")
            )
        for key in ("methods", "seeds", "density"):
            if data.get(key) in (None, {}, []):
                raise ValueError(f"{source}: '{key}' is missing or empty")
        return cls(
            **{k: v for k, v in data.items() if v is not None or k in ("reference",)},
            demo=DemoSettings(**demo),
            source=str(source),
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> ExperimentConfig:
        """Read an experiment YAML with :func:`~fastmri_pun.app.config_files.load_yaml`
        (``yaml.safe_load``'s loader, python tags refused, with YAML 1.2 floats: ``1e-3`` is a
        number, as for ``--config``).

        Raises:
            FileNotFoundError: no such file.
            ValueError: an empty path or not a regular file (a folder, a device, a FIFO), not
                YAML, not a mapping, unknown keys, invalid settings.
        """
        return cls.from_dict(read_experiment_yaml(path, "experiment config"), str(path))

    # ------------------------------------------------------------------ derived configs
    def run_name(self, method: str, seed: int) -> str:
        """``method`` with one seed, ``method-s<seed>`` with several."""
        return method if len(self.seeds) == 1 else f"{method}-s{seed}"

    def train_config(
        self, method: str, seed: int, data_path: Path, output_dir: Path, **extra: Any
    ) -> TrainConfig:
        """The training configuration of one run (shared settings, the method's, the driver's)."""
        own = {k: v for k, v in self.methods[method].items() if k not in CONTROL_KEYS}
        flat = {
            **self.train,
            **own,
            **extra,
            "data_path": str(data_path),
            "output_dir": str(output_dir),
            "seed": int(seed),
            "density": float(self.density),
        }
        try:
            return TrainConfig.from_flat(flat)
        except ValueError as err:
            raise ValueError(f"{self.source}: methods.{method} / train: {err}") from err

    def suite_config(self, data_path: Path, output_dir: Path, reference: str, seed: int,
                     **extra: Any) -> SuiteConfig:  # fmt: skip
        """The evaluation configuration: the training mask of the shared settings, the
        ``evaluate`` section, the driver's folders, reference run and seed."""
        data = self.train_config(self.reference, self.seeds[0], data_path, output_dir).data
        return SuiteConfig(
            data_path=Path(data_path),
            output_dir=Path(output_dir),
            reference=reference,
            seed=seed,
            mask_type=data.mask_type,
            center_fractions=data.center_fractions[:1],
            accelerations=data.accelerations[:1],
            crop_readout=data.crop_readout,
            maps_cache_dir=data.maps_cache_dir,
            **{**self.evaluate, **extra},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``experiment.yaml``)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


def read_experiment_yaml(path: str | os.PathLike, kind: str) -> Any:
    """The parsed YAML of an experiment file (``{}`` when empty), read with
    :func:`~fastmri_pun.app.config_files.load_yaml`; ``kind`` names the file in messages.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty path, not a regular file, not YAML.
    """
    if not check_regular_file(path, kind):
        raise FileNotFoundError(f"{kind} {path} does not exist")
    path = Path(path)
    try:
        return load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise ValueError(f"{kind} {path} is not plain YAML: {first}") from err


#: a shipped config's path by name (``"paper_small"``): the application's lookup, under the name
#: the experiment's documentation uses
packaged_config = shipped_config
