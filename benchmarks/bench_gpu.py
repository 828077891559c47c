"""GPU benchmarks, from the repository root on a machine with CUDA (writes
``benchmarks/results/gpu_*.json``; then ``python benchmarks/render.py``; without CUDA it prints
one line and exits 0)::

    python benchmarks/bench_gpu.py [--size 320] [--coils 16] [--parts modl espirit inference]

1. ``gpu_modl_step.json``: one Adam step (forward, default ``ssim_l1`` loss, backward, step) of
   the paper's MoDL (10 unrolls × 10 CG iterations, 64 channels, 5 layers, given coil maps,
   batch 1) at 320², 16 coils in float32 (``set_float32_precision("highest")``), TF32
   (``"high"``: matmul + cuDNN) and AMP bf16 of the denoiser (``denoiser_bf16``, where bf16 is
   native: compute capability ≥ 8.0): step time, peak memory, output and gradient differences.
2. ``gpu_espirit.json``: ``espirit_maps`` slices per second on the device (one slice and
   ``--espirit_batch`` slices per call) against one CPU thread, and the maps' agreement.
3. ``gpu_inference.json``: eval-mode reconstruction of the dense model, of an unstructured
   ``--density`` mask through ``save_sparse`` / ``load_sparse_into`` (dense convolutions on
   zeros; ``sparsify_for_inference`` is CPU-only) and of ``slim_channels`` models through
   ``save_slim`` / ``load_slim_into``, each checked against its masked model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from common import (
    RESULTS_DIR,
    command_line,
    load_average,
    machine_description,
    peak_bytes,
    table,
    target,
    time_interleaved,
    write_results,
)
from physics_problem import make_problem

from fastmri_pun.data.espirit import espirit_maps
from fastmri_pun.models import MoDL
from fastmri_pun.models.fast_paths import bf16_supported
from fastmri_pun.models.losses import ReconLoss
from fastmri_pun.pruning import (
    apply_masks,
    dense_state_dict,
    load_slim_into,
    load_sparse_into,
    save_slim,
    save_sparse,
    slim_channels,
)
from fastmri_pun.pruning.baselines import random_masks
from fastmri_pun.pruning.channel_scores import ChannelScores
from fastmri_pun.pruning.select import select_parameters
from fastmri_pun.training.numerics import float32_precision, set_float32_precision

NO_CUDA = "no CUDA device: skipping the GPU benchmarks"
PARTS = ("modl", "espirit", "inference")
#: variant → (float32 matmul precision, bf16 autocast of the denoiser)
VARIANTS = {"float32": ("highest", False), "tf32": ("high", False), "amp_bf16": ("highest", True)}
LABELS = {"float32": "float32 (TF32 off)", "tf32": "TF32 (matmul + cuDNN)",
          "amp_bf16": "AMP bf16 denoiser (TF32 off)"}  # fmt: skip
MAX_REL = {"tf32": 1e-2, "amp_bf16": 5e-2}  # output rel. diff. from float32, at most
ESPIRIT_SPEEDUP = 10.0  # device batch slices/s over one CPU thread, at least
SLIM_FRACTION, SLIM_SPEEDUP = 0.25, 2.0  # dense / slim inference time at that fraction, at least
NOT_SETTINGS = ("note", "output_dir", "quick")
QUICK = {"size": 96, "coils": 4, "unrolls": 2, "cg_iters": 3, "chans": 8, "layers": 3,
         "repeats": 2, "warmup": 1, "espirit_batch": 2}  # fmt: skip


def gpu_description(device: torch.device) -> dict[str, str]:
    """The machine (:func:`common.machine_description`) plus the GPU's name, compute capability,
    memory and the CUDA / cuDNN versions torch was built with (``n/a`` on a CPU)."""
    described = machine_description()
    described |= dict.fromkeys(("gpu", "gpu capability", "gpu memory", "cudnn"), "n/a")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        described.update({"gpu": p.name, "gpu capability": f"{p.major}.{p.minor}",
                          "gpu memory": f"{p.total_memory / 2**30:.0f} GiB",
                          "cudnn": str(torch.backends.cudnn.version())})  # fmt: skip
    described["cuda (torch build)"] = str(torch.version.cuda)
    return described


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# --------------------------------------------------------------------------- MoDL step


def modl_inputs(size: int, coils: int, seed: int, device: torch.device) -> dict:
    """``ks [1, C, H, W, 2]``, ``mask [1, 1, 1, W, 1]``, ``maps [1, C, H, W]`` complex64,
    ``target [1, H, W]``, ``max_value [1]`` on ``device`` (the test problem of
    ``physics_problem.py``)."""
    p = make_problem(size, coils, 1, seed)
    target_img = p.target.abs().float()
    out = {"ks": torch.view_as_real(p.y).contiguous(), "mask": p.mask[..., None],
           "maps": p.maps, "target": target_img, "max_value": target_img.amax().reshape(1)}  # fmt: skip
    return {k: v.to(device) for k, v in out.items()}


def modl(args: argparse.Namespace, bf16: bool = False, state: dict | None = None) -> MoDL:
    """The benchmark's MoDL (given coil maps), on the CPU; ``state``: its weights."""
    model = MoDL(num_unrolls=args.unrolls, num_cg_iters=args.cg_iters, chans=args.chans,
                 num_layers=args.layers, learn_sens_maps=False, denoiser_bf16=bf16)  # fmt: skip
    if state is not None:
        model.load_state_dict(state)
    return model


