"""Compute cost of obtaining a sparse MoDL: PUN-IT vs PUN-AT vs IMP, side by side on the demo set.

Run from the repository root (writes ``benchmarks/results/prune_cost.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_prune_cost.py [--max_epochs 1] [--search_steps 12] [--imp_rounds 5]

Every method trains through the training workflow (``fastmri_pun.app.train.run.fit``) with the
same data, model and per-phase training budget (``--max_epochs``); each phase's forward/backward
passes and wall time come from the run's ``RunDir.compute_accounting`` records
(:class:`~fastmri_pun.training.accounting.ComputeAccounting`). Costs counted:

* PUN-IT: mask search on w0 + one sparse training;
* PUN-AT: dense training + mask search on the trained weights + sparse fine-tuning;
* IMP:    ``imp_rounds`` × (training + magnitude pruning + rewind) + the final sparse training.

Targets: PUN-IT ≤ 0.6× PUN-AT and ≤ 0.2× IMP with 5 rounds, in backward passes and wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from common import (
    RESULTS_DIR,
    add_device_argument,
    command_line,
    load_average,
    machine_description,
    table,
    target,
    write_results,
)

from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.app.train.run import TrainConfig, fit

RESULTS_FILE = "prune_cost.json"
METHODS = ("pun-it", "pun-at", "imp")
TARGETS = (("PUN-IT / PUN-AT", "pun-at", 0.6), ("PUN-IT / IMP", "imp", 0.2))
NOTES = [
    "Demo set with the training workflow's default data and model. Passes are per sample: a "
    "training step counts one forward and one backward, validation one forward; wall time "
    "includes validation inside each phase.",
    "The ESPIRiT map cache is filled before the measured runs, so no method pays for coil-map "
    "estimation.",
    "With a search of S steps and trainings of T steps, PUN-IT costs S + T, PUN-AT 2T + S and "
    "IMP (R rounds) (R + 1)T; a search step runs the full network forward and backward "
    "(gradients flow to the mask logits), so it costs about a training step.",
]


def train_config(method: str, output_dir: Path, args: argparse.Namespace) -> TrainConfig:
    """The training configuration of one method (the workflow's defaults for everything else)."""
    flat: dict[str, Any] = {
        "prune": method,
        "max_epochs": args.max_epochs,
        "search_steps": args.search_steps,
        "imp_rounds": args.imp_rounds,
        "seed": args.seed,
        "output_dir": str(output_dir),
        "enable_progress_bar": False,
        "num_log_images": 0,
        "accelerator": "gpu" if args.device.type == "cuda" else "cpu",
    }
    for key in ("density", "sample_rate"):  # the workflow's default unless given
        if getattr(args, key) is not None:
            flat[key] = getattr(args, key)
    return TrainConfig.from_flat(flat)


def run_method(cfg: TrainConfig) -> list[dict]:
    """Train one configuration; return its compute-accounting records (one per phase).

    Raises:
        RuntimeError: the training was interrupted (no best checkpoint).
    """
    result = fit(cfg)
    if result.best_checkpoint is None:
        raise RuntimeError(f"training into {result.output_dir} was interrupted")
    return json.loads(RunDir(result.output_dir).compute_accounting.read_text())


def totals(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum forward/backward passes and wall time over a method's phases."""
    train_samples = sum(r["train_samples"] for r in records)
    val_samples = sum(r["val_samples"] for r in records)
    return {
        "phases": " + ".join(r["phase"] for r in records),
        "forward": train_samples + val_samples,
        "backward": train_samples,
        "wall_s": sum(r["wall_time_s"] for r in records),
    }


def build_results(results: Mapping[str, Mapping[str, Any]]) -> dict:
    """Targets and table for the :func:`totals` of each method in :data:`METHODS`."""
    it = results["pun-it"]
    targets = []
    for name, ref, bound in TARGETS:
        backward = it["backward"] / results[ref]["backward"]
        wall = it["wall_s"] / results[ref]["wall_s"]
        targets.append(target(f"{name}: backward passes", backward, "<=", bound))
        targets.append(target(f"{name}: wall time", wall, "<=", bound))
    keys = ("phases", "forward", "backward", "wall_s")
    rows = [[m, *(results[m][k] for k in keys)] for m in METHODS]
    tab = table(
        "Compute per method",
        ["method", "phases", "forward passes", "backward passes", "wall time s"],
        rows,
        ["", "", "", "", ".1f"],
        "llrrr",
    )
    return {"targets": targets, "tables": [tab]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max_epochs", type=int, default=1, help="epochs per training phase")
    parser.add_argument("--search_steps", type=int, default=12, help="PUN mask-search steps")
    parser.add_argument("--imp_rounds", type=int, default=5, help="IMP rounds")
    parser.add_argument(
        "--density", type=float, default=None, help="kept fraction (default: training's)"
    )
    parser.add_argument("--sample_rate", type=float, default=None, help="fraction of train data")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: stable on a shared machine, where 2 threads spin-wait)",
    )
    parser.add_argument(
        "--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file"
    )
    add_device_argument(parser)
    args = parser.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark; returns the written JSON file."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_prune_cost_") as tmp:
        # one dense epoch with the same data settings fills the ESPIRiT map cache
        run_method(train_config("none", Path(tmp) / "warm-up", args))
        machine = machine_description()
        configs = {m: train_config(m, Path(tmp) / m, args) for m in METHODS}
        results = {m: totals(run_method(cfg)) for m, cfg in configs.items()}
    machine["load average at end"] = load_average()
    settings = {k: v for k, v in vars(args).items() if k != "output_dir"}
    settings["device"] = str(args.device)
    command = command_line("benchmarks/bench_prune_cost.py", settings)
    settings["density"] = configs["pun-it"].to_flat()["density"]
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="Pruning compute",
        command=command,
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(results),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
