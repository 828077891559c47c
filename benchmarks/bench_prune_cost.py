"""Compute cost of obtaining a sparse MoDL: PUN-IT vs PUN-AT vs IMP, side by side on the demo set.

Run from the repository root (writes the ``## Pruning compute`` section of
``benchmarks/RESULTS.md``)::

    python benchmarks/bench_prune_cost.py [--max_epochs 1] [--search_steps 12] [--imp_rounds 5]

Every method runs through the real training CLI (``fastmri_pun.train.main``) with the same data,
model and per-phase training budget (``--max_epochs``); each phase's forward/backward passes and
wall time come from the ``compute_accounting.json`` that
:class:`~fastmri_pun.training.ComputeAccounting` writes. Costs counted:

* PUN-IT: mask search on w0 + one sparse training;
* PUN-AT: dense training + mask search on the trained weights + sparse fine-tuning;
* IMP:    ``imp_rounds`` × (training + magnitude pruning + rewind) + the final sparse training.

Targets (issue 5): PUN-IT ≤ 0.6× PUN-AT and ≤ 0.2× IMP with 5 rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from common import format_machine, machine_description, write_section

from fastmri_pun import train
from fastmri_pun.data import espirit as sensitivity
from fastmri_pun.demo.builder import ensure_demo_dataset

SECTION = "Pruning compute"
TARGET_VS_AT = 0.6
TARGET_VS_IMP = 0.2
METHODS = ("pun-it", "pun-at", "imp")


def run_method(method: str, out: Path, args: argparse.Namespace) -> list[dict]:
    """Train one method with the demo settings; return its compute-accounting records."""
    argv = [
        "--challenge", "multicoil",
        "--prune", method,
        "--density", str(args.density),
        "--max_epochs", str(args.max_epochs),
        "--search_steps", str(args.search_steps),
        "--imp_rounds", str(args.imp_rounds),
        "--seed", str(args.seed),
        "--output_dir", str(out),
        "--enable_progress_bar", "false",
        "--num_log_images", "0",
    ]  # fmt: skip
    if args.sample_rate is not None:
        argv += ["--sample_rate", str(args.sample_rate)]
    train.main(argv)
    return json.loads((out / "compute_accounting.json").read_text())


def warm_map_cache() -> None:
    """Compute the demo's ESPIRiT maps once up front, so the first method measured does not pay
    for the (cached, shared) coil-map estimation the others then get for free."""
    root = ensure_demo_dataset()
    defaults = train.parse_config([])
    for split in ("train", "val", "test"):
        argv = [
            str(root / f"multicoil_{split}"),
            "--mask-type", defaults.mask_type,
            "--center-fraction", str(defaults.center_fractions[0]),
            "--acceleration", str(defaults.accelerations[0]),
        ] + (["--crop-readout"] if defaults.crop_readout else [])  # fmt: skip
        sensitivity.main(argv)


def totals(records: Sequence[dict]) -> dict[str, float]:
    """Sum forward/backward passes and wall time over a method's phases."""
    train_samples = sum(r["train_samples"] for r in records)
    val_samples = sum(r["val_samples"] for r in records)
    return {
        "phases": " + ".join(r["phase"] for r in records),
        "forward": train_samples + val_samples,
        "backward": train_samples,
        "wall_s": sum(r["wall_time_s"] for r in records),
    }


def render(results: dict[str, dict], args: argparse.Namespace, machine: str) -> str:
    it, at, imp = (results[m] for m in METHODS)
    lines = [
        f"Demo set (default `python -m fastmri_pun.train` data and model), density {args.density}, "
        f"`--max_epochs {args.max_epochs}` per training phase, `--search_steps {args.search_steps}`, "
        f"IMP with {args.imp_rounds} rounds, seed {args.seed}. Forward/backward passes are per "
        "sample (training steps count one forward and one backward, validation one forward); "
        "wall time includes validation inside each phase.",
        "",
        machine,
        "",
        "| method | phases | forward passes | backward passes | wall time (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for m in METHODS:
        r = results[m]
        lines.append(
            f"| {m} | {r['phases']} | {r['forward']} | {r['backward']} | {r['wall_s']:.1f} |"
        )
    lines += [
        "",
        "| ratio | backward passes | wall time | target | met |",
        "|---|---:|---:|---:|---|",
    ]
    for name, ref, target in (
        ("PUN-IT / PUN-AT", at, TARGET_VS_AT),
        ("PUN-IT / IMP", imp, TARGET_VS_IMP),
    ):
        rb = it["backward"] / ref["backward"]
        rw = it["wall_s"] / ref["wall_s"]
        met = (
            "yes" if max(rb, rw) <= target else f"no (by {100 * (max(rb, rw) / target - 1):.0f} %)"
        )
        lines.append(f"| {name} | {rb:.3f} | {rw:.3f} | ≤ {target} | {met} |")
    lines += [
        "",
        "The ratios follow from the procedures: with a search of S steps and trainings of T steps, "
        "PUN-IT costs S + T, PUN-AT 2T + S and IMP (R rounds) (R + 1)T. The search steps run the "
        "full network forward and backward (gradients flow to the mask logits), so a search step "
        "costs about a training step.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max_epochs", type=int, default=1, help="epochs per training phase")
    parser.add_argument("--search_steps", type=int, default=12, help="PUN mask-search steps")
    parser.add_argument("--imp_rounds", type=int, default=5, help="IMP rounds")
    parser.add_argument("--density", type=float, default=0.03, help="kept fraction of weights")
    parser.add_argument("--sample_rate", type=float, default=None, help="fraction of train data")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: stable on a shared machine, where 2 threads spin-wait)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warm_map_cache()
    machine = format_machine(machine_description())
    with tempfile.TemporaryDirectory(prefix="bench_prune_cost_") as tmp:
        results = {m: totals(run_method(m, Path(tmp) / m, args)) for m in METHODS}
    body = render(results, args, machine)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
