"""Physics benchmark: speed of the SENSE normal operator, memory and gradients of implicit-backward CG.

Run from the repository root (writes ``benchmarks/results/physics.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_physics.py [--size 320] [--coils 8] [--repeats 30] [--seed 0]

1. ``SenseOp.normal`` (AᴴA) against the same operator written with fastmri's real-view
   ``fft2c``/``ifft2c``/``complex_mul``/``complex_conj`` and against the floor of the 2·C bare FFTs
   it must run (``torch.fft.fft2`` + ``ifft2`` on ``[B, C, H, W]`` complex64).
2. One MoDL data-consistency step ``x = (AᴴA + λI)⁻¹ (Aᴴy + λz)`` with coil maps, ``z`` and ``λ``
   requiring grad: peak memory of forward + backward with the implicit backward against autograd
   through the CG iterations, and the relative difference of the gradients.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
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
from physics_problem import (
    GRAD_NAMES,
    MEMORY_MODES,
    Problem,
    dc_step,
    fastmri_normal,
    make_problem,
    rel_diff,
)

from fastmri_pun.physics import SenseOp, complex_to_real

RESULTS_FILE = "physics.json"
TARGET_VS_FASTMRI = 2.5  # ours must be at least this many times faster than fastmri's real view
TARGET_VS_FLOOR = 1.5  # ours may take at most this many times the bare-FFT floor
TARGET_MEMORY_RATIO = 0.2  # implicit / unrolled peak memory of forward + backward
TARGET_GRAD_REL = 1e-4  # implicit vs unrolled gradient, relative L2 difference


# --------------------------------------------------------------------------- part 1: normal op


VARIANTS = {
    "ours": "ours: `SenseOp.normal`",
    "fastmri": "fastmri real view (`fft2c`, `complex_mul`)",
    "floor": "floor: `fft2` + `ifft2` on [B, C, H, W]",
}


def bench_normal(
    size: int, coils: int, batch: int, repeats: int, seed: int, device: torch.device | None = None
) -> dict:
    """Time the normal-operator variants of :data:`VARIANTS` side by side.

    Returns ``{"batch", "repeats", "wall_ms", "min_ms" (wall), "cpu_ms": {variant: median ms},
    "rel_err": {"fastmri": relative L2 difference of fastmri's AᴴA x from ours}}``.
    """
    device = device or torch.device("cpu")
    p = make_problem(size, coils, batch, seed).on(device)
    op = SenseOp(p.maps, p.mask)
    x = p.z.contiguous()
    x_real = complex_to_real(x).contiguous()
    coil_x = p.maps * x.unsqueeze(1)
    ref_fastmri = fastmri_normal(p.maps, p.mask)
    fns: dict[str, Callable[[], object]] = {
        "ours": lambda: op.normal(x),
        "fastmri": lambda: ref_fastmri(x_real),
        "floor": lambda: torch.fft.ifft2(torch.fft.fft2(coil_x, norm="ortho"), norm="ortho"),
    }
    with torch.no_grad():
        rel_err = {"fastmri": rel_diff(torch.view_as_complex(ref_fastmri(x_real)), op.normal(x))}
    timings = time_interleaved(fns, repeats, device=device)
    return {
        "batch": batch,
        "repeats": repeats,
        "wall_ms": {k: t.median_ms for k, t in timings.items()},
        "min_ms": {k: t.min_ms for k, t in timings.items()},
        "cpu_ms": {k: t.cpu_median_ms for k, t in timings.items()},
        "rel_err": rel_err,
    }


# --------------------------------------------------------------------------- part 2: CG backward


def grad_rel_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative L2 difference ``‖a - b‖ / ‖b‖`` for each gradient."""
    return {k: rel_diff(a[k].to(b[k].dtype), b[k]) for k in GRAD_NAMES}


def bench_gradients(p: Problem, iters: Sequence[int], exact_iters: int = 1000) -> list[dict]:
    """Implicit vs unrolled gradients (complex64) after each number of CG iterations in ``iters``,
    and both against the gradient of the exact solve (complex128, implicit, ``tol=1e-12``)."""
    exact = dc_step(p.to(torch.complex128), "implicit", exact_iters, tol=1e-12)
    rows = []
    for k in iters:
        g_imp, g_unr = dc_step(p, "implicit", k), dc_step(p, "unrolled", k)
        rows.append(
            {
                "iters": k,
                "implicit_vs_unrolled": grad_rel_diffs(g_imp, g_unr),
                "implicit_vs_exact": grad_rel_diffs(g_imp, exact),
                "unrolled_vs_exact": grad_rel_diffs(g_unr, exact),
            }
        )
    return rows


def memory_child(
    problem_file: Path, mode: str, iters: int, maps_grad: bool, device: torch.device | None = None
) -> dict:
    """Runs inside a fresh process (see :func:`bench_memory`): one warm-up step, then the peak RSS
    growth of one forward + backward (median of 3) and the bytes saved for backward."""
    device = device or torch.device("cpu")
    p = Problem.load(problem_file).on(device)

    def step() -> None:
        dc_step(p, mode, iters, keep_grads=False, maps_grad=maps_grad)

    step()  # warm-up: FFT plans, thread pools
    peaks = sorted(peak_bytes(step, device) for _ in range(3))
    saved = saved_tensor_bytes(step, exclude=(p.maps, p.z, p.y, p.target))
    return {"peak_rss_bytes": peaks[1], "saved_bytes": saved}


def bench_memory(
    p: Problem,
    iters: int,
    maps_grad: bool = True,
    modes: Sequence[str] = MEMORY_MODES,
    device: torch.device | None = None,
) -> dict[str, dict]:
    """Peak memory of forward + backward for each mode (see :func:`dc_step`), one fresh
    subprocess each, run side by side. Returns ``{mode: {"peak_rss_bytes": int,
    "saved_bytes": int}}``."""
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        problem_file = Path(tmp) / "problem.pt"
        p.save(problem_file)
        argv = [script, "--problem_file", str(problem_file), "--cg_iters", str(iters)]
        argv += ["--maps", "learned" if maps_grad else "fixed", "--device", str(device or "cpu")]
        res = run_children([[*argv, "--memory_child", m] for m in modes])
    return dict(zip(modes, res, strict=True))


# --------------------------------------------------------------------------- results

NOT_SETTINGS = ("note", "output_dir", "memory_child", "problem_file", "maps")
MODE_LABELS = {
    "none": "no CG (baseline)",
    "implicit": "implicit",
    "unrolled": "autograd through the CG iterations",
}
NOTES = [
    "Operator timings: medians of `repeats` interleaved rounds after 2 warm-up calls (every round "
    "runs each variant once, in rotating order); ratios use the `clock` medians. fastmri works on "
    "real-view `[..., 2]` float32 tensors; the floor is `fft2` + `ifft2` on `[B, C, H, W]` "
    "complex64, the 2·C FFTs that AᴴA needs.",
    "Memory and gradients: one MoDL data-consistency step (batch 1) `rhs = Aᴴy + λz`, "
    "`x = cg_solve(AᴴA, rhs, λ, tol=0)`, loss `‖x − target‖²`, with `z`, λ and learned coil maps "
    "requiring grad (fixed maps: e.g. precomputed ESPIRiT); Shepp-Logan phantom, birdcage maps, "
    "equispaced 4× mask with 8 % centre, 1 % noise. `no CG` is `x = rhs / (1 + λ)`: what every "
    "backward pays.",
    "Peak memory: peak RSS growth of forward + backward in a fresh one-thread subprocess per "
    "configuration (`MALLOC_MMAP_THRESHOLD_=65536`, peak mark reset through "
    "`/proc/self/clear_refs`, median of 3 steps); `saved` = distinct storages autograd keeps for "
    "backward, inputs excluded.",
    "Gradients: relative L2 difference; `exact` is the converged solve (complex128, tol 1e-12). "
    "The implicit backward differentiates the converged solve, autograd the truncated iteration.",
]


def _mib(n: float) -> float:
    return n / 2**20


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None  # a tiny problem may not grow the RSS at all


def speed_results(rows: list[dict], clock: str, size: int, coils: int) -> tuple[list, dict]:
    """Targets and table of the operator timings (``rows`` from :func:`bench_normal`)."""
    targets, table_rows = [], []
    for row in rows:
        ms, b = row[f"{clock}_ms"], row["batch"]
        for key, label in VARIANTS.items():
            times = [row["wall_ms"][key], row["min_ms"][key], row["cpu_ms"][key]]
            ratios = [ms[key] / ms["ours"], ms[key] / ms["floor"], row["rel_err"].get(key)]
            table_rows.append([b, label, *times, *ratios])
        speedup, floor = ms["fastmri"] / ms["ours"], ms["ours"] / ms["floor"]
        targets.append(target(f"B={b}: fastmri time / ours", speedup, ">=", TARGET_VS_FASTMRI))
        targets.append(target(f"B={b}: ours / bare-FFT floor", floor, "<=", TARGET_VS_FLOOR))
    header = (
        "B|variant|wall median ms|wall min ms|CPU median ms|× ours|× floor|rel. diff. from ours"
    )
    caption = f"SENSE normal operator AᴴA ({size}×{size}, {coils} coils, complex64, no autograd)"
    formats = ["", "", ".2f", ".2f", ".2f", ".2f", ".2f", ".1e"]
    return targets, table(caption, header.split("|"), table_rows, formats, "rlrrrrrr")


def memory_results(memory: dict, cg_iters: int) -> tuple[list, list[dict]]:
    """Targets and tables of the peak memory (``{case: bench_memory(...)}``)."""
    targets, rows, ratio_rows = [], [], []
    for case, res in memory.items():
        base = res["none"]["peak_rss_bytes"]
        for mode, label in MODE_LABELS.items():
            peak = res[mode]["peak_rss_bytes"]
            above = None if mode == "none" else _mib(peak - base)
            rows.append([case, label, _mib(peak), above, _mib(res[mode]["saved_bytes"])])
        imp, unr = res["implicit"], res["unrolled"]
        peak_ratio = _ratio(imp["peak_rss_bytes"], unr["peak_rss_bytes"])
        above_ratio = _ratio(imp["peak_rss_bytes"] - base, unr["peak_rss_bytes"] - base)
        saved_ratio = _ratio(imp["saved_bytes"], unr["saved_bytes"])
        ratio_rows.append(
            [case, peak_ratio, above_ratio, saved_ratio, _ratio(base, unr["peak_rss_bytes"])]
        )
        name = f"{case} maps: peak memory implicit / unrolled"
        targets.append(target(name, peak_ratio, "<=", TARGET_MEMORY_RATIO))
    header = "coil maps|backward|peak RSS growth MiB|above no CG MiB|saved for backward MiB"
    ratio_header = "coil maps|peak|peak above no CG|saved for backward|no-CG peak / unrolled peak"
    tables = [
        table(
            f"Peak memory of forward + backward, CG with {cg_iters} iterations",
            header.split("|"),
            rows,
            ["", "", ".1f", ".1f", ".1f"],
            "llrrr",
        ),
        table(
            "Memory ratios implicit / unrolled",
            ratio_header.split("|"),
            ratio_rows,
            ["", ".3f", ".3f", ".3f", ".2f"],
            "lrrrr",
        ),
    ]
    return targets, tables


def gradient_results(grads: list[dict], cg_iters: int) -> tuple[list, dict]:
    """Target and table of the gradient differences (``grads`` from :func:`bench_gradients`)."""
    at_k = next(r for r in grads if r["iters"] == cg_iters)
    worst = max(at_k["implicit_vs_unrolled"].values())
    name = f"gradients at {cg_iters} CG iterations: worst rel. diff. implicit vs unrolled"
    rows = [
        [r["iters"], pair.replace("_", " "), *(r[pair][k] for k in GRAD_NAMES)]
        for r in grads
        for pair in ("implicit_vs_unrolled", "implicit_vs_exact", "unrolled_vs_exact")
    ]
    tab = table(
        "Gradients: relative L2 difference per gradient (complex64)",
        ["CG iterations", "comparison", "rhs", "λ", "maps", "z"],
        rows,
        ["", "", ".1e", ".1e", ".1e", ".1e"],
        "rlrrrr",
    )
    return [target(name, worst, "<=", TARGET_GRAD_REL)], tab


def build_results(
    args: argparse.Namespace, normal_rows: list[dict], memory: dict, grads: list[dict]
) -> dict:
    """Targets and tables of one run (keyword arguments of ``common.write_results``)."""
    speed_targets, speed_table = speed_results(normal_rows, args.clock, args.size, args.coils)
    memory_targets, memory_tables = memory_results(memory, args.cg_iters)
    grad_targets, grad_table = gradient_results(grads, args.cg_iters)
    return {
        "targets": speed_targets + memory_targets + grad_targets,
        "tables": [speed_table, *memory_tables, grad_table],
    }


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark the SENSE normal operator and implicit-backward CG; writes "
        f"{RESULTS_FILE} (render it with benchmarks/render.py).",
    )
    ap.add_argument("--size", type=int, default=320, help="image size H = W (even)")
    ap.add_argument("--coils", type=int, default=8, help="number of coils C")
    ap.add_argument(
        "--batch", type=int, nargs="+", default=[1, 4],
        help="batch sizes for the operator timings; memory and gradients use batch 1",
    )  # fmt: skip
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds after 2 warm-up calls")
    ap.add_argument("--cg_iters", type=int, default=10, help="CG iterations for memory")
    ap.add_argument(
        "--grad_iters", type=int, nargs="+", default=[10, 20, 30, 50],
        help="CG iteration counts of the gradient table (--cg_iters is added if missing)",
    )  # fmt: skip
    ap.add_argument("--lam", type=float, default=0.05, help="regularisation λ (> 0)")
    ap.add_argument("--seed", type=int, default=0, help="seed for noise, phase and masks")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="median the ratios use: wall clock or process CPU time ('cpu' needs --threads 1 "
        "and suits a machine shared with other jobs)",
    )  # fmt: skip
    add_device_argument(ap)
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    ap.add_argument(
        "--memory_child", choices=MEMORY_MODES, default=None,
        help="internal: measure one memory configuration and print JSON",
    )  # fmt: skip
    ap.add_argument("--problem_file", type=Path, help="internal: problem for --memory_child")
    ap.add_argument("--maps", choices=["learned", "fixed"], default="learned", help="internal")
    args = ap.parse_args(argv)
    if min(args.repeats, args.cg_iters, *args.grad_iters, *args.batch) < 1:
        ap.error("--repeats, --cg_iters, --grad_iters and --batch must be >= 1")
    if args.lam <= 0:
        ap.error(f"--lam must be > 0, got {args.lam}")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time of several threads adds up their work)")
    if args.device.type != "cpu" and args.clock == "cpu":
        args.clock = "wall"  # the CPU time of a GPU call is not its time
    return args


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Run the benchmark; returns the written JSON file (``None`` in a memory child)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.memory_child:
        if args.problem_file is None:
            raise ValueError("--memory_child needs --problem_file")
        res = memory_child(
            args.problem_file, args.memory_child, args.cg_iters, args.maps == "learned", args.device
        )
        print(json.dumps(res))
        return None
    machine = machine_description()
    normal_rows = []
    for b in args.batch:
        normal_rows.append(
            bench_normal(args.size, args.coils, b, args.repeats, args.seed, args.device)
        )
        print(f"normal operator, batch {b}: {normal_rows[-1]['wall_ms']}", file=sys.stderr)
    problem = make_problem(args.size, args.coils, 1, args.seed, args.lam)
    memory = {
        "learned": bench_memory(problem, args.cg_iters, True, device=args.device),
        "fixed": bench_memory(problem, args.cg_iters, False, device=args.device),
    }
    grads = bench_gradients(problem.on(args.device), sorted(set(args.grad_iters) | {args.cg_iters}))
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    settings["device"] = str(args.device)
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="Physics",
        command=command_line("benchmarks/bench_physics.py", settings),
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(args, normal_rows, memory, grads),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
