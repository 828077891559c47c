"""The names inside an output folder, in one place.

Every command writes into one folder (``--output_dir``) and every other command finds things
there by these names only. A training run::

    config.yaml                  resolved configuration (loadable with --config)
    checkpoints/best.ckpt        best validation SSIM
    checkpoints/last.ckpt        latest epoch (training continues from it)
    checkpoints/masks.pt         pruning masks found before the sparse training (a rerun reuses)
    compute_accounting.json      passes and wall time per training phase
    density_report.json          per-layer kept fraction (pruned runs)
    metrics.md, metrics.csv      NMSE / SSIM / PSNR per split, next to zero-filled
    reconstructions/*.h5         test reconstructions (fastMRI's layout)
    figures/test_example.png     target / reconstruction / error of one test slice
    logs/{tensorboard,csv,phases}/

An evaluation (``evaluate``)::

    results.csv                  one row per model, shift and image
    summary.md, summary.csv      mean ± std, median per model and shift
    differences.csv              paired differences to the reference model
    partial/<model>__<shift>.*   finished model × shift pairs (reused by a rerun)
    figures/*.png

An experiment (``paper``)::

    experiment.yaml, REPORT.md, differences_pooled.csv
    runs/<run>/                  one training run each (the layout above) + DONE.json
    eval/                        one evaluation (the layout above)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    """Paths of an output folder (nothing is created until a writer needs it).

    Args:
        root: the folder (``--output_dir``).
    """

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDir | None:
        """The training run folder a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` → ``RUN``),
        or ``None`` for a checkpoint outside such a folder."""
        path = Path(checkpoint)
        return cls(path.parent.parent) if path.parent.name == "checkpoints" else None

    # ------------------------------------------------------------------ training run
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def search_masks(self) -> Path:
        """``checkpoints/masks.pt``: the pruning masks (and their method, density, seed), saved
        once found, before the sparse training; a rerun loads them instead of searching."""
        return self.checkpoints / "masks.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def compute_accounting(self) -> Path:
        return self.root / "compute_accounting.json"

    @property
    def density_report(self) -> Path:
        return self.root / "density_report.json"

    @property
    def metrics_md(self) -> Path:
        return self.root / "metrics.md"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def reconstructions(self) -> Path:
        return self.root / "reconstructions"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def test_example_figure(self) -> Path:
        return self.figures / "test_example.png"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def phase_logs(self) -> Path:
        return self.logs / "phases"

    @property
    def done(self) -> Path:
        """``DONE.json``: written last by a driver once the run finished (``paper``)."""
        return self.root / "DONE.json"

    # ------------------------------------------------------------------ evaluation
    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def differences_csv(self) -> Path:
        return self.root / "differences.csv"

    @property
    def partial(self) -> Path:
        return self.root / "partial"

    def partial_results(self, model: str, shift: str) -> tuple[Path, Path]:
        """``(rows CSV, fingerprint JSON)`` of one finished model × shift pair."""
        base = self.partial / f"{model}__{shift}"
        return base.with_suffix(".csv"), base.with_suffix(".json")

    # ------------------------------------------------------------------ experiment
    @property
    def experiment_config(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def report_md(self) -> Path:
        return self.root / "REPORT.md"

    @property
    def differences_pooled_csv(self) -> Path:
        return self.root / "differences_pooled.csv"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> RunDir:
        """The training run ``runs/<name>`` of an experiment."""
        return RunDir(self.runs / name)

    @property
    def evaluation(self) -> RunDir:
        """The evaluation folder ``eval/`` of an experiment."""
        return RunDir(self.root / "eval")
