"""Continuing an unfinished training run: only with the settings it was started with.

A continued run restores its checkpoint: the optimiser's state (its learning rate among it), the
epoch, the pruning masks and the data order all come from there. New values of the settings that
shaped them would be written into ``config.yaml`` and ``DONE.json`` without taking effect, so a
run that would be continued with other such settings is refused in one line listing them. What
may change (:data:`MAY_CHANGE`) is how long the run goes on, where and how fast it runs and how
it reports; and the model settings that change only how it computes (``runtime_only``).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from ...models import model_settings
from ..run_folder import RunDir
from .config import TrainConfig

__all__ = ["MAY_CHANGE", "check_continuation"]

#: settings a continued run may give new values: the length of the training, the machine and
#: its parallelism, the reporting, the data's location, and how the run is resumed
MAY_CHANGE = frozenset(
    {
        "mode",
        "resume",
        "output_dir",
        "max_epochs",
        "max_train_samples",
        "early_stopping_patience",
        "early_stopping_min_delta",
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "num_workers",
        "log_every_n_steps",
        "num_log_images",
        "enable_progress_bar",
        "deterministic",
        "float32_matmul_precision",
        "data_path",
        "test_path",
        "maps_cache_dir",
    }
)


def _normalised(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with the defaults of the flags it lacks, as JSON values (tuples → lists)."""
    try:
        full = TrainConfig.from_flat(flat).to_flat()
    except ValueError:  # written by another version: compare what was recorded
        full = dict(flat)
    return json.loads(json.dumps(full, default=str))


def check_continuation(cfg: TrainConfig) -> None:
    """Refuse to continue the unfinished run in ``cfg.run.output_dir`` with other settings.

    Compares ``cfg`` with the run's ``config.yaml`` (written when it started); a folder without
    one (a run of an older version, or a fresh folder) is not checked.

    Raises:
        ValueError: one line listing the settings (old → new) that would not take effect.
    """
    run = RunDir(cfg.run.output_dir)
    if not run.config.is_file():
        return
    try:
        recorded = yaml.safe_load(run.config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(
            f"{run.config}: unreadable run configuration ({type(err).__name__}); restore it or "
            "choose another --output_dir"
        ) from err
    if not isinstance(recorded, dict):
        raise ValueError(f"{run.config}: not a run configuration (no mapping of flags)")
    old, new = _normalised(recorded), _normalised(cfg.to_flat())
    allowed = MAY_CHANGE | set(model_settings(cfg.model.model).runtime_only)
    changed = sorted(
        k for k in set(old) | set(new) if k not in allowed and old.get(k) != new.get(k)
    )
    if changed:
        listed = ", ".join(f"--{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(
            f"--output_dir {run.root} holds an unfinished run started with other settings "
            f"({listed}); its checkpoint (optimiser state, masks, data order) would keep the old "
            f"ones: continue it with its own settings ({run.config}), or choose another "
            "--output_dir to train afresh"
        )
