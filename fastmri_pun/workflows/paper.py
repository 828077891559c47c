"""The PUN paper's comparison as one resumable workflow: train every method × seed, evaluate
every shift, write ``REPORT.md``.

    from fastmri_pun.workflows.paper import run_paper
    from fastmri_pun.workflows.experiment_config import ExperimentConfig, packaged_config
    run_paper(ExperimentConfig.from_yaml(packaged_config("paper_small")), Path("outputs/paper"))

Trainings run in this process through :func:`fastmri_pun.workflows.train.fit`, the evaluation
through :func:`fastmri_pun.workflows.evaluate.evaluate`. Resumable: a run is finished when its
``DONE.json`` names an existing checkpoint; finished runs are skipped, an unfinished run folder
is removed and trained again, and the evaluation reuses the model × shift pairs it already
scored. The output folder's names are those of :class:`fastmri_pun.utils.RunDir`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..demo import ensure_demo_dataset
from ..pruning import density_report
from ..training import ReconstructionModule
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.run_dir import RunDir
from .evaluate import SuiteResult, evaluate
from .experiment_config import ExperimentConfig
from .paper_report import write_report
from .run_outputs import read_compute
from .train import fit

__all__ = ["PaperResult", "run_paper", "training_subset"]


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


def _finished(run: RunDir) -> dict[str, Any] | None:
    try:
        done = json.loads(run.done.read_text())
    except (OSError, ValueError):
        return None
    return done if Path(done.get("checkpoint", "")).is_file() else None


def train_run(exp: ExperimentConfig, method: str, seed: int, data_path: Path, run: RunDir,
              progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train one method/seed unless its ``DONE.json`` says it is finished; returns the record
    (checkpoint, settings, wall time, density report, compute phases).

    Raises:
        KeyboardInterrupt: the training was interrupted (Ctrl-C); the run folder stays
            unfinished (no ``DONE.json``) and is trained again by the next call.
    """
    done = _finished(run)
    if done is not None:
        print(f"[paper] {run.root.name}: finished earlier, skipped")
        return done
    if run.root.exists():
        print(f"[paper] {run.root.name}: unfinished run folder found, restarting it")
        shutil.rmtree(run.root)
    cfg = exp.train_config(method, seed, data_path, run.root, enable_progress_bar=progress)
    print(f"[paper] training {run.root.name} ({method}, seed {seed})")
    start = time.perf_counter()
    result = fit(cfg)
    wall = time.perf_counter() - start
    if result.interrupted or result.best_checkpoint is None:
        raise KeyboardInterrupt(f"training of {run.root.name} was interrupted")
    checkpoint = Path(result.best_checkpoint).resolve()
    record = {
        "checkpoint": str(checkpoint),
        "method": method,
        "seed": seed,
        "config": cfg.to_flat(),
        "wall_time_s": wall,
        "density": density_report(ReconstructionModule.load_checkpoint(checkpoint).model),
        "compute": read_compute(run) or [],
    }
    atomic_write_json(run.done, record)
    return record


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
) -> PaperResult:
    """Train every run (skipping finished ones), evaluate them, write the report.

    Args:
        exp: the experiment.
        output_dir: its folder (layout of :class:`fastmri_pun.utils.RunDir`).
        seed: seed of the demo data, the evaluation noise and the bootstrap (training seeds
            are ``exp.seeds``).
        methods: a subset of ``exp.methods`` (must include the reference).
        shifts: shifts to evaluate instead of ``exp.evaluate["shifts"]``.
        progress: progress bars.

    Raises:
        ValueError: unknown methods, the reference left out, invalid settings.
        FileNotFoundError: missing data.
    """
    out = RunDir(output_dir)
    methods = list(methods or exp.methods)
    unknown = [m for m in methods if m not in exp.methods]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; this config has {list(exp.methods)}")
    if exp.reference not in methods:
        raise ValueError(f"the reference {exp.reference!r} must be among --methods {methods}")
    out.root.mkdir(parents=True, exist_ok=True)
    data_path = resolve_data(exp, out, seed, progress)
    atomic_write_text(
        out.experiment_config,
        yaml.safe_dump(
            {**exp.to_dict(), "data_path": str(data_path), "driver_seed": seed}, sort_keys=False
        ),
    )
    runs: dict[str, tuple[str, int]] = {}
    records: dict[str, dict[str, Any]] = {}
    for method in methods:
        for s in exp.seeds:
            name = exp.run_name(method, s)
            records[name] = train_run(exp, method, s, data_path, out.run(name), progress)
            runs[name] = (method, s)
    reference_run = next(n for n, (m, _) in runs.items() if m == exp.reference)
    extra = {"shifts": list(shifts)} if shifts else {}
    suite_cfg = exp.suite_config(
        data_path, out.evaluation.root, reference_run, seed, enable_progress_bar=progress, **extra
    )
    suite = evaluate({n: Path(r["checkpoint"]) for n, r in records.items()}, suite_cfg)
    report = write_report(out, exp, data_path, records, runs, suite, suite_cfg)
    print(f"[paper] report: {report}")
    return PaperResult(report, records, suite, data_path)
