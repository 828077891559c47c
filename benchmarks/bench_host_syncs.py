"""Host synchronisations per MoDL training step, counted with the accelerator simulator.

Run from the repository root (writes ``benchmarks/results/host_syncs.json``; then
``python benchmarks/render.py``)::

    python benchmarks/bench_host_syncs.py [--size 64] [--coils 8] [--unrolls 10] [--cg_iters 10]

A host synchronisation (``.item()``, ``bool()`` of a device tensor, a device-to-host copy, an op
whose output size depends on the data) makes the CPU wait until the GPU has run everything queued
before it, so the GPU idles while Python launches the next kernels. The simulator of
``tests/device_simulator.py`` runs the step on CPU data under CUDA's device rules and counts every
such call with the package's line that made it; no GPU is needed, and the count is the one a
CUDA run makes (it depends on the code path, not on the image size or the hardware).

Steps counted (batch 1, the package's default loss ``ssim_l1``, Adam), with coil maps given in the
batch (ESPIRiT-style ``sens_maps``) and with the learned sensitivity model:

- ``plain``: forward + loss (``fastmri_pun.pruning.sample_loss.make_loss_fn()``) + backward +
  ``optimizer.step()`` of ``fastmri_pun.models.MoDL``; one warm-up step, then ``--steps`` counted.
- ``lightning``: ``ReconstructionModule.training_step`` run by ``pl.Trainer`` on the simulated
  GPU with the training command's ``FiniteGuard``; per step = (syncs of a ``--steps`` + 1 step fit
  − syncs of a one-step fit) / ``--steps`` (the fit's setup and teardown cancel out), and the
  syncs between ``on_train_batch_start`` and ``on_train_batch_end``.
- ``pun`` / ``pun lightning``: one PUN search step on the mask logits of the frozen model:
  ``fastmri_pun.pruning.pun.learn_mask_logits`` (``pun_loss`` + backward + Adam step), and
  ``MaskSearchModule`` through ``pl.Trainer`` with the training command's search loss
  (``ReconstructionModule.prune_loss``); per step from the same difference of two runs.

Step times: the same steps on the CPU without the simulator (``--threads``, default 1): the
medians of ``--repeats`` interleaved rounds after ``--warmup`` steps (plain loops), and of the
per-batch times of a CPU ``pl.Trainer`` fit (Lightning rows).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from common import (
    RESULTS_DIR,
    command_line,
    load_average,
    machine_description,
    table,
    target,
    time_interleaved,
    write_results,
)
from physics_problem import make_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from device_simulator import SIM_DEVICE, simulated_gpu, to_device  # noqa: E402

from fastmri_pun.data.transforms import SenseSample  # noqa: E402
from fastmri_pun.models import MoDL  # noqa: E402
from fastmri_pun.pruning.pun import learn_mask_logits  # noqa: E402
from fastmri_pun.pruning.sample_loss import make_loss_fn  # noqa: E402
from fastmri_pun.pruning.scores import GumbelBernoulliMask  # noqa: E402
from fastmri_pun.pruning.select import select_parameters  # noqa: E402
from fastmri_pun.training import FiniteGuard, MaskSearchModule, ReconstructionModule  # noqa: E402
from fastmri_pun.training.mask_search import loss_on_model_device  # noqa: E402
from fastmri_pun.utils import atomic_write_json  # noqa: E402

RESULTS_FILE = "host_syncs.json"
TARGET_SYNCS = 4  # host syncs per MoDL training step (Lightning, either coil maps)
MAPS = ("espirit", "learned")
STEPS = {
    "plain": "MoDL step, plain loop",
    "lightning": "MoDL step, Lightning `ReconstructionModule`",
    "pun": "PUN search step, `learn_mask_logits`",
    "pun_lightning": "PUN search step, Lightning `MaskSearchModule`",
}
NOTES = [
    "Host syncs counted by the accelerator simulator (`tests/device_simulator.py`): `.item()`, "
    "`bool()`/`int()`/`float()` of a device tensor, device-to-host copies (`.cpu()`, `tolist`), "
    "`nonzero`, boolean-mask indexing and the other ops whose output size depends on the data. "
    "The count depends on the code path only, not on the image size or the GPU.",
    "plain: one warm-up step, then `steps` counted. Lightning and PUN: (syncs of a fit or loop of "
    "steps + 1 steps − syncs of one of 1 step) / steps, so setup and teardown cancel; "
    "`in batch hooks`: syncs between `on_train_batch_start` and `on_train_batch_end`.",
    "Problem: Shepp-Logan phantom, sigpy birdcage coil maps (RSS 1) given as `sens_maps` "
    "(`espirit`) or the learned sensitivity model (`learned`), equispaced 4× mask with 8 % "
    "centre, batch 1; loss `ssim_l1` (the package default), Adam. Plain loops use "
    "`make_loss_fn()`, the Lightning PUN search the training command's loss "
    "(`ReconstructionModule.prune_loss`); the Lightning trainers carry the training command's "
    "`FiniteGuard` and no logger, progress bar or checkpointing.",
    "Sites are the innermost frame outside torch and the simulator; `utilities/apply_func.py` "
    "`to_item` is Lightning's (lightning_fabric) conversion of a `prog_bar=True` logged metric "
    "to a Python number, made every step even without a progress bar.",
    "Times: the same steps on the CPU without the simulator, one thread; plain rows from "
    "interleaved rounds (PUN: a one-step `learn_mask_logits` call, its setup included), "
    "Lightning rows from the per-batch times of a CPU `pl.Trainer` fit.",
]
NOT_SETTINGS = ("note", "output_dir")


# --------------------------------------------------------------------------- problem


def make_batch(size: int, coils: int, maps: str, seed: int) -> SenseSample:
    """One collated training batch (batch 1) as the data module yields it: ``masked_kspace [1, C,
    H, W, 2]`` f32, ``mask [1, 1, 1, W, 1]`` bool, ``num_low_frequencies [1]``, ``target [1, H,
    W]`` f32, ``max_value [1]`` f64, ``sens_maps [1, C, H, W, 2]`` f32 (``maps="espirit"``) or
    ``[1, 0]`` (``"learned"``).

    Raises:
        ValueError: ``maps`` is neither ``"espirit"`` nor ``"learned"``.
    """
    if maps not in MAPS:
        raise ValueError(f"maps must be one of {MAPS}, got {maps!r}")
    p = make_problem(size, coils, 1, seed)
    target_img = p.target.abs().float()
    sens = torch.view_as_real(p.maps).contiguous() if maps == "espirit" else torch.zeros(1, 0)
    return SenseSample(
        masked_kspace=torch.view_as_real(p.y).contiguous(),
        mask=p.mask[..., None],
        num_low_frequencies=torch.tensor([round(0.08 * size)]),
        target=target_img,
        fname=["phantom.h5"],
        slice_num=torch.tensor([0]),
        max_value=target_img.amax().double().reshape(1),
        crop_size=[torch.tensor([size]), torch.tensor([size])],
        sens_maps=sens,
    )


def model_kwargs(args: argparse.Namespace, maps: str) -> dict[str, Any]:
    """``MoDL`` keyword arguments of the benchmark (the training command's ``learn_sens_maps``)."""
    return dict(num_unrolls=args.unrolls, num_cg_iters=args.cg_iters, chans=args.chans,
                num_layers=args.layers, learn_sens_maps=maps == "learned")  # fmt: skip


def new_model(args: argparse.Namespace, maps: str) -> MoDL:
    """The benchmark's MoDL with the weights of ``args.seed`` (on the CPU)."""
    torch.manual_seed(args.seed)
    return MoDL(**model_kwargs(args, maps))


def plain_step(model: torch.nn.Module, batch: Any) -> Callable[[], None]:
    """``step()``: forward, default loss, backward, Adam step of ``model`` on ``batch``."""
    loss_fn = make_loss_fn()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        opt.step()

    return step


def pun_steps(model: torch.nn.Module, batch: Any, steps: int) -> None:
    """``steps`` PUN search steps on fresh mask logits of ``model`` (frozen weights)."""
    params = dict(model.named_parameters())
    scores = GumbelBernoulliMask({n: params[n].shape for n in select_parameters(model)})
    learn_mask_logits(model, [batch], make_loss_fn(), scores, steps=steps)


def lightning_module(kind: str, args: argparse.Namespace, maps: str) -> pl.LightningModule:
    """A fresh ``ReconstructionModule`` (``kind="lightning"``) or ``MaskSearchModule`` of the
    benchmark's MoDL."""
    torch.manual_seed(args.seed)
    module = ReconstructionModule("modl", model_kwargs(args, maps), sens_maps=maps)
    if kind == "lightning":
        return module
    # the training command's search loss (fastmri_pun/app/train/pruning_phase.py)
    return MaskSearchModule(module.model, loss_on_model_device(module.prune_loss))


class BatchHooks(pl.Callback):
    """Per training batch: the syncs of ``sim`` (0 without one), wall and CPU ms between
    ``on_train_batch_start`` and ``on_train_batch_end``."""

    def __init__(self, sim: Any = None) -> None:
        self.sim = sim
        self.syncs: list[int] = []
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self._start = (0, 0, 0)

    def _syncs(self) -> int:
        return self.sim.syncs if self.sim is not None else 0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = (self._syncs(), time.perf_counter_ns(), time.process_time_ns())

    def on_train_batch_end(self, *args: Any) -> None:
        n0, t0, c0 = self._start
        self.syncs.append(self._syncs() - n0)
        self.wall_ms.append((time.perf_counter_ns() - t0) / 1e6)
        self.cpu_ms.append((time.process_time_ns() - c0) / 1e6)


def fit(
    kind: str, args: argparse.Namespace, maps: str, batch: Any, steps: int, sim: Any
) -> BatchHooks:
    """Fit the ``kind`` module for ``steps`` steps, on the simulated GPU when ``sim`` is given
    (else on the CPU); returns the :class:`BatchHooks` callback."""
    hooks = BatchHooks(sim)
    on = {"accelerator": "simulated_gpu", "strategy": "simulated_gpu"} if sim is not None else {}
    trainer = pl.Trainer(
        **(on or {"accelerator": "cpu"}), devices=1, max_steps=steps, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[FiniteGuard(), hooks],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader([batch] * steps, batch_size=None)
    with warnings.catch_warnings():  # Lightning's advice (no val loader, workers) is not needed
        warnings.simplefilter("ignore")
        trainer.fit(lightning_module(kind, args, maps), train_dataloaders=loader)
    return hooks


# --------------------------------------------------------------------------- counting


def count(kind: str, args: argparse.Namespace, maps: str) -> dict[str, Any]:
    """Host syncs of one ``kind`` step (:data:`STEPS`) with ``maps``: ``per_step`` (float),
    ``in_hooks`` (Lightning: the largest per-batch count, else ``None``), ``first`` (syncs of the
    warm-up step, or of a whole one-step run) and ``sites`` (``"file:line in function"`` →
    syncs per step)."""
    batch = make_batch(args.size, args.coils, maps, args.seed)
    k = args.steps
    if kind == "plain":
        with simulated_gpu() as sim:
            step = plain_step(new_model(args, maps).to(SIM_DEVICE), to_device(batch))
            step()
            first = sim.syncs
            sim.reset()
            for _ in range(k):
                step()
        sites = {s: n / k for s, n in sim.sync_sites.items()}
        return {"per_step": sim.syncs / k, "in_hooks": None, "first": first, "sites": sites}
    runs: list[tuple[int, Counter]] = []
    in_hooks = None
    for steps in (1, k + 1):
        with simulated_gpu() as sim:
            if kind == "pun":
                pun_steps(new_model(args, maps).to(SIM_DEVICE), to_device(batch), steps)
            else:
                in_hooks = max(fit(kind, args, maps, batch, steps, sim).syncs)
        runs.append((sim.syncs, Counter(sim.sync_sites)))
    (one, one_sites), (many, many_sites) = runs
    sites = {s: (many_sites[s] - one_sites.get(s, 0)) / k for s in many_sites | one_sites}
    return {"per_step": (many - one) / k, "in_hooks": in_hooks, "first": one,
            "sites": {s: n for s, n in sites.items() if n}}  # fmt: skip


def step_times(args: argparse.Namespace) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind, maps) → (wall, CPU) median ms of one step on the CPU, no simulator."""
    fns = {}
    for maps in args.maps:
        batch = make_batch(args.size, args.coils, maps, args.seed)
        fns[("plain", maps)] = plain_step(new_model(args, maps), batch)
        model = new_model(args, maps)
        fns[("pun", maps)] = lambda b=batch, m=model: pun_steps(m, b, 1)
    timed = time_interleaved(fns, args.repeats, args.warmup, autograd=True)
    out = {key: (t.median_ms, t.cpu_median_ms) for key, t in timed.items()}
    for maps in args.maps:
        batch = make_batch(args.size, args.coils, maps, args.seed)
        for kind in ("lightning", "pun_lightning"):
            hooks = fit(kind, args, maps, batch, args.warmup + args.repeats, None)
            wall, cpu = hooks.wall_ms[args.warmup :], hooks.cpu_ms[args.warmup :]
            out[(kind, maps)] = (statistics.median(wall), statistics.median(cpu))
    return out


# --------------------------------------------------------------------------- results


def build_results(counts: dict, times: dict) -> dict:
    """Targets and tables (keyword arguments of ``common.write_results``) of ``counts``
    ((kind, maps) → :func:`count` result) and ``times`` ((kind, maps) → (wall, CPU) ms)."""
    name = "host syncs per Lightning MoDL training step"
    targets = [
        target(f"{maps} maps: {name}", c["per_step"], "<=", TARGET_SYNCS)
        for (kind, maps), c in counts.items()
        if kind == "lightning"
    ]
    rows, site_rows = [], []
    for (kind, maps), c in counts.items():
        wall, cpu = times.get((kind, maps), (None, None))
        rows.append([STEPS[kind], maps, c["per_step"], c["in_hooks"], c["first"], wall, cpu])
        for site, n in sorted(c["sites"].items(), key=lambda kv: (-kv[1], kv[0])):
            site_rows.append([STEPS[kind], maps, site, n])
    header = ["step", "maps", "syncs per step", "in batch hooks", "first step / 1-step run",
              "wall median ms", "CPU median ms"]  # fmt: skip
    formats = ["", "", ".2f", "", "", ".0f", ".0f"]
    caption = "Where the syncs of a step come from (file:line, syncs per step)"
    site_header = ["step", "maps", "site", "syncs per step"]
    tables = [
        table("Host syncs per step and CPU step time", header, rows, formats, "llrrrrr"),
        table(caption, site_header, site_rows, ["", "", "", ".2f"], "lllr"),
    ]
    return {"targets": targets, "tables": tables}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Count the host synchronisations of one MoDL training step and one PUN "
        f"search step on the simulated GPU; writes {RESULTS_FILE}."
    )
    ap.add_argument("--size", type=int, default=64, help="image size (multiple of 16)")
    ap.add_argument("--coils", type=int, default=8, help="number of coils")
    ap.add_argument("--unrolls", type=int, default=10, help="MoDL unrolled iterations")
    ap.add_argument("--cg_iters", "--cg-iters", type=int, default=10, help="CG iterations")
    ap.add_argument("--chans", type=int, default=64, help="denoiser channels")
    ap.add_argument("--layers", type=int, default=5, help="denoiser conv layers")
    ap.add_argument("--maps", nargs="+", choices=MAPS, default=list(MAPS), help="coil maps")
    ap.add_argument("--steps", type=int, default=2, help="counted steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (0: no timing)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0, help="seed for problem and weights")
    ap.add_argument("--note", default="", help="free text recorded with the machine")
    ap.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="folder of the JSON file")
    args = ap.parse_args(argv)
    if args.size < 16 or args.size % 16:
        ap.error("--size must be a multiple of 16 (the learned sensitivity model's U-Net)")
    if min(args.coils, args.unrolls, args.cg_iters, args.chans, args.steps, args.threads) < 1:
        ap.error("--coils, --unrolls, --cg_iters, --chans, --steps and --threads must be >= 1")
    if args.layers < 2 or args.repeats < 0 or args.warmup < 0:
        ap.error("--layers must be >= 2, --repeats and --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark; returns the written JSON file."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available" per fit
    machine = machine_description()
    machine["cpu capability (torch)"] = torch.backends.cpu.get_cpu_capability()
    counts = {}
    for kind in STEPS:
        for maps in args.maps:
            counts[(kind, maps)] = count(kind, args, maps)
            c = counts[(kind, maps)]
            print(f"{STEPS[kind]}, {maps}: {c['per_step']:g} syncs per step", file=sys.stderr)
    times = step_times(args) if args.repeats else {}
    machine["load average at end"] = load_average()
    if args.note:
        machine["note"] = args.note
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    built = build_results(counts, times)
    print(_text_table(built["tables"][0]), file=sys.stderr)
    path = write_results(
        args.output_dir / RESULTS_FILE,
        title="Host synchronisations per training step (simulated GPU)",
        command=command_line("benchmarks/bench_host_syncs.py", settings),
        machine=machine,
        settings=settings,
        notes=NOTES,
        **built,
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    data["sync_sites"] = {f"{kind} {maps}": c["sites"] for (kind, maps), c in counts.items()}
    return atomic_write_json(path, data, ensure_ascii=False)


def _text_table(tab: dict) -> str:
    lines = [" | ".join(tab["header"])]
    for row in tab["rows"]:
        cells = [format(v, f) if v is not None and f else str(v) for v, f in
                 zip(row, tab["formats"], strict=True)]  # fmt: skip
        lines.append(" | ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"wrote {main()}", file=sys.stderr)