def train_step(model: MoDL, x: dict, precision: str) -> Callable[[], None]:
    """``step()``: set ``precision``, forward, ``ssim_l1`` loss, backward, Adam step."""
    loss_fn = ReconLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        set_float32_precision(precision)
        opt.zero_grad(set_to_none=True)
        out = model(x["ks"], x["mask"], sens_maps=x["maps"])
        loss_fn(out, x["target"], x["max_value"]).backward()
        opt.step()

    return step


def forward_backward(model: MoDL, x: dict, precision: str) -> dict:
    """Output ``[1, H, W]`` and parameter gradients of one forward + backward."""
    set_float32_precision(precision)
    model.zero_grad(set_to_none=True)
    out = model(x["ks"], x["mask"], sens_maps=x["maps"])
    loss_fn = ReconLoss().to(x["target"].dtype)
    loss_fn(out, x["target"], x["max_value"]).backward()
    return {"out": out.detach(), "grads": {n: q.grad.clone() for n, q in model.named_parameters()}}


def bench_modl_step(args: argparse.Namespace, device: torch.device) -> dict:
    """Times, peak memory and differences from float32 of every :data:`VARIANTS` entry."""
    before = float32_precision()["matmul"]
    x = modl_inputs(args.size, args.coils, args.seed, device)
    torch.manual_seed(args.seed)
    state = modl(args).state_dict()
    skipped = {} if bf16_supported(device) else {"amp_bf16": "not run: no native bf16"}
    kinds = [k for k in VARIANTS if k not in skipped]
    x64 = {k: v.double() if v.is_floating_point() else v for k, v in x.items()}
    x64["maps"] = x["maps"].to(torch.complex128)
    ref64 = forward_backward(modl(args, state=state).double().to(device), x64, "highest")
    checks = {k: forward_backward(modl(args, VARIANTS[k][1], state).to(device), x,
                                  VARIANTS[k][0]) for k in kinds}  # fmt: skip
    diffs = {}
    for k, c in checks.items():
        ref = ref64 if k == "float32" else checks["float32"]
        worst = max(_rel(c["grads"][n], g) for n, g in ref["grads"].items())
        diffs[k] = (_rel(c["out"], ref["out"]), worst)
    del ref64, checks  # free their memory before the timed steps
    steps = {k: train_step(modl(args, VARIANTS[k][1], state).to(device), x, VARIANTS[k][0])
             for k in kinds}  # fmt: skip
    times = time_interleaved(steps, args.repeats, args.warmup, autograd=True, device=device)
    memory = {k: peak_bytes(s, device) if device.type == "cuda" else None for k, s in steps.items()}
    set_float32_precision(before)
    return {"times": times, "memory": memory, "diffs": diffs, "skipped": skipped}


