"""Does unstructured sparsity speed up inference on CPU? Sparse kernels against the dense conv.

Run from the repository root (writes ``benchmarks/results/sparse_conv.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_sparse_conv.py [--size 64 128 320] [--density 0.01 0.03 0.05 0.1 0.3]

The 3×3 convolutions of MoDL's denoiser (2→64, 64→64, 64→2; batch 1, float32, forward without
autograd, one thread) with random unstructured weight masks at each density, computed by:

- ``dense``: ``F.conv2d`` on the masked weights (the reference: what a pruned model runs today);
- ``winograd``: NNPACK's Winograd convolution (our fastest dense path, ``conv_algorithm``);
- ``unfold``: ``F.unfold`` alone (the 9× patch copy the next two pay);
- ``csr_unfold``: ``torch.sparse.mm`` of the CSR weight ``[C_out, 9·C_in]`` and the unfolded patches;
- ``scipy_unfold``: the same product by ``scipy.sparse.csr_matrix`` (scipy's C++ CSR kernel);
- ``csr_shift``: per kernel tap ``(dy, dx)``, ``torch.sparse.mm`` of that tap's CSR weight slice
  ``[C_out, C_in]`` and the shifted input (a strided view of the padded, flattened input: no copy);
- ``compact_shift``: the same with each tap's slice compacted to its nonzero rows and columns (a
  small dense matmul over the gathered input channels, ``index_add_`` into the output rows);
- ``shift_acc``: one ``axpy`` per nonzero weight over the shifted input
  (``fastmri_pun.pruning.sparse_inference.ShiftAccumulateConv2d``).

Every output is checked against ``dense`` (relative error ≤ 1e-5, else the script fails). Then
the whole 7-layer denoiser (BatchNorm folded) and a MoDL eval-mode reconstruction, with the
denoiser pruned at ``--model_density``: dense against ``sparsify_for_inference``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from collections.abc import Callable, Sequence
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
from torch.nn import functional as F

from fastmri_pun.models import MoDL
from fastmri_pun.models import fast_paths as fp
from fastmri_pun.pruning.apply import apply_masks
from fastmri_pun.pruning.sparse_inference import ShiftAccumulateConv2d, sparsify_for_inference

RESULTS_FILE = "sparse_conv.json"
MAX_REL_ERR = 1e-5
TARGET_RATIO = 1.0  # sparse / dense at 3 %
VARIANTS = {
    "winograd": "Winograd (dense)",
    "unfold": "unfold alone",
    "csr_unfold": "torch CSR × unfold",
    "scipy_unfold": "scipy CSR × unfold",
    "csr_shift": "torch CSR per tap",
    "compact_shift": "compacted dense per tap",
    "shift_acc": "shift-accumulate",
}


# --------------------------------------------------------------------------- sparse kernels


def _flat_padded(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``[1, C, H, W]`` → padded rows end to end ``[C, (H+2)(W+2) + 2]``, the padded width and the
    length ``H·(W+2)`` of each tap's slice (tap ``(dy, dx)`` starts at ``dy·(W+2) + dx``)."""
    _, c, h, w = x.shape
    flat = x.new_zeros(c, (h + 2) * (w + 2) + 2)
    flat[:, : (h + 2) * (w + 2)].view(c, h + 2, w + 2)[:, 1:-1, 1:-1] = x[0]
    return flat, w + 2, h * (w + 2)


