"""Inference speed of channel-pruned (structured PUN) MoDL, slimmed, against the dense model.

Run from the repository root (writes ``benchmarks/results/structured.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_structured.py [--size 128 320] [--fractions 0.5 0.25 0.125]
        [--threads 1] [--clock cpu] [--repeats 5] [--device auto] [--quick]

MoDL reconstruction in eval mode without autograd (the paper's configuration: 7-layer
64-channel ResNet denoiser with BatchNorm, 8 coils, 10 CG iterations, ``--unrolls`` 10, batch
1) on the test problem of ``physics_problem.py``, for:

- ``dense``: the unpruned model;
- ``unstructured``: the same model with an unstructured mask at ``--density`` (3 %) applied with
  ``torch.nn.utils.prune`` — the convolutions stay dense, so about as fast as ``dense``;
- ``slim f``: whole-channel masks keeping the fraction ``f`` of every hidden layer's channels
  (``ChannelScores(..., allocation="per-layer", channel_fraction=f)`` with random logits), then
  physically removed by ``slim_channels`` (smaller convolutions and BatchNorms);
- ``slim d weights``: the same with the channel count whose weight count is closest to the
  unstructured mask's (``--density``): structured and unstructured at equal parameter count.

Every slim model's output is checked against its masked model's (same function).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from common import (
    RESULTS_DIR,
    add_device_argument,
    command_line,
    load_average,
    machine_description,
    table,
    target,
    time_interleaved,
    write_results,
)
from physics_problem import make_problem

from fastmri_pun.models import MoDL
from fastmri_pun.pruning import apply_masks, density_report, is_pruned
from fastmri_pun.pruning.baselines import random_masks
from fastmri_pun.pruning.channel_scores import ChannelScores
from fastmri_pun.pruning.channel_slim import slim_channels
from fastmri_pun.pruning.select import select_parameters

RESULTS_FILE = "structured.json"
TARGET_FRACTION = 0.25  # channel fraction of the speed target
TARGET_SPEEDUP = 2.5  # dense / slim reconstruction time at that fraction, at least
QUICK = {"size": [32], "coils": 2, "chans": 16, "layers": 3, "cg_iters": 3, "unrolls": 2,
         "repeats": 2}  # fmt: skip
NOT_SETTINGS = ("note", "output_dir", "quick")


def build_models(args: argparse.Namespace, device: torch.device) -> dict[str, torch.nn.Module]:
    """Variant → model in eval mode on ``device``: dense, unstructured, slim per fraction."""
    torch.manual_seed(args.seed)
    kwargs = dict(num_unrolls=args.unrolls, num_cg_iters=args.cg_iters, chans=args.chans)
    dense = MoDL(num_layers=args.layers, learn_sens_maps=False, **kwargs)
    state = dense.state_dict()

    def fresh() -> MoDL:
        model = MoDL(num_layers=args.layers, learn_sens_maps=False, **kwargs)
        model.load_state_dict(state)
        return model

    models: dict[str, torch.nn.Module] = {"dense": dense}
    unstructured = fresh()
    apply_masks(unstructured, random_masks(unstructured, args.density, seed=args.seed))
    models["unstructured"] = unstructured
    gen = torch.Generator().manual_seed(args.seed)
    for fraction in args.fractions:
        masked = fresh()
        scores = ChannelScores(
            masked,
            select_parameters(masked),
            allocation="per-layer",
            channel_fraction=fraction,
        )
        with torch.no_grad():
            for logit in scores.logits:
                logit.copy_(torch.randn(logit.shape, generator=gen))
        apply_masks(masked, scores.hard_masks(1.0))
        models[f"masked {fraction:g}"] = masked
        models[f"slim {fraction:g}"] = slim_channels(masked)
    masked = fresh()  # the unstructured mask's weight count, in whole channels
    scores = ChannelScores(masked, select_parameters(masked), allocation="per-layer")
    with torch.no_grad():
        for logit in scores.logits:
            logit.copy_(torch.randn(logit.shape, generator=gen))
    apply_masks(masked, scores.hard_masks(args.density))
    models[f"masked {args.density:g} weights"] = masked
    models[f"slim {args.density:g} weights"] = slim_channels(masked)
    return {k: m.to(device).eval() for k, m in models.items()}


def conv_weights(model: torch.nn.Module) -> int:
    """Weights of the prunable layers: kept by the mask (pruned model) or present (otherwise)."""
    if is_pruned(model):
        return int(density_report(model)["kept"])
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in select_parameters(model))


def bench_size(size: int, args: argparse.Namespace, device: torch.device) -> dict:
    """Timings, weight counts and output checks of every variant at one image size."""
    p = make_problem(size, args.coils, 1, args.seed)
    ks = torch.view_as_real(p.y).contiguous().to(device)
    mask, maps = p.mask[..., None].to(device), p.maps.to(device)
    models = build_models(args, device)
    with torch.inference_mode():
        outputs = {k: m(ks, mask, sens_maps=maps) for k, m in models.items()}
    timed = {k: m for k, m in models.items() if not k.startswith("masked")}
    fns = {k: (lambda m=m: m(ks, mask, sens_maps=maps)) for k, m in timed.items()}
    times = time_interleaved(fns, args.repeats, args.warmup, device=device)
    weights, rel = {}, {}
    for key, model in models.items():
        weights[key] = conv_weights(model)
        if key.startswith("slim"):
            ref = outputs[key.replace("slim", "masked")]
            rel[key] = float((outputs[key] - ref).norm() / ref.norm())
    print(f"{size}²: wall ms {({k: round(t.median_ms, 1) for k, t in times.items()})}",
          file=sys.stderr)  # fmt: skip
    return {"size": size, "times": times, "weights": weights, "rel": rel}


NOTES = [
    "MoDL reconstruction in eval mode under `torch.inference_mode()` (batch 1, precomputed coil "
    "maps; Shepp-Logan phantom, birdcage maps, equispaced 4× mask with 8 % centre).",
    "slim f: whole-channel masks keeping the fraction f of every hidden layer's channels (the "
    "last conv keeps its 2 image channels), physically removed by "
    "`fastmri_pun.pruning.channel_slim.slim_channels`; slim d weights: the channel count per "
    "layer whose weight count is closest to the unstructured mask's (equal parameter count); "
    "weights: the conv weights left. "
    "unstructured: an unstructured mask at `density` through `torch.nn.utils.prune` (dense "
    "convolutions, the mask multiplied in at every forward).",
    "out rel. diff.: relative L2 difference between a slim model's output and its masked "
    "model's (they compute the same function; float32 summation order only).",
    "Timing: medians of `repeats` interleaved rounds after `warmup` calls, every variant once "
    "per round in rotating order; ratios use the `clock` medians (process CPU time with one "
    "thread is not inflated by other processes).",
]


def build_results(rows: list[dict], args: argparse.Namespace) -> dict:
    """Targets and tables of one run (keyword arguments of ``common.write_results``)."""
    attr = "cpu_median_ms" if args.clock == "cpu" else "median_ms"
    targets, tables = [], []
    for row in rows:
        times, size = row["times"], row["size"]
        base = getattr(times["dense"], attr)
        dense_weights = row["weights"]["dense"]
        key = f"slim {TARGET_FRACTION:g}"
        if key in times:
            speedup = base / getattr(times[key], attr)
            targets.append(
                target(f"{size}²: dense / slim time at {TARGET_FRACTION:g} of the channels",
                       speedup, ">=", TARGET_SPEEDUP)
            )  # fmt: skip
        lines = []
        for name, t in times.items():
            weights = row["weights"][name]
            lines.append(
                [name, weights, weights / dense_weights, t.median_ms, t.cpu_median_ms,
                 base / getattr(t, attr), row["rel"].get(name)]
            )  # fmt: skip
        header = ["variant", "conv weights", "weight density", "wall median ms",
                  "CPU median ms", f"dense / variant ({args.clock})", "out rel. diff."]  # fmt: skip
        tables.append(
            table(f"MoDL reconstruction, {size}×{size}", header, lines,
                  ["", "", ".4f", ".1f", ".1f", ".2f", ".1e"], "lrrrrrr")
        )  # fmt: skip
    return {"targets": targets, "tables": tables}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time MoDL inference, dense against channel-pruned and physically slimmed; "
        f"writes {RESULTS_FILE} (render it with benchmarks/render.py).",
    )
    ap.add_argument("--size", type=int, nargs="+", default=[128, 320], help="image sizes (even)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.125],
                    help="channel fractions of the slim models")  # fmt: skip
    ap.add_argument("--density", type=float, default=0.03, help="unstructured mask density")
    ap.add_argument("--coils", type=int, default=8, help="number of coils")
    ap.add_argument("--unrolls", type=int, default=10, help="MoDL unrolled iterations")
    ap.add_argument("--cg_iters", type=int, default=10, help="CG iterations per unroll")
    ap.add_argument("--layers", type=int, default=7, help="denoiser conv layers")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per variant first")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights, masks and problem")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu", help="median the ratios use")
    add_device_argument(ap)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test): " + ", ".join(
        f"{k} {v}" for k, v in QUICK.items()))  # fmt: skip
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if min(args.repeats, args.coils, args.unrolls, args.cg_iters, args.chans) < 1:
        ap.error("--repeats, --coils, --unrolls, --cg_iters and --chans must be >= 1")
    if args.layers < 2 or not all(0 < f <= 1 for f in args.fractions):
        ap.error("--layers must be >= 2 and every --fractions value in (0, 1]")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time of several threads adds up their work)")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark; returns the written JSON file."""
    args = parse_args(argv)
    device = args.device
    if device.type == "cuda" and args.clock == "cpu":
        args.clock = "wall"  # kernels run on the GPU: process CPU time does not measure them
    torch.set_num_threads(args.threads)
    machine = machine_description()
    rows = [bench_size(size, args, device) for size in args.size]
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    settings["device"] = str(args.device)
    script = "benchmarks/bench_structured.py"
    if args.quick:
        command = command_line(script, {"device": args.device}) + " --quick"
        settings["quick"] = True
    else:
        command = command_line(script, settings)
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="Structured PUN: MoDL inference, dense against channel-slimmed",
        command=command,
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(rows, args),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
