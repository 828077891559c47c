"""MoDL training-step benchmark: our MoDL and its speed paths against deepinv's ``MoDL``.

Run from the repository root (writes ``benchmarks/results/modl_step.json``; then
``python benchmarks/render.py``). deepinv is needed for the comparison only (``pip install
deepinv``; it is no dependency of fastmri-pun)::

    python benchmarks/bench_modl.py [--size 128 320] [--threads 1] [--repeats 5] [--quick]

One Adam step (forward, loss, backward, ``optimizer.step``) on the same problem (Shepp-Logan
phantom, birdcage coil maps, equispaced 4× mask; batch 1, 8 coils, 3 unrolls, 10 CG iterations,
7-layer 64-channel denoiser). deepinv: ``MultiCoilMRI`` with our mask and maps, ``MoDL`` with a
``DnCNN(depth=7, nf=64)`` (no BatchNorm: deepinv's MoDL denoiser), CG solver with implicit
backward. Ours: the same sizes with BatchNorm (MoDL paper), and each speed path of
``fastmri_pun.models.fast_paths`` or torch. Eval-mode reconstructions (no autograd) compare the
conv-BN folding. ``--device`` (default: CUDA when present) runs every variant there; on CUDA the
bf16 variant is automatic mixed precision of the denoiser (AMP on vs the float32 rows: AMP off),
and the CPU-only Winograd path falls back to the default convolution.
"""

from __future__ import annotations

import argparse
import sys
import time
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
from physics_problem import Problem, make_problem

from fastmri_pun.models import MoDL
from fastmri_pun.models import fast_paths as fp

RESULTS_FILE = "modl_step.json"
TARGET_VS_DEEPINV = 0.6  # our fastest kept path: at most this fraction of deepinv's step time
FASTEST = "winograd"
DEEPINV_MISSING = (
    "bench_modl.py compares with deepinv's MoDL, which is not installed: `pip install deepinv` "
    "(benchmark only; fastmri-pun does not depend on it)"
)
TRAIN_VARIANTS = {
    "deepinv": "deepinv `MoDL` (DnCNN 7×64, no BN)",
    "view": "ours, previous layout (channels-last view into the CNN)",
    "ours": "ours (NCHW layout, the default)",
    "channels_last": "(b) ours, `channels_last` weights and input",
    "bf16": "(c) ours, bf16 autocast (`denoiser_bf16`)",
    "compile": "(d) ours, `torch.compile` of the denoiser",
    "winograd": "ours, Winograd convs (`conv_algorithm=winograd`)",
}
EVAL_VARIANTS = {
    "deepinv": "deepinv `MoDL`",
    "ours": "ours",
    "fused": "(e) ours, conv-BN folded (`fuse_bn_eval`)",
    "winograd": "ours, Winograd",
    "winograd_fused": "ours, Winograd + conv-BN folded",
}


class ViewLayoutMoDL(MoDL):
    """Our MoDL feeding the CNN the zero-copy channels-last view (the layout before NCHW)."""

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(torch.view_as_real(x).permute(0, 3, 1, 2))
        return torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())


def ours(kind: str, args: argparse.Namespace, state: dict | None) -> MoDL:
    """Our MoDL for a variant of :data:`TRAIN_VARIANTS` / :data:`EVAL_VARIANTS`."""
    kwargs = dict(num_unrolls=args.unrolls, num_cg_iters=args.cg_iters, chans=args.chans)
    kwargs.update(num_layers=args.layers, batchnorm=True, learn_sens_maps=False)
    kwargs["conv_algorithm"] = "winograd" if kind.startswith("winograd") else "default"
    kwargs["fuse_bn_eval"] = kind.endswith("fused")
    kwargs["denoiser_bf16"] = kind == "bf16"
    model = (ViewLayoutMoDL if kind in ("view", "channels_last") else MoDL)(**kwargs)
    model.to(args.device)
    if state is not None:
        model.load_state_dict(state)
    if kind == "channels_last":
        model.denoiser.to(memory_format=torch.channels_last)
    if kind == "compile":
        model.denoiser.compile()
    return model