def kernels(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> dict[str, Callable]:
    """The variants of the module docstring for one layer: ``x [1, C_in, H, W]``, ``w [C_out,
    C_in, 3, 3]`` (masked), ``b [C_out]``; each returns ``[1, C_out, H, W]`` (``unfold``: the
    patches)."""
    import scipy.sparse

    c_out, _, h, width = w.shape[0], *x.shape[1:]
    w2 = w.reshape(c_out, -1)
    taps = [(dy, dx, w[:, :, dy, dx].contiguous()) for dy in range(3) for dx in range(3)]
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr, sp = w2.to_sparse_csr(), scipy.sparse.csr_matrix(w2.numpy())
        tap_csr = [(dy, dx, t.to_sparse_csr()) for dy, dx, t in taps if t.any()]
    compact = []
    for dy, dx, t in taps:
        rows, cols = t.any(1).nonzero()[:, 0], t.any(0).nonzero()[:, 0]
        if len(rows):
            compact.append((dy, dx, rows, cols, t[rows][:, cols].contiguous()))
    sa = ShiftAccumulateConv2d(w, b, padding=(1, 1)).eval()

    def shape(out2: torch.Tensor) -> torch.Tensor:
        return out2.add_(b[:, None]).view(1, c_out, h, width)

    def csr_shift() -> torch.Tensor:
        flat, wp, n = _flat_padded(x)
        out = b[:, None].repeat(1, n)
        for dy, dx, t in tap_csr:
            s = dy * wp + dx
            out.add_(torch.sparse.mm(t, flat[:, s : s + n]))
        return out.view(1, c_out, h, wp)[..., :width]

    def compact_shift() -> torch.Tensor:
        flat, wp, n = _flat_padded(x)
        out = b[:, None].repeat(1, n)
        for dy, dx, rows, cols, t in compact:
            s = dy * wp + dx
            out.index_add_(0, rows, t @ flat[cols, s : s + n])
        return out.view(1, c_out, h, wp)[..., :width]

    fns: dict[str, Callable] = {
        "dense": lambda: F.conv2d(x, w, b, padding=1),
        "unfold": lambda: F.unfold(x, 3, padding=1),
        "csr_unfold": lambda: shape(torch.sparse.mm(csr, F.unfold(x, 3, padding=1)[0])),
        "scipy_unfold": lambda: shape(torch.from_numpy(sp @ F.unfold(x, 3, padding=1)[0].numpy())),
        "csr_shift": csr_shift,
        "compact_shift": compact_shift,
        "shift_acc": lambda: sa(x),
    }
    if fp.winograd_available():
        fns["winograd"] = lambda: fp.winograd_conv2d(x, w, b)
    return fns


def random_mask(shape: Sequence[int], density: float, gen: torch.Generator) -> torch.Tensor:
    """Bool mask with exactly ``round(density · numel)`` (at least 1) True entries, uniformly."""
    n = int(torch.Size(shape).numel())
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=gen)[: max(1, round(density * n))]] = True
    return keep.view(*shape)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def bench_layer(size: int, c_in: int, c_out: int, density: float, args: argparse.Namespace):
    """Timings and output errors of every variant for one layer, size and density."""
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(1, c_in, size, size, generator=gen)
    w = torch.randn(c_out, c_in, 3, 3, generator=gen) * (2 / (9 * c_in)) ** 0.5
    w = w * random_mask(w.shape, density, gen)
    b = torch.randn(c_out, generator=gen) * 0.1
    fns = kernels(x, w, b)
    with torch.inference_mode():
        ref = fns["dense"]()
        errs = {k: _rel(f(), ref) for k, f in fns.items() if k not in ("dense", "unfold")}
    bad = {k: e for k, e in errs.items() if not e <= MAX_REL_ERR}
    if bad:
        raise RuntimeError(f"{c_in}→{c_out} {size}² {density}: outputs differ from dense {bad}")
    timings = time_interleaved(fns, args.repeats, args.warmup)
    print(f"{size}² {c_in}→{c_out} {density:.0%}: ms "
          f"{ {k: round(getattr(t, args.attr), 2) for k, t in timings.items()} }",
          file=sys.stderr)  # fmt: skip
    return {"timings": timings, "max_rel_err": max(errs.values())}


# --------------------------------------------------------------------------- whole models


def pruned_modl(args: argparse.Namespace, winograd: bool = False) -> MoDL:
    """Eval-mode MoDL whose denoiser convs are pruned at ``--model_density`` (random masks, random
    BatchNorm statistics, BatchNorm folded); the same weights for every call."""
    torch.manual_seed(args.seed)
    model = MoDL(num_unrolls=args.unrolls, num_cg_iters=args.cg_iters, chans=args.chans,
                 num_layers=args.layers, learn_sens_maps=False, fuse_bn_eval=True,
                 conv_algorithm="winograd" if winograd else "default")  # fmt: skip
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for mod in model.denoiser.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1, generator=gen)
                mod.running_var.uniform_(0.5, 2.0, generator=gen)
    masks = {f"denoiser.{n}": random_mask(p.shape, args.model_density, gen)
             for n, p in model.denoiser.named_parameters() if p.ndim == 4}  # fmt: skip
    return apply_masks(model, masks).eval()