def modl_results(r: dict, args: argparse.Namespace) -> dict:
    """Targets and tables of :func:`bench_modl_step`'s result."""
    base = r["times"]["float32"].median_ms
    rows = []
    for k, label in LABELS.items():
        if k in r["skipped"]:
            rows.append([f"{label} ({r['skipped'][k]})", *[None] * 7])
            continue
        t, mem = r["times"][k], r["memory"][k]
        rows.append([label, t.median_ms, t.min_ms, base / t.median_ms, mem and mem / 2**20,
                     *r["diffs"][k], "float64" if k == "float32" else "float32"])  # fmt: skip
    header = ["variant", "wall median ms", "wall min ms", "speed-up × float32", "peak MiB",
              "out rel. diff.", "worst grad rel. diff.", "compared with"]  # fmt: skip
    formats = ["", ".1f", ".1f", ".2f", ".0f", ".1e", ".1e", ""]
    caption = f"MoDL training step, {args.size}×{args.size}, {args.coils} coils"
    targets = [target(f"{k}: output rel. diff. from float32", r["diffs"].get(k, (None,))[0],
                      "<=", bound) for k, bound in MAX_REL.items()]  # fmt: skip
    return {"targets": targets, "tables": [table(caption, header, rows, formats, "lrrrrrrl")]}


# --------------------------------------------------------------------------- ESPIRiT


