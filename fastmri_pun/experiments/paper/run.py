"""The PUN paper's comparison as one resumable workflow: train every method × seed, evaluate
every shift, write ``REPORT.md``.

    from fastmri_pun.experiments.paper.run import run_paper
    from fastmri_pun.experiments.paper.config import ExperimentConfig, packaged_config
    run_paper(ExperimentConfig.from_yaml(packaged_config("paper_small")), Path("outputs/paper"))

Trainings run through :func:`fastmri_pun.app.train.run.fit`, planned and scheduled by
:mod:`fastmri_pun.experiments.paper.plan` and :mod:`fastmri_pun.experiments.paper.scheduler`
(controls resolved from other runs), each a job of the executor
(:mod:`fastmri_pun.app.executor`: this process, ``jobs`` local worker processes, or SLURM jobs
through submitit); the evaluation as model × shift shards of the same executor
(:func:`fastmri_pun.app.evaluate.shards.evaluate_sharded`). Resumable: a run is finished
when its ``DONE.json`` names an existing checkpoint; finished runs are skipped, an unfinished run
folder is removed and trained again, and the evaluation reuses the model × shift pairs it
already scored. The output folder's names are those of :class:`fastmri_pun.utils.RunDir`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...app.evaluate.shards import evaluate_sharded
from ...app.evaluate.suite import SuiteResult
from ...app.executor import Executor, ExecutorSettings, make_executor
from ...app.folder_owner import FolderOwner, remove_if_unused
from ...app.run_folder import RunDir
from ...demo import ensure_demo_dataset
from ...utils.io import atomic_write_text
from .config import ExperimentConfig
from .learning_curves import learning_curves
from .plan import plan_runs
from .report import write_report
from .scheduler import train_runs

__all__ = ["PaperResult", "resolve_data", "run_paper", "training_subset"]


@dataclass
class PaperResult:
    """What :func:`run_paper` produced.

    Attributes:
        report: path of ``REPORT.md``.
        records: run name → its ``DONE.json`` record (checkpoint, settings, wall time,
            density report, compute phases).
        suite: the evaluation's result.
        data_path: the data root the runs trained on.
    """

    report: Path
    records: dict[str, dict[str, Any]]
    suite: SuiteResult
    data_path: Path


def training_subset(data_path: Path, out: Path, train_volumes: int | None) -> Path:
    """``data_path`` itself, or (``train_volumes`` given) a view of it in ``out`` whose
    ``multicoil_train/`` holds only that many training volumes (evenly spaced in sorted order;
    symbolic links, nothing copied). Few training slices put the dense model in the
    over-parameterised regime of the paper, and the ``train`` shift then scores exactly the
    slices trained on.

    Raises:
        ValueError: ``train_volumes`` outside ``1..number of training volumes``.
    """
    if train_volumes is None:
        return data_path
    files = sorted((data_path / "multicoil_train").glob("*.h5"))
    if not 1 <= train_volumes <= len(files):
        raise ValueError(
            f"train_volumes must be in 1..{len(files)} for {data_path}, got {train_volumes}"
        )
    keep = [files[round(i)] for i in np.linspace(0, len(files) - 1, train_volumes)]
    view = out / f"data_train{train_volumes}"
    (view / "multicoil_train").mkdir(parents=True, exist_ok=True)
    for f in keep:
        link = view / "multicoil_train" / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    for entry in data_path.iterdir():
        link = view / entry.name
        if entry.name != "multicoil_train" and not link.exists():
            link.symlink_to(entry.resolve())
    return view


def resolve_data(exp: ExperimentConfig, out: RunDir, seed: int, progress: bool = True) -> Path:
    """The data root of the experiment: ``data_path`` or the demo set (built if absent),
    narrowed to ``train_volumes`` training volumes.

    Raises:
        FileNotFoundError: ``data_path`` does not exist.
    """
    if exp.data_path:
        data_path = Path(exp.data_path)
        if not data_path.is_dir():
            raise FileNotFoundError(f"data_path {data_path} does not exist")
    else:
        d = exp.demo
        data_path = Path(
            ensure_demo_dataset(
                d.root, d.size, d.coils, seed if d.seed is None else d.seed, d.layout, progress
            )
        )
    return training_subset(data_path, out.root, exp.train_volumes)


def run_paper(
    exp: ExperimentConfig,
    output_dir: Path,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    progress: bool = True,
    jobs: int | None = None,
    executor: ExecutorSettings | None = None,
) -> PaperResult:
    """Train every run (skipping finished ones), evaluate them, write the report.

    Args:
        exp: the experiment.
        output_dir: its folder (layout of :class:`fastmri_pun.utils.RunDir`).
        seed: seed of the demo data, the evaluation noise and the bootstrap (training seeds
            are ``exp.seeds``).
        methods: a subset of ``exp.methods`` (must include the reference and every method a
            control names).
        shifts: shifts to evaluate instead of ``exp.evaluate["shifts"]``.
        progress: progress bars (in this process; jobs elsewhere run without).
        jobs: trainings (and evaluation shards) run at once. Local executor: that many worker
            processes with ``cpus_per_task`` torch threads each; ``None`` or 1: everything in
            this process. SLURM: at most that many jobs queued or running; ``None``: every run
            whose dependencies are finished.
        executor: where the jobs run (default: ``exp.executor``'s settings, else local).

    Raises:
        ValueError: unknown methods, the reference or a control's method left out, invalid
            settings, ``--executor slurm`` without submitit or ``srun``.
        FileNotFoundError: missing data.
        JobFailedError: a run or an evaluation shard failed (one line naming its job and log).
    """
    out = RunDir(output_dir)
    methods = list(methods or exp.methods)
    unknown = [m for m in methods if m not in exp.methods]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; this config has {list(exp.methods)}")
    if exp.reference not in methods:
        raise ValueError(f"the reference {exp.reference!r} must be among --methods {methods}")
    plans = plan_runs(exp, methods)  # control errors before any data work
    if shifts:
        exp.check_shifts(list(shifts))  # before any training, as the YAML's shifts are
    settings = executor if executor is not None else exp.executor_settings()
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    workers = (jobs or 1) if settings.executor == "local" else 1
    runner = make_executor(settings, out.root, workers)  # submitit and srun checked first
    created = not out.root.exists()
    out.root.mkdir(parents=True, exist_ok=True)
    try:
        # one driver per experiment folder (a second one would retrain or delete its runs)
        with FolderOwner(out.root, "paper experiment"):
            return _run_owned(exp, out, plans, methods, seed, progress, runner, jobs, shifts)
    except BaseException:
        runner.close(cancel=True)
        if created:  # failed before writing anything: no folder left behind
            remove_if_unused(out.root)
        raise
    finally:
        runner.close()


def _run_owned(
    exp: ExperimentConfig,
    out: RunDir,
    plans: list[Any],
    methods: list[str],
    seed: int,
    progress: bool,
    executor: Executor,
    jobs: int | None,
    shifts: Sequence[str] | None,
) -> PaperResult:
    """The experiment of :func:`run_paper`, its folder owned."""
    data_path = resolve_data(exp, out, seed, progress)
    atomic_write_text(
        out.experiment_config,
        yaml.safe_dump(
            {
                **exp.to_dict(),
                "data_path": str(data_path),
                "driver_seed": seed,
                "jobs": jobs,
                "executor": dataclasses.asdict(executor.settings),
            },
            sort_keys=False,
        ),
    )
    all_records, evaluated = train_runs(exp, plans, data_path, out, executor, jobs, progress)
    records = {name: all_records[run] for name, run in evaluated.items()}
    runs = {name: (r["method"], int(r["seed"])) for name, r in records.items()}
    reference_run = next(n for n, (m, _) in runs.items() if m == exp.reference)
    extra = {"shifts": list(shifts)} if shifts else {}
    suite_cfg = exp.suite_config(
        data_path, out.evaluation.root, reference_run, seed, enable_progress_bar=progress, **extra
    )
    suite = evaluate_sharded(
        {n: Path(r["checkpoint"]) for n, r in records.items()}, suite_cfg, executor
    )
    curves = learning_curves(
        {run: (all_records[run]["method"], int(all_records[run]["seed"]), out.run(run))
         for run in evaluated.values()}
    )  # fmt: skip
    report = write_report(
        out, exp, data_path, records, runs, suite, suite_cfg, curves, all_records, evaluated
    )
    print(f"[paper] report: {report}")
    return PaperResult(report, records, suite, data_path)