def bench_models(size: int, args: argparse.Namespace) -> dict:
    """Whole denoiser and MoDL reconstruction: dense (F.conv2d, Winograd) against sparse."""
    dense, wino = pruned_modl(args), pruned_modl(args, winograd=True)
    sparse = copy.deepcopy(dense)
    sparsify_for_inference(sparse.denoiser)
    p = make_problem(size, args.coils, 1, args.seed)
    ks, mask = torch.view_as_real(p.y).contiguous(), p.mask[..., None]
    img = torch.randn(1, 2, size, size, generator=torch.Generator().manual_seed(args.seed))
    out = {}
    for part in ("denoiser", "modl"):
        if part == "denoiser":
            fns = {k: (lambda m=m: m.denoiser(img)) for k, m in
                   (("dense", dense), ("winograd", wino), ("shift_acc", sparse))}  # fmt: skip
        else:
            fns = {k: (lambda m=m: m(ks, mask, sens_maps=p.maps)) for k, m in
                   (("dense", dense), ("winograd", wino), ("shift_acc", sparse))}  # fmt: skip
        with torch.inference_mode():
            ref = fns["dense"]()
            errs = {k: _rel(fns[k](), ref) for k in ("winograd", "shift_acc")}
        if not errs["shift_acc"] <= MAX_REL_ERR:
            raise RuntimeError(f"{part} {size}²: sparse output differs from dense by {errs}")
        out[part] = {"timings": time_interleaved(fns, args.repeats, args.warmup), "errs": errs}
        print(f"{size}² {part}: ms "
              f"{ {k: round(getattr(t, args.attr), 1) for k, t in out[part]['timings'].items()} }",
              file=sys.stderr)  # fmt: skip
    return out


# --------------------------------------------------------------------------- results

NOT_SETTINGS = ("note", "output_dir", "attr")
NOTES = [
    "Forward only, `torch.inference_mode()`, float32, batch 1, one thread; medians of `repeats` "
    "interleaved rounds (each variant once per round, in rotating order) after `warmup` calls; "
    "ratios use the `clock` medians (cpu: process CPU time, which other processes' load does "
    "not inflate). Random unstructured masks with exactly round(density · numel) nonzeros.",
    "Every variant's output is checked against dense `F.conv2d` on the masked weights (relative "
    "error ≤ 1e-5, else the run fails); the largest error is in the tables.",
    "Work of a 3×3 conv at density d: d · C_out · C_in · 9 · H · W multiply-adds sparse against "
    "all of them dense, but oneDNN's dense kernels run many times more multiply-adds per second "
    "than any sparse kernel here; the unfold-based products also pay the 9× patch copy, which "
    "alone costs more than the dense conv with 64 input channels (column `unfold alone`).",
    "Whole models: the 7-layer denoiser (BatchNorm folded: `fuse_bn_eval`) and a MoDL eval-mode "
    "reconstruction with every denoiser conv pruned at `model_density`; sparse = "
    "`sparsify_for_inference` (shift-accumulate, BatchNorm folded into it; on images under "
    "`DEFAULT_MIN_PIXELS` = 128² its layers run dense `F.conv2d`, so 64² is 1.0× by "
    "construction). torch has no "
    "unstructured-sparse convolution of its own on CPU (no mkldnn sparse op; the semi-structured "
    "2:4 kernels are CUDA-only and need 50 % density).",
    "The per-nonzero `axpy`s are memory-bound and suffer more than dense GEMMs from other "
    "processes' cache and memory traffic (and the small 2→64 dense conv varies most between "
    "runs): compare ratios measured on an idle machine.",
]