def map_residual(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``‖a − b(bᴴa)‖`` of unit-norm maps ``[C, H, W]`` over the pixels where both are
    nonzero (0 = equal up to a phase), float64 ``[n]``."""
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    na, nb = a.abs().pow(2).sum(0).sqrt(), b.abs().pow(2).sum(0).sqrt()
    both = (na > 0) & (nb > 0)
    a, b = a[:, both] / na[both], b[:, both] / nb[both]
    return (a - b * (b.conj() * a).sum(0)).abs().pow(2).sum(0).sqrt()


def bench_espirit(args: argparse.Namespace, device: torch.device) -> dict:
    """Per-slice times of ``espirit_maps`` on one CPU thread and on ``device``, and the residual
    of the device's maps against the CPU's."""
    p = make_problem(args.size, args.coils, 1, args.seed)
    ksp, cols = p.y[0], p.mask.reshape(-1)
    on_dev = ksp.to(device)
    batch = on_dev.expand(args.espirit_batch, -1, -1, -1).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the aliasing warning does not concern the timing
        cpu_maps = espirit_maps(ksp, cols)
        dev_maps = espirit_maps(batch, cols)
        cpu = time_interleaved({"cpu": lambda: espirit_maps(ksp, cols)}, args.repeats, 1)
        fns = {
            "one": lambda: espirit_maps(on_dev, cols),
            "batch": lambda: espirit_maps(batch, cols),
        }
        dev = time_interleaved(fns, args.repeats, 1, device=device)
    res = torch.cat([map_residual(m.cpu(), cpu_maps) for m in dev_maps])
    return {"cpu_ms": cpu["cpu"].median_ms, "one_ms": dev["one"].median_ms,
            "batch_ms": dev["batch"].median_ms / args.espirit_batch,
            "res_p99": float(res.quantile(0.99)), "res_max": float(res.max())}  # fmt: skip


def espirit_results(r: dict, args: argparse.Namespace) -> dict:
    rows = [[name, ms, 1000 / ms, r["cpu_ms"] / ms] for name, ms in (
        ("CPU, one thread, one slice per call", r["cpu_ms"]),
        ("device, one slice per call", r["one_ms"]),
        (f"device, {args.espirit_batch} slices per call", r["batch_ms"]))]  # fmt: skip
    header = ["path", "ms per slice", "slices per second", "× CPU one thread"]
    caption = f"ESPIRiT maps, {args.coils}×{args.size}×{args.size} k-space (defaults)"
    res = [["device vs CPU, 99th percentile", r["res_p99"]], ["device vs CPU, max", r["res_max"]]]
    return {
        "targets": [target("device batch / CPU one thread, slices per second",
                           r["cpu_ms"] / r["batch_ms"], ">=", ESPIRIT_SPEEDUP),
                    target("device vs CPU maps residual, 99th percentile", r["res_p99"], "<=",
                           1e-3)],
        "tables": [table(caption, header, rows, ["", ".1f", ".1f", ".1f"], "lrrr"),
                   table("Maps residual ‖a − b(bᴴa)‖", ["maps", "residual"], res, ["", ".1e"],
                         "lr")],
    }  # fmt: skip


# --------------------------------------------------------------------------- inference


def inference_models(args: argparse.Namespace, folder: Path) -> dict[str, torch.nn.Module]:
    """Name → eval-mode model on the CPU: ``dense``; ``sparse file`` (a random unstructured mask at
    ``args.density`` through ``save_sparse`` / ``load_sparse_into``) and its ``masked`` model;
    per fraction ``slim f`` (through ``save_slim`` / ``load_slim_into``) and ``masked f``."""
    torch.manual_seed(args.seed)
    state = modl(args).state_dict()
    models: dict[str, torch.nn.Module] = {"dense": modl(args, state=state)}
    masked = modl(args, state=state)
    masks = random_masks(masked, args.density, seed=args.seed)
    apply_masks(masked, masks)
    save_sparse(folder / "model.sparse.pt", dense_state_dict(masked.state_dict()), masks)
    models["masked"] = masked
    models["sparse file"] = load_sparse_into(modl(args), folder / "model.sparse.pt", prune=False)
    gen = torch.Generator().manual_seed(args.seed)
    for f in args.fractions:
        masked = modl(args, state=state)
        scores = ChannelScores(masked, select_parameters(masked), allocation="per-layer",
                               channel_fraction=f)  # fmt: skip
        with torch.no_grad():
            for logit in scores.logits:
                logit.copy_(torch.randn(logit.shape, generator=gen))
        apply_masks(masked, scores.hard_masks(1.0))
        save_slim(folder / f"slim{f}.pt", slim_channels(masked))
        models[f"masked {f:g}"] = masked
        models[f"slim {f:g}"] = load_slim_into(modl(args), folder / f"slim{f}.pt")
    return {k: m.eval() for k, m in models.items()}


def bench_inference(args: argparse.Namespace, device: torch.device) -> dict:
    """Reconstruction times on ``device`` and each exported model's difference from its
    masked model."""
    x = modl_inputs(args.size, args.coils, args.seed, device)
    set_float32_precision("highest")
    with tempfile.TemporaryDirectory() as folder:
        models = {k: m.to(device) for k, m in inference_models(args, Path(folder)).items()}
    with torch.inference_mode():
        outs = {k: m(x["ks"], x["mask"], sens_maps=x["maps"]) for k, m in models.items()}
    timed = {k: m for k, m in models.items() if not k.startswith("masked")}
    fns = {k: (lambda m=m: m(x["ks"], x["mask"], sens_maps=x["maps"])) for k, m in timed.items()}
    times = time_interleaved(fns, args.repeats, args.warmup, device=device)
    rel = {k: _rel(outs[k], outs["masked" if k == "sparse file" else k.replace("slim", "masked")])
           for k in timed if k != "dense"}  # fmt: skip
    weights = {k: sum(int(torch.count_nonzero(q)) for n, q in m.named_parameters()
                      if n.endswith("weight") and q.ndim == 4) for k, m in timed.items()}  # fmt: skip
    return {"times": times, "rel": rel, "weights": weights}


def inference_results(r: dict, args: argparse.Namespace) -> dict:
    dense = r["times"]["dense"].median_ms
    rows = [[k, r["weights"][k], t.median_ms, dense / t.median_ms, r["rel"].get(k)]
            for k, t in r["times"].items()]  # fmt: skip
    header = ["model", "nonzero conv weights", "wall median ms", "dense / model",
              "out rel. diff. from its masked model"]  # fmt: skip
    key = f"slim {SLIM_FRACTION:g}"
    slim = r["times"].get(key)
    caption = f"Eval-mode reconstruction (no autograd), {args.size}×{args.size}"
    return {
        "targets": [target(f"dense / {key} time", slim and dense / slim.median_ms, ">=",
                           SLIM_SPEEDUP)],
        "tables": [table(caption, header, rows, ["", "", ".1f", ".2f", ".1e"], "lrrrr")],
    }  # fmt: skip


# --------------------------------------------------------------------------- CLI

NOTES = {  # fmt: skip
    "modl": [
        "Wall clock after torch.cuda.synchronize; medians of interleaved rounds (each round runs "
        "every variant once, the precision set at the start of each step); peak memory: the "
        "caching allocator's peak above what the model and optimiser hold.",
        "rel. diff.: relative L2 difference of the output and of the worst parameter gradient "
        "of one forward + backward from the same weights, against the float32 variant (float32: "
        "against float64, the rounding floor). cudnn.benchmark off (the package's default).",
    ],
    "espirit": [
        "EspiritSettings() defaults; one slice (Shepp-Logan phantom, birdcage maps, "
        "equispaced 4× mask, 8 % centre), repeated in the device batch; CPU: one torch "
        "thread."
    ],
    "inference": [
        "`torch.inference_mode()`, float32 (TF32 off), given coil maps; masked: the "
        "pruned model the exported file came from (same function)."
    ],
}
TITLES = {"modl": "GPU: MoDL training step, float32 / TF32 / AMP bf16",
          "espirit": "GPU: ESPIRiT maps on the device against one CPU thread",
          "inference": "GPU: dense, sparse-file and channel-slimmed MoDL inference"}  # fmt: skip
FILES = {"modl": "gpu_modl_step.json", "espirit": "gpu_espirit.json",
         "inference": "gpu_inference.json"}  # fmt: skip
RUN = {"modl": (bench_modl_step, modl_results), "espirit": (bench_espirit, espirit_results),
       "inference": (bench_inference, inference_results)}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run")
    ap.add_argument("--size", type=int, default=320, help="image size (even)")
    ap.add_argument("--coils", type=int, default=16, help="number of coils")
    ap.add_argument("--unrolls", type=int, default=10, help="MoDL unrolled iterations")
    ap.add_argument("--cg_iters", "--cg-iters", type=int, default=10, help="CG iterations")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--layers", type=int, default=5, help="denoiser conv layers")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    ap.add_argument("--espirit_batch", type=int, default=8, help="slices per device ESPIRiT call")
    ap.add_argument("--density", type=float, default=0.03, help="unstructured mask density")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25], help="slim")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    ap.add_argument("--seed", type=int, default=0, help="seed for problem, weights and masks")
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON files")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.size < 16 or args.size % 2 or min(args.coils, args.unrolls, args.cg_iters) < 1:
        ap.error("--size must be an even number >= 16; --coils, --unrolls, --cg_iters >= 1")
    if min(args.repeats, args.espirit_batch) < 1 or args.warmup < 0:
        ap.error("--repeats and --espirit_batch must be >= 1, --warmup >= 0")
    if not 0 < args.density <= 1 or not all(0 < f <= 1 for f in args.fractions):
        ap.error("--density and --fractions must be in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Run the benchmarks on CUDA device 0; returns the written JSON files (none without CUDA,
    after printing :data:`NO_CUDA`)."""
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return []
    device = torch.device("cuda", torch.cuda.current_device())
    torch.set_num_threads(1)  # the CPU side (ESPIRiT's reference) runs on one thread
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    written = []
    for part in args.parts:
        machine = gpu_description(device)
        bench, results = RUN[part]
        built = results(bench(args, device), args)
        machine["load average at end"] = load_average()
        if args.note:
            machine["note"] = args.note
        written.append(write_results(
            args.output_dir / FILES[part], title=TITLES[part],
            command=command_line("benchmarks/bench_gpu.py", settings)
            + (" --quick" if args.quick else ""),
            machine=machine, settings=settings, notes=NOTES[part], **built,
        ))  # fmt: skip
        print(f"wrote {written[-1]}", file=sys.stderr)
    return written


if __name__ == "__main__":
    main()
