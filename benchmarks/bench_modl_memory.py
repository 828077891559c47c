"""MoDL memory benchmark: peak memory and time of one training step against the number of unrolls,
with and without ``checkpoint_unrolls``.

Run from the repository root (writes ``benchmarks/results/modl_memory.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_modl_memory.py [--size 128] [--coils 8] [--unrolls 1 5 10] [--quick]

One training step is ``loss = ‖MoDL(y, mask, maps) − target‖²`` (mean), ``loss.backward()``, in
training mode (BatchNorm on), batch 1, ESPIRiT-like precomputed coil maps (no learned sensitivity
network). Peak memory: peak RSS growth of one step in a fresh subprocess per configuration; bytes
held for the backward: the storages autograd keeps from the forward. Step time: all
configurations timed side by side in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from common import (
    RESULTS_DIR,
    add_device_argument,
    command_line,
    load_average,
    machine_description,
    peak_bytes,
    run_children,
    saved_tensor_bytes,
    table,
    target,
    time_interleaved,
    write_results,
)
from physics_problem import Problem, make_problem

from fastmri_pun import MoDL
from fastmri_pun.physics import complex_to_real

RESULTS_FILE = "modl_memory.json"
TARGET_FLAT = 1.5  # checkpointed peak memory at the largest K / at the smallest K
TARGET_OVERHEAD = 1.5  # checkpointed step time / plain step time at the largest K
QUICK = {"size": 64, "coils": 4, "chans": 16, "num_layers": 3, "cg_iters": 3, "repeats": 2}

# --------------------------------------------------------------------------- one training step


def modl_inputs(p: Problem) -> dict[str, torch.Tensor]:
    """MoDL's forward inputs from a physics test problem: ``masked_kspace [B, C, H, W, 2]``
    float32, ``mask [B, 1, 1, W, 1]`` bool, ``sens_maps [B, C, H, W]`` complex64 and the
    magnitude ``target [B, H, W]`` float32."""
    b, _, _, w = p.y.shape
    return {
        "masked_kspace": complex_to_real(p.y).contiguous(),
        "mask": p.mask.reshape(b, 1, 1, w, 1),
        "sens_maps": p.maps.contiguous(),
        "target": p.target.abs(),
    }


def build(args: argparse.Namespace, unrolls: int, checkpoint: bool) -> MoDL:
    """The benchmarked MoDL (same weights for every configuration), in training mode."""
    torch.manual_seed(args.seed)
    model = MoDL(
        num_unrolls=unrolls,
        num_cg_iters=args.cg_iters,
        chans=args.chans,
        num_layers=args.num_layers,
        learn_sens_maps=False,
        checkpoint_unrolls=checkpoint,
    )
    return model.to(args.device).train()


def make_step(model: MoDL, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One training step of ``model`` (forward, MSE loss, backward; gradients freed first)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(inputs["masked_kspace"], inputs["mask"], sens_maps=inputs["sens_maps"])
        (out - inputs["target"]).pow(2).mean().backward()

    return step


def held_bytes(model: MoDL, inputs: dict[str, torch.Tensor]) -> int:
    """Bytes autograd keeps from one forward for the backward (inputs excluded)."""

    def forward() -> None:
        model(inputs["masked_kspace"], inputs["mask"], sens_maps=inputs["sens_maps"])

    return saved_tensor_bytes(forward, exclude=inputs.values())


# --------------------------------------------------------------------------- measurements


def configurations(unrolls: Sequence[int]) -> list[tuple[int, bool]]:
    """``(K, checkpoint_unrolls)`` for every K, without checkpointing first."""
    return [(k, ckpt) for k in unrolls for ckpt in (False, True)]


def label(unrolls: int, checkpoint: bool) -> str:
    return f"K={unrolls} {'checkpointed' if checkpoint else 'plain'}"


def memory_child(args: argparse.Namespace) -> dict:
    """Runs inside a fresh process: one warm-up step, then the peak RSS growth of one step
    (median of 3) and the bytes held for the backward."""
    model = build(args, args.child_unrolls, args.child_checkpoint == "on")
    inputs = modl_inputs(Problem.load(args.problem_file).on(args.device))
    step = make_step(model, inputs)
    step()  # warm-up: FFT plans, thread pools, gradient buffers
    model.zero_grad(set_to_none=True)
    peaks = sorted(peak_bytes(step, args.device) for _ in range(3))
    model.zero_grad(set_to_none=True)
    return {"peak_rss_bytes": peaks[1], "held_bytes": held_bytes(model, inputs)}


def bench_memory(args: argparse.Namespace, p: Problem) -> dict[tuple[int, bool], dict]:
    """Peak memory per configuration, one fresh subprocess each, run side by side."""
    script = str(Path(__file__).resolve())
    configs = configurations(args.unrolls)
    shared = [f"--{k}={getattr(args, k)}" for k in ("seed", "cg_iters", "chans", "num_layers")]
    shared.append(f"--device={args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        problem_file = Path(tmp) / "problem.pt"
        p.save(problem_file)
        argvs = [
            [script, *shared, "--problem_file", str(problem_file), "--child_unrolls", str(k),
             "--child_checkpoint", "on" if ckpt else "off"]
            for k, ckpt in configs
        ]  # fmt: skip
        res = run_children(argvs)
    return dict(zip(configs, res, strict=True))


def bench_time(args: argparse.Namespace, p: Problem) -> dict[tuple[int, bool], dict]:
    """Step time per configuration, all timed side by side (interleaved rounds)."""
    inputs = modl_inputs(p.on(args.device))
    steps = {
        label(k, ckpt): make_step(build(args, k, ckpt), inputs)
        for k, ckpt in configurations(args.unrolls)
    }
    timings = time_interleaved(steps, args.repeats, 1, True, args.device)
    return {
        (k, ckpt): {
            "wall_ms": timings[label(k, ckpt)].median_ms,
            "cpu_ms": timings[label(k, ckpt)].cpu_median_ms,
        }
        for k, ckpt in configurations(args.unrolls)
    }


# --------------------------------------------------------------------------- results

NOT_SETTINGS = ("note", "output_dir", "problem_file", "child_unrolls", "child_checkpoint")
NOTES = [
    "One training step: MoDL forward (training mode, BatchNorm, `--chans` × `--num_layers` ResNet "
    "denoiser shared by the K unrolls, `--cg_iters` CG iterations with the implicit backward), "
    "MSE loss against the phantom, backward; batch 1, precomputed coil maps (Shepp-Logan "
    "phantom, birdcage maps, equispaced 4× mask with 8 % centre, 1 % noise).",
    "Peak memory: peak RSS growth of one step in a fresh one-thread subprocess per "
    "configuration (`MALLOC_MMAP_THRESHOLD_=65536`, peak mark reset through "
    "`/proc/self/clear_refs`, median of 3 steps after a warm-up step). Held for backward: "
    "distinct storages autograd keeps from the forward (inputs excluded); checkpointed, each "
    "unroll keeps only its input image and the backward recomputes one unroll at a time. On "
    "CUDA (`--device`), the caching allocator's peak above the memory allocated before the step.",
    "Step time: medians of `repeats` interleaved rounds after one warm-up step, every "
    "configuration once per round in rotating order, in one process; ratios use the `clock` "
    "medians (process CPU time with one thread is not inflated by other processes).",
]


def _mib(n: float) -> float:
    return n / 2**20


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None  # a tiny problem may not grow the RSS at all


def build_results(
    args: argparse.Namespace,
    memory: dict[tuple[int, bool], dict],
    times: dict[tuple[int, bool], dict],
) -> dict:
    """Targets and tables of one run (keyword arguments of ``common.write_results``)."""
    ms = f"{args.clock}_ms"
    k_min, k_max = min(args.unrolls), max(args.unrolls)
    rows, ratio_rows = [], []
    for k, ckpt in configurations(args.unrolls):
        mem, t = memory[(k, ckpt)], times[(k, ckpt)]
        rows.append(
            [k, "on" if ckpt else "off", _mib(mem["peak_rss_bytes"]), _mib(mem["held_bytes"]),
             t["wall_ms"], t["cpu_ms"]]
        )  # fmt: skip
    for k in args.unrolls:
        on, off = memory[(k, True)], memory[(k, False)]
        ratio_rows.append(
            [
                k,
                _ratio(on["peak_rss_bytes"], off["peak_rss_bytes"]),
                _ratio(on["peak_rss_bytes"], memory[(k_min, True)]["peak_rss_bytes"]),
                _ratio(off["peak_rss_bytes"], memory[(k_min, False)]["peak_rss_bytes"]),
                _ratio(times[(k, True)][ms], times[(k, False)][ms]),
            ]
        )
    flat = _ratio(memory[(k_max, True)]["peak_rss_bytes"], memory[(k_min, True)]["peak_rss_bytes"])
    overhead = _ratio(times[(k_max, True)][ms], times[(k_max, False)][ms])
    caption = (
        f"One training step, {args.size}×{args.size}, {args.coils} coils, {args.chans}-channel "
        f"{args.num_layers}-layer denoiser, {args.cg_iters} CG iterations"
    )
    header = "K|checkpoint_unrolls|peak RSS growth MiB|held for backward MiB|wall median ms|CPU median ms"
    ratio_header = (
        f"K|peak memory on / off|peak on / on at K={k_min}|peak off / off at K={k_min}|"
        f"step time on / off ({args.clock})"
    )
    return {
        "targets": [
            target(f"checkpointed: peak memory at K={k_max} / K={k_min}", flat, "<=", TARGET_FLAT),
            target(f"K={k_max}: step time checkpointed / plain", overhead, "<=", TARGET_OVERHEAD),
        ],
        "tables": [
            table(caption, header.split("|"), rows, ["", "", ".1f", ".2f", ".0f", ".0f"], "rlrrrr"),
            table(
                "Ratios: checkpointed (on) and plain (off)",
                ratio_header.split("|"),
                ratio_rows,
                ["", ".3f", ".2f", ".2f", ".2f"],
                "rrrrr",
            ),
        ],
    }


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark MoDL's training-step memory and time against the number of "
        f"unrolls with and without checkpoint_unrolls; writes {RESULTS_FILE}.",
    )
    ap.add_argument("--size", type=int, default=128, help="image size H = W (even)")
    ap.add_argument("--coils", type=int, default=8, help="number of coils C")
    ap.add_argument("--unrolls", type=int, nargs="+", default=[1, 5, 10], help="values of K")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--num_layers", type=int, default=5, help="denoiser conv layers")
    ap.add_argument("--cg_iters", type=int, default=10, help="CG iterations per unroll")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after 1 warm-up step")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights, noise and mask")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (timing)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu", help="median the ratios use")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test): " + ", ".join(
        f"{k} {v}" for k, v in QUICK.items()))  # fmt: skip
    add_device_argument(ap)
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    ap.add_argument("--problem_file", type=Path, help="internal: problem of a memory child")
    ap.add_argument("--child_unrolls", type=int, help="internal: K of a memory child")
    ap.add_argument("--child_checkpoint", choices=["on", "off"], help="internal")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.unrolls = sorted(set(args.unrolls))
    if min(args.repeats, args.cg_iters, args.chans, *args.unrolls) < 1 or args.num_layers < 2:
        ap.error("--repeats, --cg_iters, --chans, --unrolls must be >= 1, --num_layers >= 2")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time of several threads adds up their work)")
    if args.device.type != "cpu" and args.clock == "cpu":
        args.clock = "wall"  # the CPU time of a GPU step is not its time
    return args


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Run the benchmark; returns the written JSON file (``None`` in a memory child)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child_unrolls is not None:
        if args.problem_file is None or args.child_checkpoint is None:
            raise ValueError("a memory child needs --problem_file and --child_checkpoint")
        print(json.dumps(memory_child(args)))
        return None
    machine = machine_description()
    problem = make_problem(args.size, args.coils, 1, args.seed)
    memory = bench_memory(args, problem)
    print(f"memory: {memory}", file=sys.stderr)
    times = bench_time(args, problem)
    print(f"times: {times}", file=sys.stderr)
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in (*NOT_SETTINGS, "quick")}
    settings["device"] = str(args.device)
    script = "benchmarks/bench_modl_memory.py"
    if args.quick:
        given = {k: v for k, v in settings.items() if k not in QUICK}
        command = command_line(script, given) + " --quick"
        settings["quick"] = True
    else:
        command = command_line(script, settings)
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="MoDL memory against the number of unrolls",
        command=command,
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(args, memory, times),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