def build_results(layers: list[dict], models: dict[int, dict], args: argparse.Namespace) -> dict:
    """Targets and tables of one run (keyword arguments of ``common.write_results``)."""
    attr, c = args.attr, args.chans
    targets, tables = [], []
    for size in args.size:
        rows = []
        for r in (r for r in layers if r["size"] == size):
            t = r["timings"]
            base = getattr(t["dense"], attr)
            ratios = [getattr(t[k], attr) / base if k in t else None for k in VARIANTS]
            rows.append([r["layer"], r["density"], base, *ratios, r["max_rel_err"]])
            if r["density"] == 0.03 and r["layer"] == f"{c}→{c}":
                for k in ("shift_acc", "csr_unfold"):
                    targets.append(target(f"{size}²: {c}→{c} conv at 3 %, {VARIANTS[k]} / dense",
                                          ratios[list(VARIANTS).index(k)], "<=", TARGET_RATIO))  # fmt: skip
        header = ["layer", "density", f"dense {args.clock} ms",
                  *[f"{v} × dense" for v in VARIANTS.values()], "max rel. err."]  # fmt: skip
        tables.append(table(f"One 3×3 conv, {size}×{size}: time relative to dense `F.conv2d`",
                            header, rows, ["", ".0%", ".2f", *[".2f"] * len(VARIANTS), ".1e"],
                            "lrr" + "r" * len(VARIANTS) + "r"))  # fmt: skip
        rows_m = []
        for part, res in models[size].items():
            t, base = res["timings"], getattr(res["timings"]["dense"], attr)
            for k, label in (("dense", "dense `F.conv2d`"), ("winograd", "dense Winograd"),
                             ("shift_acc", "`sparsify_for_inference`")):  # fmt: skip
                rows_m.append([part, label, t[k].median_ms, t[k].cpu_median_ms,
                               getattr(t[k], attr) / base, res["errs"].get(k)])  # fmt: skip
            ratio = getattr(t["shift_acc"], attr)
            targets.append(target(f"{size}²: {part} at {args.model_density * 100:g} %, sparse / dense",
                                  ratio / base, "<=", TARGET_RATIO))  # fmt: skip
            if part == "denoiser":
                targets.append(target(f"{size}²: denoiser, sparse / dense Winograd",
                                      ratio / getattr(t["winograd"], attr), "<=", TARGET_RATIO))  # fmt: skip
        tables.append(table(f"Whole denoiser and MoDL reconstruction at "
                            f"{args.model_density * 100:g} % density, {size}×{size}",
                            ["part", "variant", "wall median ms", "CPU median ms", "× dense",
                             "rel. diff."], rows_m, ["", "", ".1f", ".1f", ".2f", ".1e"],
                            "llrrrr"))  # fmt: skip
    return {"targets": targets, "tables": tables}


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time sparse kernels against the dense 3×3 conv at several weight densities; "
        f"writes {RESULTS_FILE} (render it with benchmarks/render.py).",
    )
    ap.add_argument("--size", type=int, nargs="+", default=None, help="image sizes")
    ap.add_argument("--density", type=float, nargs="+", default=None, help="weight densities")
    ap.add_argument("--model_density", type=float, default=0.03, help="density of whole models")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--layers", type=int, default=7, help="denoiser conv layers")
    ap.add_argument("--coils", type=int, default=8, help="MoDL: coils")
    ap.add_argument("--unrolls", type=int, default=3, help="MoDL: unrolled iterations")
    ap.add_argument("--cg_iters", type=int, default=10, help="MoDL: CG iterations per unroll")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 1)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="median the ratios use (cpu: process CPU time, one thread)")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help="check that it works: 32², 16 channels, 3 layers, 1 round")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed for inputs, weights and masks")
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    add_device_argument(ap)
    ap.set_defaults(device="cpu")
    args = ap.parse_args(argv)
    if args.device.type != "cpu":
        ap.error("this benchmark measures CPU kernels: use --device cpu")
    if args.quick:
        args.size = args.size or [32]
        args.density = args.density or [0.03, 0.3]
        args.chans, args.layers, args.coils, args.unrolls, args.cg_iters = 16, 3, 2, 1, 2
    args.size = args.size or [64, 128, 320]
    args.density = args.density or [0.01, 0.03, 0.05, 0.1, 0.3]
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if any(not 0 < d <= 1 for d in [*args.density, args.model_density]):
        ap.error("densities must be in (0, 1]")
    if min(args.size) < 8 or args.layers < 2 or min(args.repeats, args.chans) < 1:
        ap.error("--size must be >= 8, --layers >= 2, --repeats and --chans >= 1")
    args.attr = "cpu_median_ms" if args.clock == "cpu" else "median_ms"
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark (one thread); returns the written JSON file."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    machine = machine_description()
    machine["cpu capability (torch)"] = torch.backends.cpu.get_cpu_capability()
    machine["MKL"] = str(torch.backends.mkl.is_available())
    machine["NNPACK (Winograd)"] = str(fp.winograd_available())
    c = args.chans
    layers = []
    for size in args.size:
        for c_in, c_out in ((2, c), (c, c), (c, 2)):
            for d in args.density:
                res = bench_layer(size, c_in, c_out, d, args)
                layers.append({"size": size, "layer": f"{c_in}→{c_out}", "density": d, **res})
    models = {size: bench_models(size, args) for size in args.size}
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    settings["device"] = str(args.device)
    switches = [f" --{k}" for k, v in settings.items() if v is True]
    valued = {k: v for k, v in settings.items() if not isinstance(v, bool)}
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="Unstructured sparsity at inference (CPU)",
        command=command_line("benchmarks/bench_sparse_conv.py", valued) + "".join(switches),
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(layers, models, args),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
