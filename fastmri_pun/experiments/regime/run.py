"""Running the regime map: every cell's trainings in one schedule (a run starts when its
dependencies are finished, ``jobs`` at once, on the executor), then each cell's evaluation as
model × shift shards, then one combined ``results.csv`` and the report
(:mod:`fastmri_pun.experiments.regime.report`).

Output folder (names of :class:`~fastmri_pun.app.run_folder.RunDir`)::

    experiment.yaml            the regime config as run (with the data root)
    data_train<V>/             views of the data root with V training volumes (symbolic links)
    runs/<cell>/<run>/         one training run (the paper's runs/<run>/ layout, DONE.json)
    eval/<cell>/               one evaluation per cell (the evaluate command's layout)
    results.csv                every per-image row of every cell, with the cell's columns

Resumable like the paper experiment: finished runs and scored model × shift pairs are reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import pandas as pd
import yaml

from ...app.evaluate.shards import evaluate_sharded
from ...app.executor import Executor, ExecutorSettings, make_executor
from ...app.folder_owner import FolderOwner, remove_if_unused
from ...app.run_folder import RunDir
from ...utils.io import atomic_write_text
from ..paper.plan import RunPlan, plan_runs, prunable_weight_count
from ..paper.run import resolve_data
from ..paper.scheduler import train_runs
from .config import Cell, RegimeConfig

__all__ = ["RegimeResult", "run_regime", "training_set_size"]

#: columns the runner adds to the evaluation's per-image rows
CELL_COLUMNS = ("cell", "chans", "train_slices", "method", "train_seed", "density",
                "prunable_weights", "pixels_per_slice")  # fmt: skip


@dataclass
class RegimeResult:
    """What :func:`run_regime` produced.

    Attributes:
        results: every per-image row with :data:`CELL_COLUMNS` (``results.csv``).
        results_csv: its path.
        records: run name (``<cell>/<run>``) → its ``DONE.json`` record.
        report: ``REPORT.md`` (``None`` when no report was asked for).
    """

    results: pd.DataFrame
    results_csv: Path
    records: dict[str, dict[str, Any]]
    report: Path | None = None


def training_set_size(data_path: Path) -> tuple[int, int]:
    """``(slices, pixels per slice)`` of ``data_path/multicoil_train``: k-space slices of every
    file, and H×W of the first file's ``reconstruction_rss`` (else of its k-space).

    Raises:
        FileNotFoundError: no training file.
    """
    files = sorted((data_path / "multicoil_train").glob("*.h5"))
    if not files:
        raise FileNotFoundError(f"no training files in {data_path / 'multicoil_train'}")
    slices, pixels = 0, 0
    for i, path in enumerate(files):
        with h5py.File(path, "r") as f:
            slices += int(f["kspace"].shape[0])
            if i == 0:
                image = f["reconstruction_rss"] if "reconstruction_rss" in f else f["kspace"]
                pixels = int(image.shape[-2] * image.shape[-1])
    return slices, pixels


def _prefixed(plans: list[RunPlan], cell: Cell, data_path: Path, exp: Any) -> list[RunPlan]:
    """``plans`` of one cell renamed ``<cell>/<run>``, their controls reading the cell's own
    records, trained with the cell's experiment and data."""
    prefix = f"{cell.name}/"

    def own(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k[len(prefix) :]: v for k, v in records.items() if k.startswith(prefix)}

    out = []
    for p in plans:
        select = p.select
        out.append(
            RunPlan(
                prefix + p.name,
                p.method,
                p.seed,
                [prefix + d for d in p.deps],
                lambda records, f=p.overrides: f(own(records)),
                prefix + p.stands_for if p.stands_for is not None else None,
                (lambda records, f=select: f(own(records))) if select is not None else None,
                experiment=exp,
                data_path=data_path,
            )
        )
    return out


def run_regime(
    cfg: RegimeConfig,
    output_dir: Path,
    seed: int = 0,
    progress: bool = True,
    jobs: int | None = None,
    executor: ExecutorSettings | None = None,
    report_dir: Path | None = None,
) -> RegimeResult:
    """Train and evaluate every cell, write ``results.csv`` and (``report_dir``) the report.

    Args:
        cfg: the regime map.
        output_dir: its folder (module docstring).
        seed: seed of the demo data, the evaluation noise and the bootstrap.
        progress: progress bars (in this process).
        jobs: trainings and evaluation shards at once (as the paper's ``jobs``).
        executor: where the jobs run (default: the config's ``executor`` section).
        report_dir: where ``REPORT.md``, its figures and tables go (default: ``output_dir``).

    Raises:
        ValueError: invalid settings; JobFailedError: a training or shard failed (one line
            naming its log); FileNotFoundError: missing data.
    """
    out = RunDir(output_dir)
    settings = executor if executor is not None else cfg.base.executor_settings()
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    runner = make_executor(settings, out.root, (jobs or 1) if settings.executor == "local" else 1)
    created = not out.root.exists()
    out.root.mkdir(parents=True, exist_ok=True)
    try:
        with FolderOwner(out.root, "regime experiment"):
            return _run_owned(cfg, out, seed, progress, runner, jobs, report_dir or out.root)
    except BaseException:
        runner.close(cancel=True)
        if created:
            remove_if_unused(out.root)
        raise
    finally:
        runner.close()


