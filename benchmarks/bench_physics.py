"""Physics benchmark: speed of the SENSE normal operator, memory and gradients of implicit-backward CG.

Run from the repository root (writes the ``## Physics`` section of ``benchmarks/RESULTS.md``)::

    python benchmarks/bench_physics.py [--size 320] [--coils 8] [--repeats 30] [--seed 0]

1. ``SenseOp.normal`` (AᴴA) against the same operator written with fastmri's real-view
   ``fft2c``/``ifft2c``/``complex_mul``/``complex_conj`` and against the floor of the 2·C bare FFTs
   it must run (``torch.fft.fft2`` + ``ifft2`` on ``[B, C, H, W]`` complex64). Also times two
   candidate speed-ups of ``normal`` (see :class:`ProposedNormal`).
2. One MoDL data-consistency step ``x = (AᴴA + λI)⁻¹ (Aᴴy + λz)`` with coil maps, ``z`` and ``λ``
   requiring grad: peak memory of forward + backward with the implicit backward against autograd
   through the CG iterations, and the relative difference of the gradients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import fastmri
import numpy as np
import torch
from common import (
    RESULTS_PATH,
    Timing,
    format_machine,
    machine_description,
    peak_rss_delta,
    run_children,
    saved_tensor_bytes,
    time_interleaved,
    write_section,
)
from fastmri.data.subsample import EquispacedMaskFractionFunc

from fastmri_pun.physics import SenseOp, cg_solve, complex_to_real
from fastmri_pun.physics.fft import checkerboard

SECTION = "Physics"
TARGET_VS_FASTMRI = 2.5  # ours must be at least this many times faster than fastmri's real view
TARGET_VS_FLOOR = 1.5  # ours may take at most this many times the bare-FFT floor
TARGET_MEMORY_RATIO = 0.2  # implicit / unrolled peak memory of forward + backward
TARGET_GRAD_REL = 1e-4  # implicit vs unrolled gradient, relative L2 difference


# --------------------------------------------------------------------------- test problem


@dataclass(frozen=True)
class Problem:
    """One data-consistency problem.

    ``maps [B, C, H, W]`` complex (root-sum-of-squares 1), ``mask [B, 1, 1, W]`` bool (fastMRI
    equispaced, 4x, 8 % centre), ``y [B, C, H, W]`` noisy masked k-space, ``z [B, H, W]``
    zero-filled image (stands in for the denoiser output), ``target [B, H, W]`` ground truth.
    """

    maps: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    target: torch.Tensor
    lam: float

    def save(self, path: Path) -> None:
        """Write the problem with ``torch.save`` (for the memory-measuring children)."""
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls, path: Path) -> Problem:
        """Read a problem written by :meth:`save`."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"problem file {path} does not exist")
        return cls(**torch.load(path, weights_only=True))

    def to(self, dtype: torch.dtype) -> Problem:
        """The same problem in another complex dtype (mask unchanged)."""
        return replace(
            self,
            maps=self.maps.to(dtype),
            y=self.y.to(dtype),
            z=self.z.to(dtype),
            target=self.target.to(dtype),
        )


def make_problem(
    size: int, coils: int, batch: int = 1, seed: int = 0, lam: float = 0.05
) -> Problem:
    """Shepp-Logan phantom, sigpy birdcage coil maps, fastMRI equispaced mask; complex64."""
    import sigpy.mri  # here, not at the top: the memory children load a saved problem instead

    if size < 8 or size % 2:
        raise ValueError(f"--size must be an even number >= 8, got {size}")
    if coils < 1 or batch < 1:
        raise ValueError(f"--coils and --batch must be >= 1, got {coils} and {batch}")
    gen = torch.Generator().manual_seed(seed)
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((coils, size, size))).to(torch.complex64)
    maps = (maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()).expand(batch, -1, -1, -1)
    mask_func = EquispacedMaskFractionFunc(center_fractions=[0.08], accelerations=[4])
    mask = torch.stack(
        [mask_func((1, size, size, 2), seed=seed + b)[0].reshape(1, 1, size) for b in range(batch)]
    ).bool()
    phantom = torch.from_numpy(sigpy.shepp_logan((size, size))).to(torch.complex64)
    phase = torch.exp(1j * 2 * math.pi * torch.rand(batch, 1, 1, generator=gen))
    target = phantom * phase
    op = SenseOp(maps, mask)
    noise = torch.randn(batch, coils, size, size, dtype=torch.complex64, generator=gen)
    y = op.A(target) + 0.01 * noise * mask
    return Problem(maps.contiguous(), mask, y, op.A_adjoint(y), target, lam)