def deepinv_model(p: Problem, args: argparse.Namespace) -> tuple[torch.nn.Module, Callable]:
    """deepinv's MoDL and ``forward() → [B, H, W]`` magnitude on problem ``p``."""
    try:
        import deepinv
    except ImportError:
        raise SystemExit(DEEPINV_MISSING) from None
    b, _, h, w = p.maps.shape
    with warnings.catch_warnings():  # implicit backward with < 20 CG iterations warns
        warnings.simplefilter("ignore")
        physics = deepinv.physics.MultiCoilMRI(
            mask=p.mask.float().expand(b, 1, h, w), coil_maps=p.maps, img_size=(b, 2, h, w),
            max_iter=args.cg_iters, tol=1e-6, solver="CG", implicit_backward_solver=True,
        )  # fmt: skip
    den = deepinv.models.DnCNN(2, 2, depth=args.layers, nf=args.chans, pretrained=None)
    model = deepinv.models.MoDL(denoiser=den, num_iter=args.unrolls).to(args.device)
    y = torch.view_as_real(p.y).permute(0, 4, 1, 2, 3)  # [B, 2, C, H, W]
    return model, lambda: model(y, physics).square().sum(1).sqrt()


def train_fn(model: torch.nn.Module, forward: Callable, tgt: torch.Tensor) -> Callable:
    """One Adam step of ``model``: ``forward() → [B, H, W]``, MSE loss, backward, step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        (forward() - tgt).square().mean().backward()
        opt.step()

    return run


def compare(model: MoDL, ref: dict | None, forward: Callable, tgt: torch.Tensor) -> dict:
    """Output and gradients of one forward + backward (no step), and the wall time it took."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out = forward()
    (out - tgt).square().mean().backward()
    res = {"out": out.detach(), "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}
    res["first_s"] = time.perf_counter() - t0
    if ref is not None:
        res["out_rel"] = _rel(res["out"], ref["out"])
        res["grad_rel"] = max(_rel(res["grads"][n], g) for n, g in ref["grads"].items())
    return res


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def bench_size(size: int, args: argparse.Namespace) -> dict:
    """Training-step and eval timings of every variant at one image size."""
    p = make_problem(size, args.coils, 1, args.seed).on(args.device)
    ks, mask, tgt = torch.view_as_real(p.y).contiguous(), p.mask[..., None], p.target.abs()
    kinds = [k for k in TRAIN_VARIANTS if k != "deepinv"]
    skipped = {}
    if args.bf16 == "off":
        skipped["bf16"] = "not run (--bf16 off)"
    elif args.bf16 == "auto" and not fp.bf16_supported(args.device):
        skipped["bf16"] = f"not run: no native bf16 on this {args.device.type} (--bf16 on runs it)"
    if args.device.type != "cpu":
        skipped["winograd"] = "not run: NNPACK Winograd is a CPU path"
    if args.no_compile:
        skipped["compile"] = "not run (--no_compile)"
    kinds = [k for k in kinds if k not in skipped]
    torch.manual_seed(args.seed)
    state = ours("ours", args, None).state_dict()
    models = {k: ours(k, args, state) for k in kinds}
    fwd = {k: (lambda m=m: m(ks, mask, sens_maps=p.maps)) for k, m in models.items()}
    m64 = ours("ours", args, state).double()
    ks64, maps64 = ks.double(), p.maps.to(torch.complex128)
    exact = compare(m64, None, lambda: m64(ks64, mask, sens_maps=maps64), tgt.double())
    checks = {k: compare(models[k], exact, fwd[k], tgt) for k in kinds}
    dmodel, dfwd = deepinv_model(p, args)
    fns = {"deepinv": train_fn(dmodel, dfwd, tgt)}
    fns.update({k: train_fn(models[k], fwd[k], tgt) for k in kinds})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = time_interleaved(fns, args.repeats, args.warmup, True, args.device)
    print(f"{size}²: training step wall ms {_ms(train)}", file=sys.stderr)

    eval_kinds = [k for k in EVAL_VARIANTS if k != "deepinv" and not k.startswith(tuple(skipped))]
    eval_models = {k: ours(k, args, state).eval() for k in eval_kinds}
    efns: dict[str, Callable] = {"deepinv": dfwd}
    efns.update({k: (lambda m=m: m(ks, mask, sens_maps=p.maps)) for k, m in eval_models.items()})
    with torch.inference_mode():
        e_out = {k: efns[k]() for k in eval_models}
    ev = time_interleaved(efns, args.repeats, args.warmup, device=args.device)
    print(f"{size}²: eval wall ms {_ms(ev)}", file=sys.stderr)
    return {
        "size": size,
        "train": train,
        "eval": ev,
        "checks": checks,
        "eval_rel": {k: _rel(o, e_out["ours"]) for k, o in e_out.items() if k != "ours"},
        "skipped": skipped,
    }


def _ms(timings: dict) -> dict:
    return {k: round(t.median_ms, 1) for k, t in timings.items()}


# --------------------------------------------------------------------------- results

NOT_SETTINGS = ("note", "output_dir")
NOTES = [
    "One Adam step = forward, MSE loss on the magnitude image, backward, `optimizer.step()`; "
    "medians of `repeats` interleaved rounds (every round runs each variant once, in rotating "
    "order) after `warmup` steps, in one process; ratios use the `clock` medians.",
    "Same problem for all: Shepp-Logan phantom, sigpy birdcage coil maps, equispaced 4× mask with "
    "8 % centre, 1 % noise, batch 1. deepinv: `MultiCoilMRI` (our mask and maps), `MoDL` (HQS, "
    "CG with implicit backward, same CG iterations and tolerance 1e-6), `DnCNN` with the same "
    "layers and channels but no BatchNorm; ours adds BatchNorm (MoDL paper), i.e. more work.",
    "rel. diff.: relative L2 difference of the output and of the worst parameter gradient of one "
    "forward + backward from the same model in float64 (same initial weights): the default "
    "float32 path's own row is the rounding floor (BatchNorm's backward amplifies it); each kept "
    "speed path has a test of the same quantities (tests/models/test_modl_speed_paths.py).",
    "The previous layout fed the CNN the zero-copy view `view_as_real(x).permute(0, 3, 1, 2)`, "
    "a channels-last tensor, so every conv ran channels-last; the default now copies the "
    "2-channel image to NCHW. Winograd: NNPACK F(6×6, 3×3) for the forward and input gradient "
    "of the 3×3 convs. compile: the first step (compilation) is timed separately.",
]


def build_results(rows: list[dict], clock: str) -> dict:
    """Targets and tables of one run (keyword arguments of ``common.write_results``)."""
    targets, tables = [], []
    attr = "median_ms" if clock == "wall" else "cpu_median_ms"
    for row in rows:
        size, train, checks = row["size"], row["train"], row["checks"]
        base, ref = getattr(train["deepinv"], attr), getattr(train["ours"], attr)
        fastest = next(k for k in (FASTEST, "bf16", "ours") if k in train)
        fast = getattr(train[fastest], attr) / base
        targets.append(target(f"{size}²: ours ({fastest}) / deepinv step time", fast, "<=",
                              TARGET_VS_DEEPINV))  # fmt: skip
        rows_t = []
        for key, label in TRAIN_VARIANTS.items():
            if key in row["skipped"]:
                rows_t.append([f"{label} ({row['skipped'][key]})", *[None] * 8])
                continue
            t, c = train[key], checks.get(key, {})
            ms = getattr(t, attr)
            first = c.get("first_s") if key == "compile" else None
            rows_t.append([label, t.median_ms, t.min_ms, t.cpu_median_ms, ms / base, ms / ref,
                           c.get("out_rel"), c.get("grad_rel"), first])  # fmt: skip
        header = ["variant", "wall median ms", "wall min ms", "CPU median ms", "× deepinv",
                  "× ours", "out rel. diff. (f64)", "worst grad rel. diff. (f64)",
                  "first step s"]  # fmt: skip
        tables.append(table(f"One Adam training step, {size}×{size}", header, rows_t,
                            ["", ".1f", ".1f", ".1f", ".2f", ".2f", ".1e", ".1e", ".1f"],
                            "lrrrrrrrr"))  # fmt: skip
        ev, eref = row["eval"], getattr(row["eval"]["ours"], attr)
        rows_e = [[label, ev[k].median_ms, ev[k].cpu_median_ms, getattr(ev[k], attr) / eref,
                   row["eval_rel"].get(k)] for k, label in EVAL_VARIANTS.items()
                  if k in ev]  # fmt: skip
        tables.append(table(f"Eval-mode reconstruction (no autograd), {size}×{size}",
                            ["variant", "wall median ms", "CPU median ms", "× ours",
                             "out rel. diff."], rows_e, ["", ".1f", ".1f", ".2f", ".1e"],
                            "lrrrr"))  # fmt: skip
    return {"targets": targets, "tables": tables}


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time one MoDL training step, ours (and its speed paths) against deepinv's; "
        f"writes {RESULTS_FILE} (render it with benchmarks/render.py).",
    )
    ap.add_argument("--size", type=int, nargs="+", default=None, help="image sizes (even)")
    ap.add_argument("--coils", type=int, default=8, help="number of coils")
    ap.add_argument("--unrolls", type=int, default=3, help="MoDL unrolled iterations")
    ap.add_argument("--cg_iters", type=int, default=10, help="CG iterations per unroll")
    ap.add_argument("--layers", type=int, default=7, help="denoiser conv layers")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="median the ratios use ('cpu' needs --threads 1; for a machine shared with others)",
    )  # fmt: skip
    ap.add_argument(
        "--bf16", choices=["auto", "on", "off"], default="auto",
        help="bf16 variant: 'auto' runs it where the CPU has native bf16",
    )  # fmt: skip
    ap.add_argument("--no_compile", action="store_true", help="skip the torch.compile variant")
    add_device_argument(ap)
    ap.add_argument(
        "--quick", action="store_true",
        help="check that it works: 64² (unless --size), 2 rounds, 1 warm-up step",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed for problem and weights")
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    args = ap.parse_args(argv)
    quick = args.quick
    args.size = args.size or ([64] if quick else [128, 320])
    args.repeats = args.repeats or (2 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    if min(args.repeats, args.coils, args.unrolls, args.cg_iters, args.chans) < 1:
        ap.error("--repeats, --coils, --unrolls, --cg_iters and --chans must be >= 1")
    if args.layers < 2 or any(s < 8 or s % 2 for s in args.size):
        ap.error("--layers must be >= 2 and every --size an even number >= 8")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time of several threads adds up their work)")
    if args.clock == "cpu" and args.device.type != "cpu":
        ap.error("--clock cpu times the CPU; use --clock wall on a GPU")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark; returns the written JSON file."""
    args = parse_args(argv)
    try:
        import deepinv  # noqa: F401
    except ImportError:
        raise SystemExit(DEEPINV_MISSING) from None
    torch.set_num_threads(args.threads)
    if args.bf16 == "on":  # run bf16 autocast even where oneDNN only emulates it
        fp.bf16_supported = lambda device: True
    machine = machine_description()
    machine["cpu capability (torch)"] = torch.backends.cpu.get_cpu_capability()
    machine["native bf16"] = str(fp.cpu_has_native_bf16())
    machine["NNPACK (Winograd)"] = str(fp.winograd_available())
    rows = [bench_size(size, args) for size in args.size]
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    settings["device"] = str(args.device)
    switches = [f" --{k}" for k, v in settings.items() if v is True]
    valued = {k: v for k, v in settings.items() if not isinstance(v, bool)}
    return write_results(
        args.output_dir / RESULTS_FILE,
        title="MoDL training step",
        command=command_line("benchmarks/bench_modl.py", valued) + "".join(switches),
        machine=machine,
        settings=settings,
        notes=NOTES,
        **build_results(rows, args.clock),
    )


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