def _run_owned(
    cfg: RegimeConfig,
    out: RunDir,
    seed: int,
    progress: bool,
    executor: Executor,
    jobs: int | None,
    report_dir: Path,
) -> RegimeResult:
    cells = cfg.cells()
    data = {c.name: resolve_data(c.experiment, out, seed, progress) for c in cells}
    atomic_write_text(
        out.experiment_config,
        yaml.safe_dump({**cfg.to_dict(), "driver_seed": seed, "jobs": jobs,
                        "executor": dataclasses.asdict(executor.settings)}, sort_keys=False),
    )  # fmt: skip
    plans: list[RunPlan] = []
    for c in cells:
        methods = list(c.experiment.methods)
        plans += _prefixed(plan_runs(c.experiment, methods), c, data[c.name], c.experiment)
    sweep = cfg.sweep_cell()
    sweeps: dict[str, float] = {}  # sweep run → its density
    for density in cfg.density_sweep if sweep is not None else []:
        if density == cfg.base.density:
            continue  # the cell's own run of the method
        exp = cfg.sweep_experiment(density)
        for p in _prefixed(plan_runs(exp, list(exp.methods)), sweep, data[sweep.name], exp):
            sweeps[p.name] = density
            plans.append(p)
    records, evaluated = train_runs(cfg.base, plans, data[cells[0].name], out, executor, jobs,
                                    progress)  # fmt: skip
    frames = []
    for c in cells:
        runs = {n.split("/", 1)[1]: r for n, r in evaluated.items() if n.startswith(c.name + "/")}
        reference = next(n for n, r in runs.items() if records[r]["method"] == cfg.base.reference)
        suite_cfg = c.experiment.suite_config(
            data[c.name], out.evaluation.root / c.name, reference, seed,
            enable_progress_bar=progress,
        )  # fmt: skip
        checkpoints = {n: Path(records[r]["checkpoint"]) for n, r in runs.items()}
        suite = evaluate_sharded(checkpoints, suite_cfg, executor)
        slices, pixels = training_set_size(data[c.name])
        weights = prunable_weight_count(c.experiment, cfg.base.reference)
        df = suite.results.copy()
        run_of = df["model"].map(runs)
        df["cell"], df["chans"], df["train_slices"] = c.name, c.chans, slices
        df["method"] = [
            f"{cfg.sweep_method}@{sweeps[r]:g}" if r in sweeps else records[r]["method"]
            for r in run_of
        ]
        df["train_seed"] = [int(records[r]["seed"]) for r in run_of]
        df["density"] = [float(records[r]["density"]["density"]) for r in run_of]
        df["prunable_weights"], df["pixels_per_slice"] = weights, pixels
        frames.append(df)
    results = pd.concat(frames, ignore_index=True)
    results_csv = report_dir / "results.csv"
    atomic_write_text(results_csv, results.to_csv(index=False))
    report = _write_report(cfg, results, report_dir, seed, jobs, executor, sweep)
    print(f"[regime] results: {results_csv}" + (f"; report: {report}" if report else ""))
    return RegimeResult(results, results_csv, records, report)


def _write_report(
    cfg: RegimeConfig,
    results: pd.DataFrame,
    report_dir: Path,
    seed: int,
    jobs: int | None,
    executor: Executor,
    sweep: Cell | None,
) -> Path | None:
    """The report of :mod:`.report` (its figures and tables beside it)."""
    from .report import write_regime_report

    summary = _config_summary(cfg, results, seed, jobs, executor)
    return write_regime_report(report_dir, results, summary, sweep_cell=sweep.name if sweep else None,
                               n_boot=int(cfg.base.evaluate.get("n_boot", 10000)), seed=seed)  # fmt: skip


def _config_summary(
    cfg: RegimeConfig, results: pd.DataFrame, seed: int, jobs: int | None, executor: Executor
) -> dict[str, Any]:
    """The setup lines of the report: what was varied and what was fixed."""
    train = cfg.base.train
    sizes = sorted(set(results["train_slices"]))
    return {
        "denoiser widths (chans)": ", ".join(str(c) for c in cfg.chans),
        "training slices": ", ".join(str(s) for s in sizes),
        "methods": ", ".join(cfg.base.methods),
        "seeds": ", ".join(str(s) for s in cfg.base.seeds),
        "density of the pruned methods": f"{cfg.base.density:g}",
        "density sweep": ", ".join(f"{d:g}" for d in cfg.density_sweep) or "none",
        "image size": f"{int(results['pixels_per_slice'].iloc[0] ** 0.5)} px square"
        if len(results)
        else "n/a",
        "model": f"MoDL, {train.get('num_unrolls')} unrolls, {train.get('num_cg_iters')} CG "
        f"iterations, {train.get('num_layers')}-layer denoiser",
        "training mask": f"{train.get('mask_type')}, {train.get('accelerations')}x, centre "
        f"fraction {train.get('center_fractions')}",
        "shifts": ", ".join(cfg.base.evaluate.get("shifts", [])),
        "bootstrap": f"{cfg.base.evaluate.get('n_boot', 10000)} resamples, seeds then images",
        "driver seed": seed,
        "executor": f"{executor.kind}" + (f", --jobs {jobs}" if jobs else ""),
    }