# --------------------------------------------------------------------------- part 1: normal op


def fastmri_normal(
    maps: torch.Tensor, mask: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """AᴴA written with fastmri's real-view ops. ``[B, H, W, 2]`` float32 → ``[B, H, W, 2]``."""
    s, s_conj = complex_to_real(maps), fastmri.complex_conj(complex_to_real(maps))
    m = mask.unsqueeze(-1).to(s.dtype)  # [B, 1, 1, W, 1]

    def normal(x: torch.Tensor) -> torch.Tensor:
        k = m * fastmri.fft2c(fastmri.complex_mul(s, x.unsqueeze(1)))
        return fastmri.complex_mul(s_conj, fastmri.ifft2c(m * k)).sum(dim=1)

    return normal


class ProposedNormal:
    """Candidate faster ``SenseOp.normal`` for even sizes, measured here as a patch proposal.

    Same folding of the FFT centering into the maps as :class:`SenseOp` (the global sign cancels in
    AᴴA), plus: conj(maps) resolved once (multiplying by a lazily conjugated tensor is slower),
    in-place mask and map products (valid with autograd off, as inside ``cg_solve``'s solves) and,
    with ``along_w_only``, 1-D FFTs along W: for a mask constant along H (every fastMRI Cartesian
    mask) the H-direction FFT and inverse FFT cancel, ``F₂ᴴ M F₂ = F_Wᴴ M F_W``.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor, along_w_only: bool) -> None:
        _, _, h, w = maps.shape
        if h % 2 or w % 2:
            raise ValueError(f"ProposedNormal needs even H and W, got {h} and {w}")
        if along_w_only and mask.shape[-2] != 1:
            raise ValueError(
                f"1-D FFTs need a mask constant along H, got shape {tuple(mask.shape)}"
            )
        self.maps = maps * checkerboard(h, w, dtype=maps.real.dtype)
        self.maps_conj = self.maps.conj().resolve_conj()
        self.mask_sq = mask.to(maps.real.dtype).square()
        self.dims = (-1,) if along_w_only else (-2, -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` complex → ``[B, H, W]`` complex; autograd must be off."""
        k = torch.fft.fftn(self.maps * x.unsqueeze(1), dim=self.dims, norm="ortho")
        coil_imgs = torch.fft.ifftn(k.mul_(self.mask_sq), dim=self.dims, norm="ortho")
        return coil_imgs.mul_(self.maps_conj).sum(dim=1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


NORMAL_VARIANTS = {
    "ours": "ours: `SenseOp.normal`",
    "fastmri": "fastmri real view (`fft2c`, `complex_mul`)",
    "floor": "floor: `fft2` + `ifft2` on [B, C, H, W]",
    "proposed_a": "proposal A: cached conj(maps), in-place products",
    "proposed_b": "proposal B: A + 1-D FFTs along W",
}


def bench_normal(
    size: int,
    coils: int,
    batch: int,
    repeats: int,
    seed: int,
    cg_iters: int = 10,
    clock: str = "wall",
) -> dict:
    """Time the normal-operator variants (and a no-grad CG solve with ours vs proposal B).

    Returns ``{"ms": {variant: median ms of `clock`}, "wall_ms", "min_ms" (wall), "cpu_ms":
    ..., "rel_err": {variant: rel. L2 difference from ours}, "cg_ms": {...} (`clock`)}``.
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    p = make_problem(size, coils, batch, seed)
    op = SenseOp(p.maps, p.mask)
    x = p.z.contiguous()
    x_real = complex_to_real(x).contiguous()
    coil_x = p.maps * x.unsqueeze(1)
    ref_fastmri = fastmri_normal(p.maps, p.mask)
    prop_a = ProposedNormal(p.maps, p.mask, along_w_only=False)
    prop_b = ProposedNormal(p.maps, p.mask, along_w_only=True)
    fns: dict[str, Callable[[], object]] = {
        "ours": lambda: op.normal(x),
        "fastmri": lambda: ref_fastmri(x_real),
        "floor": lambda: torch.fft.ifft2(torch.fft.fft2(coil_x, norm="ortho"), norm="ortho"),
        "proposed_a": lambda: prop_a(x),
        "proposed_b": lambda: prop_b(x),
    }
    with torch.no_grad():
        want = op.normal(x)
        rel_err = {
            "fastmri": _rel(torch.view_as_complex(ref_fastmri(x_real)), want),
            "proposed_a": _rel(prop_a(x), want),
            "proposed_b": _rel(prop_b(x), want),
        }
    timings = time_interleaved(fns, repeats)

    def solve(normal: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        return lambda: cg_solve(normal, x, p.lam, max_iter=cg_iters, tol=0.0)

    cg_t = time_interleaved(
        {"ours": solve(op.normal), "proposed_b": solve(prop_b)}, max(3, repeats // 5), warmup=1
    )

    def pick(t: Timing) -> float:
        return t.cpu_median_ms if clock == "cpu" else t.median_ms

    return {
        "batch": batch,
        "ms": {k: pick(t) for k, t in timings.items()},
        "wall_ms": {k: t.median_ms for k, t in timings.items()},
        "min_ms": {k: t.min_ms for k, t in timings.items()},
        "cpu_ms": {k: t.cpu_median_ms for k, t in timings.items()},
        "repeats": repeats,
        "rel_err": rel_err,
        "cg_ms": {k: pick(t) for k, t in cg_t.items()},
    }


# --------------------------------------------------------------------------- part 2: CG backward

GRAD_NAMES = ("rhs", "lam", "maps", "z")
MEMORY_MODES = ("none", "implicit", "unrolled")  # "none": no CG, x = rhs / (1 + λ) (baseline)


def dc_step(
    p: Problem,
    mode: str,
    max_iter: int,
    tol: float = 0.0,
    keep_grads: bool = True,
    maps_grad: bool = True,
) -> dict[str, torch.Tensor]:
    """Forward + backward of ``x = cg_solve(AᴴA, Aᴴy + λz, λ)`` with loss ``‖x - target‖²``.

    ``mode``: ``"implicit"`` or ``"unrolled"`` backward, or ``"none"`` (no CG, ``x = rhs/(1+λ)``,
    the memory baseline). ``z``, ``λ`` and (if ``maps_grad``) the coil maps require grad, so the
    rhs comes out of a differentiable computation and autograd stores the whole graph. Returns
    the gradients w.r.t. ``rhs``, ``λ``, maps and ``z`` (empty dict when ``keep_grads`` is false,
    so nothing extra stays alive).
    """
    if mode not in MEMORY_MODES:
        raise ValueError(f"mode must be one of {MEMORY_MODES}, got {mode!r}")
    maps = p.maps.clone().requires_grad_(maps_grad)
    z = p.z.clone().requires_grad_(True)
    lam = torch.tensor(p.lam, dtype=maps.real.dtype, requires_grad=True)
    op = SenseOp(maps, p.mask)
    rhs = op.A_adjoint(p.y) + lam * z
    if keep_grads:
        rhs.retain_grad()
    if mode == "none":
        x = rhs / (1 + lam)
    else:
        x = cg_solve(
            op.normal,
            rhs,
            lam,
            max_iter=max_iter,
            tol=tol,
            implicit_backward=mode == "implicit",
            params=op.grad_tensors,
        )
    (x - p.target).abs().pow(2).sum().backward()
    if not keep_grads:
        return {}
    return {"rhs": rhs.grad, "lam": lam.grad, "maps": maps.grad, "z": z.grad}


def grad_rel_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative L2 difference ``‖a - b‖ / ‖b‖`` for each gradient."""
    return {k: _rel(a[k].to(b[k].dtype), b[k]) for k in GRAD_NAMES}


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


def memory_child(problem_file: Path, mode: str, iters: int, maps_grad: bool) -> dict:
    """Runs inside a fresh process (see :func:`bench_memory`): one warm-up step, then the peak RSS
    growth of one forward + backward (median of 3) and the bytes saved for backward."""
    p = Problem.load(problem_file)

    def step() -> None:
        dc_step(p, mode, iters, keep_grads=False, maps_grad=maps_grad)

    step()  # warm-up: FFT plans, thread pools
    peaks = sorted(peak_rss_delta(step) for _ in range(3))
    saved = saved_tensor_bytes(step, exclude=(p.maps, p.z, p.y, p.target))
    return {"peak_rss_bytes": peaks[1], "saved_bytes": saved}


def bench_memory(
    p: Problem, iters: int, maps_grad: bool = True, modes: Sequence[str] = MEMORY_MODES
) -> dict[str, dict]:
    """Peak memory of forward + backward for each mode (see :func:`dc_step`), one fresh
    subprocess each, run side by side. Returns ``{mode: {"peak_rss_bytes": int,
    "saved_bytes": int}}``."""
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        problem_file = Path(tmp) / "problem.pt"
        p.save(problem_file)
        argv = [script, "--problem-file", str(problem_file), "--cg-iters", str(iters)]
        if not maps_grad:
            argv.append("--fixed-maps")
        res = run_children([[*argv, "--memory-child", m] for m in modes])
    return dict(zip(modes, res, strict=True))


# --------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def _baseline_note(base: int | None, unrolled_peak: int) -> str:
    """Sentence on how much of the unrolled peak the no-CG step already takes."""
    if base is None:
        return ""
    share = base / unrolled_peak
    return f" The no-CG step alone peaks at {share:.2f}× the unrolled peak" + (
        f", so no backward scheme can reach ≤ {TARGET_MEMORY_RATIO} on the total peak here."
        if share > TARGET_MEMORY_RATIO
        else "."
    )


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def render(
    args: argparse.Namespace,
    machine: dict,
    normal_rows: list[dict],
    memory: dict,
    grads: list[dict],
    load_end: str,
) -> str:
    """Markdown body of the ``## Physics`` section."""
    b, c, s = args.batch, args.coils, args.size
    lines = [
        f"`python benchmarks/bench_physics.py --size {s} --coils {c} --batch "
        f"{' '.join(map(str, b))} --repeats {args.repeats} --cg-iters {args.cg_iters} "
        f"--seed {args.seed} --clock {args.clock}"
        + ("" if args.threads is None else f" --threads {args.threads}")
        + "`",
        "",
        "Machine:",
        "",
        format_machine(machine),
        f"- load average at end: {load_end}",
    ]
    if args.note:
        lines.append(f"- note: {args.note}")
    lines += [
        "",
        f"### 1. SENSE normal operator AᴴA ({s}×{s}, {c} coils, complex64, no autograd)",
        "",
        f"Median of {args.repeats} interleaved repeats after 2 warm-up calls (each round runs every "
        "variant once, in rotating order, so other load on the machine hits all alike). Ratios "
        f"and verdicts use the **{args.clock}** medians"
        + (
            " (process CPU time with one torch thread: the operator's own work, without the time "
            "slices lost to other processes)"
            if args.clock == "cpu"
            else ""
        )
        + ". fastmri works on real-view `[..., 2]` float32 tensors with maps already "
        "in that layout; the floor runs `fft2` then `ifft2` (ortho) on a `[B, C, H, W]` complex64 "
        "tensor, i.e. only the 2·C FFTs that AᴴA needs.",
        "",
        "| B | variant | wall median ms | wall min ms | CPU median ms | × ours | × floor "
        "| rel. diff. from ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for row in normal_rows:
        ms, ours = row["ms"], row["ms"]["ours"]
        for key, label in NORMAL_VARIANTS.items():
            err = row["rel_err"].get(key)
            lines.append(
                f"| {row['batch']} | {label} | {row['wall_ms'][key]:.2f} | "
                f"{row['min_ms'][key]:.2f} | {row['cpu_ms'][key]:.2f} | {ms[key] / ours:.2f} | {ms[key] / ms['floor']:.2f} | "
                f"{'—' if err is None else f'{err:.1e}'} |"
            )
        speedup, floor_ratio = ms["fastmri"] / ours, ours / ms["floor"]
        verdicts.append(
            f"- B={row['batch']}: ours is {speedup:.2f}× faster than fastmri's real view (target ≥ "
            f"{TARGET_VS_FASTMRI}×: {_verdict(speedup >= TARGET_VS_FASTMRI)}) and takes "
            f"{floor_ratio:.2f}× the bare-FFT floor (target ≤ {TARGET_VS_FLOOR}×: "
            f"{_verdict(floor_ratio <= TARGET_VS_FLOOR)}"
            + (
                ""
                if floor_ratio <= TARGET_VS_FLOOR
                else f", over by {floor_ratio / TARGET_VS_FLOOR - 1:.0%}"
            )
            + f"). Proposal A: {ms['proposed_a'] / ms['floor']:.2f}× floor; proposal B: "
            f"{ms['proposed_b'] / ms['floor']:.2f}× floor, {ours / ms['proposed_b']:.2f}× faster "
            f"than ours. Whole no-grad CG solve ({args.cg_iters} iterations, {args.clock}): ours "
            f"{row['cg_ms']['ours']:.1f} ms, proposal B {row['cg_ms']['proposed_b']:.1f} ms."
        )
    lines += ["", *verdicts]

    at_k = next(r for r in grads if r["iters"] == args.cg_iters)
    worst_k = max(at_k["implicit_vs_unrolled"].values())
    lines += [
        "",
        f"### 2. CG with implicit backward vs autograd through {args.cg_iters} CG iterations",
        "",
        f"One MoDL data-consistency step, batch 1, {s}×{s}, {c} coils, complex64, λ = "
        f"{args.lam}: `rhs = Aᴴy + λz`, `x = cg_solve(AᴴA, rhs, λ, max_iter="
        f"{args.cg_iters}, tol=0)`, loss `‖x − target‖²`, with `z` (stand-in for the denoiser "
        "output) and λ requiring grad, so the rhs comes out of a differentiable computation and "
        "the graph of every CG iteration is stored. Two cases: learned coil maps (maps require "
        "grad and reach CG via `params=op.grad_tensors`; the gradients below are for this case) "
        "and fixed maps (e.g. precomputed ESPIRiT). Problem: Shepp-Logan phantom, sigpy birdcage "
        "maps normalised to root-sum-of-squares 1, fastMRI equispaced mask (4×, 8 % centre), "
        "1 % noise.",
        "",
        "Memory method: each configuration runs in its own fresh subprocess (one thread) with "
        "`MALLOC_MMAP_THRESHOLD_=65536`: every allocation ≥ 64 KiB is mmap'ed and returned to "
        "the OS on free, so the resident set follows the live tensors instead of glibc's retained "
        "heap. After one warm-up step (FFT plans) the kernel's peak-RSS mark is reset "
        "(`echo 5 > /proc/self/clear_refs`); peak = `VmHWM` after forward + backward − `VmRSS` "
        "before (median of 3 steps). This is the true peak of forward + backward, including "
        "the CG work vectors, the operator's temporaries and the gradients. `no CG` is the same "
        "step with `x = rhs / (1 + λ)`: the memory of the rhs graph, the loss and the gradients "
        "that every variant pays; `above no CG` subtracts it. `saved` = bytes of the distinct "
        "storages autograd keeps for backward (`torch.autograd.graph.saved_tensors_hooks`), "
        "inputs excluded. `tracemalloc` is not used: torch's CPU allocator calls `malloc` "
        "directly and is invisible to it.",
        "",
        "| coil maps | backward | peak RSS growth, fwd + bwd | above no CG | saved for backward |",
        "|---|---|---|---|---|",
    ]
    mem_verdicts = []
    for case, res in memory.items():
        base = res.get("none", {}).get("peak_rss_bytes")
        labels = {
            "none": "no CG (baseline)",
            "implicit": "implicit",
            "unrolled": f"autograd through {args.cg_iters} iterations",
        }
        for mode, label in labels.items():
            if mode in res:
                peak = res[mode]["peak_rss_bytes"]
                above = "—" if base is None or mode == "none" else _mib(peak - base)
                lines.append(
                    f"| {case} | {label} | {_mib(peak)} | {above} | "
                    f"{_mib(res[mode]['saved_bytes'])} |"
                )
        imp, unr = res["implicit"], res["unrolled"]
        peak_ratio = imp["peak_rss_bytes"] / unr["peak_rss_bytes"]
        saved_ratio = imp["saved_bytes"] / unr["saved_bytes"]
        above = (
            None
            if base is None
            else (imp["peak_rss_bytes"] - base) / (unr["peak_rss_bytes"] - base)
        )
        lines.append(
            f"| {case} | ratio implicit / unrolled | {peak_ratio:.3f} | "
            f"{'—' if above is None else f'{above:.3f}'} | {saved_ratio:.3f} |"
        )
        mem_verdicts.append(
            f"- {case} maps: peak memory ratio implicit / unrolled {peak_ratio:.3f} (target ≤ "
            f"{TARGET_MEMORY_RATIO}: {_verdict(peak_ratio <= TARGET_MEMORY_RATIO)}"
            + (
                ""
                if peak_ratio <= TARGET_MEMORY_RATIO
                else f", over by {peak_ratio / TARGET_MEMORY_RATIO - 1:.0%}"
            )
            + ")"
            + ("" if above is None else f"; above the no-CG baseline {above:.3f}")
            + f"; saved-for-backward ratio {saved_ratio:.3f}."
            + _baseline_note(base, unr["peak_rss_bytes"])
        )
    lines += [
        "",
        *mem_verdicts,
        "",
        "Gradients: relative L2 difference per gradient (w.r.t. rhs, λ, maps, z), complex64. "
        "`exact` is the gradient of the converged solve (complex128, implicit backward, "
        "tol 1e-12).",
        "",
        "| CG iterations | implicit vs unrolled | implicit vs exact | unrolled vs exact |",
        "|---|---|---|---|",
    ]

    def fmt(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {d[k]:.1e}" for k in GRAD_NAMES)

    for r in grads:
        lines.append(
            f"| {r['iters']} | {fmt(r['implicit_vs_unrolled'])} | {fmt(r['implicit_vs_exact'])} | "
            f"{fmt(r['unrolled_vs_exact'])} |"
        )
    converged = [r["iters"] for r in grads if max(r["implicit_vs_unrolled"].values()) <= 1e-4]
    lines += [
        "",
        f"- gradient difference at {args.cg_iters} iterations: worst {worst_k:.1e} (target ≤ "
        f"{TARGET_GRAD_REL:.0e}: {_verdict(worst_k <= TARGET_GRAD_REL)}"
        + ("" if worst_k <= TARGET_GRAD_REL else f", {worst_k / TARGET_GRAD_REL:.0f}× too large")
        + "). The implicit backward is the exact gradient of the *converged* solve; autograd "
        "through a fixed number of iterations differentiates the truncated iteration. The two "
        "agree only once CG has converged"
        + (f" (≤ 1e-4 from {converged[0]} iterations on here)" if converged else "")
        + "; before that, the implicit gradient is the closer one to the exact-solve gradient "
        "(third vs fourth column).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark the SENSE normal operator and implicit-backward CG; writes the "
        "'## Physics' section of benchmarks/RESULTS.md.",
    )
    ap.add_argument("--size", type=int, default=320, help="image size H = W (even; default 320)")
    ap.add_argument("--coils", type=int, default=8, help="number of coils C (default 8)")
    ap.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[1, 4],
        help="batch sizes for the operator timings (default 1 4); memory and gradients use batch 1",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=30,
        help="timed repeats per variant, after 2 warm-up calls (default 30)",
    )
    ap.add_argument(
        "--cg-iters",
        type=int,
        default=10,
        help="CG iterations for the memory comparison (default 10)",
    )
    ap.add_argument(
        "--grad-iters",
        type=int,
        nargs="+",
        default=[10, 20, 30, 50],
        help="CG iteration counts for the gradient table (default 10 20 30 50); "
        "--cg-iters is added if missing",
    )
    ap.add_argument("--lam", type=float, default=0.05, help="regularisation λ (default 0.05)")
    ap.add_argument("--seed", type=int, default=0, help="seed for noise, phase and masks")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's default)",
    )
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="which median the ratios use: wall clock (default) or process CPU time; 'cpu' needs "
        "--threads 1 and suits a machine shared with other jobs",
    )
    ap.add_argument(
        "--note", default="", help="free text added to the machine description (e.g. other load)"
    )
    ap.add_argument(
        "--output",
        type=Path,
        default=RESULTS_PATH,
        help=f"results file whose '## {SECTION}' section is rewritten (default {RESULTS_PATH})",
    )
    ap.add_argument(
        "--no-write",
        action="store_true",
        help="print the section instead of writing the results file",
    )
    ap.add_argument(
        "--memory-child",
        choices=MEMORY_MODES,
        default=None,
        help="internal: measure one memory configuration and print JSON",
    )
    ap.add_argument(
        "--problem-file",
        type=Path,
        default=None,
        help="internal: problem saved by the parent for --memory-child",
    )
    ap.add_argument(
        "--fixed-maps",
        action="store_true",
        help="internal: with --memory-child, coil maps do not require grad",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.cg_iters < 1 or min(args.grad_iters) < 1:
        ap.error("--repeats, --cg-iters and --grad-iters must be >= 1")
    if args.lam <= 0:
        ap.error(f"--lam must be > 0, got {args.lam}")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time of several threads adds up their work)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.memory_child:
        if args.problem_file is None:
            raise ValueError("--memory-child needs --problem-file")
        res = memory_child(args.problem_file, args.memory_child, args.cg_iters, not args.fixed_maps)
        print(json.dumps(res))
        return
    machine = machine_description()
    normal_rows = []
    for b in args.batch:
        normal_rows.append(
            bench_normal(
                args.size, args.coils, b, args.repeats, args.seed, args.cg_iters, args.clock
            )
        )
        print(f"normal operator, batch {b}: {normal_rows[-1]['ms']}", file=sys.stderr)
    problem = make_problem(args.size, args.coils, 1, args.seed, args.lam)
    memory = {
        "learned": bench_memory(problem, args.cg_iters, maps_grad=True),
        "fixed": bench_memory(problem, args.cg_iters, maps_grad=False),
    }
    print(f"memory: {memory}", file=sys.stderr)
    iters = sorted(set(args.grad_iters) | {args.cg_iters})
    grads = bench_gradients(problem, iters)
    load_end = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    body = render(args, machine, normal_rows, memory, grads, load_end)
    if args.no_write:
        print(body)
    else:
        write_section(SECTION, body, args.output)
        print(f"wrote section '{SECTION}' of {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
