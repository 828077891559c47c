"""ESPIRiT speed and agreement: ours (torch) vs sigpy's ``EspiritCalib`` vs BART's ``ecalib``.

One fastMRI-size slice (demo simulator, ``--size`` 320: 16 coils, brain slice, readout
oversampling removed so k-space is ``[C, N, N]``), equispaced 4× mask with ``--acs`` centre
columns; every method gets the same masked k-space, on one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1`` for BART's subprocess).

1. **Time per slice**: ours with the defaults (rectangular ACS block), ours and sigpy on the
   square ``24 × 24`` region with kernel 6 and thresh 0.02, BART ``ecalib -m1`` with its defaults
   (``24 × 24``, kernel 6) and BART with our calibration region and settings. ``--clock cpu``
   (default) compares process CPU times (BART: the child's), which other jobs on the machine do
   not inflate. Target: ours (defaults) ≤ 0.5 × BART ``ecalib -m1``.
2. **Per-pixel step**: batched ``torch.linalg.eigh`` of the ``C × C`` matrices ``G(x)`` of the
   slice against plain power iterations (start: ``G``'s column of largest diagonal entry, a
   fixed number of iterations), and :func:`~fastmri_pun.data.espirit_numerics.espirit_eigenmaps`
   with ``solver="eigh"`` and with the certified power iterations (``"power"``, the CPU
   default), uncropped and with the default crop; how many support pixels miss a ``1e-3``
   residual against ``eigh``.
3. **Batch**: ``espirit_maps`` on ``[B, C, N, N]`` against ``B`` calls on one slice.
4. **Agreement**: per-pixel projection residual ``‖a − b (bᴴa)‖`` of unit-norm maps ``a``, ``b``
   (zero for the same map up to a phase), max and 99th percentile over the pixels where both maps
   are nonzero (crop 0.9 in both), with the same calibration region and settings.
5. **Precompute**: slices per second of :func:`fastmri_pun.app.espirit.precompute.precompute_maps`
   end to end (h5 reading, mask, ESPIRiT, cache writing) over ``--volumes`` simulated fastMRI
   files (16 coils, ``2N × N`` k-space, the test-file simulator), default settings; on a CUDA
   ``--device`` also its GPU path (``--device cuda``: a volume's slices in one call).

Clocks: on the CPU our times are process CPU times (``--clock cpu``) as before; on a CUDA
``--device`` the work is asynchronous and the process's CPU time is only the host's share, so
our times there are wall clock, read after ``torch.cuda.synchronize()``. The JSON records which
(``settings.device_clock``) and the tables name it.

Run from the repository root: ``python benchmarks/bench_espirit_speed.py`` (a few minutes; BART
is skipped when ``bart`` is not on the PATH; ``--quick``: a 128² slice with 8 coils).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import h5py
import numpy as np
import torch
from bench_espirit import demo_cases, equispaced_cols

from fastmri_pun.app.espirit.precompute import MapsConfig, precompute_maps
from fastmri_pun.data.espirit import EspiritSettings, espirit_maps
from fastmri_pun.data.espirit import calibration_block as _calibration_block
from fastmri_pun.data.espirit_numerics import espirit_eigenmaps, image_gram, kernel_correlations
from fastmri_pun.demo.simulate import fft2c, ifft2c

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import quirk_files  # noqa: E402  (the test fixtures' simulator, for the fastMRI files)

#: the square region of sigpy's and BART's defaults, with sigpy's kernel and threshold
SQUARE = EspiritSettings(6, 0.9, 0.02, calib_width=24, calib_rows=24)
#: BART's ``-t`` bounds the *squared* singular values (measured: with ``-t`` = thresh² its maps
#: equal ours to 1e-6), so our default thresh 0.005 is ``-t 2.5e-05``
BART_T = f"{EspiritSettings().thresh ** 2:g}"


def slice_kspace(size: int, coils: int, seed: int) -> np.ndarray:
    """``[C, N, N]`` complex64 fully sampled k-space (demo slice, readout oversampling
    removed)."""
    ((k, _, _),) = demo_cases(size, coils, 1, seed)
    img = ifft2c(k)
    top = (img.shape[1] - size) // 2
    return fft2c(img[:, top : top + size]).astype(np.complex64)


def write_cfl(stem: Path, kspace: np.ndarray) -> None:
    """BART ``.cfl``/``.hdr`` of ``[C, H, W]`` k-space as dims ``[H (readout), W, 1, C]``."""
    c, h, w = kspace.shape
    stem.with_suffix(".hdr").write_text(f"# Dimensions\n{h} {w} 1 {c} 1\n")
    kspace.astype(np.complex64).transpose(0, 2, 1).tofile(stem.with_suffix(".cfl"))


def read_cfl(stem: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """``[C, H, W]`` maps of a BART ``[H, W, 1, C]`` file."""
    c, h, w = shape
    return np.fromfile(stem.with_suffix(".cfl"), np.complex64, c * h * w).reshape(c, w, h).mT


class Bart:
    """``bart ecalib -m1 ARGS`` on one k-space file, one thread; accumulates the children's CPU
    seconds (``cpu``) of its calls."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        self.cmd = ["bart", "ecalib", "-m1", *args, str(folder / "kspace"), str(folder / "maps")]
        self.env = dict(os.environ, OMP_NUM_THREADS="1")
        self.cpu: list[float] = []

    def __call__(self) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(self.cmd, env=self.env, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)


#: eigengap λ₁ − λ₂ below which a pixel's eigenvector counts as ill-conditioned in the agreement
#: table (a perturbation ε of G turns the eigenvector by about ε / gap)
WELL_CONDITIONED_GAP = 0.1


def bart_region(folder: Path, args: list[str]) -> tuple[int, int]:
    """``(first row, first column)`` of the calibration region BART's ``ecalib ARGS`` picks
    (its debug output ``pos: XxYx0``; x = readout = our rows)."""
    cmd = ["bart", "ecalib", "-d5", "-m1", *args, str(folder / "kspace"), str(folder / "maps")]
    out = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), check=True,
                         capture_output=True, text=True)  # fmt: skip
    found = re.search(r"pos: (\d+)x(\d+)x", out.stdout + out.stderr)
    if found is None:
        raise RuntimeError("bart ecalib -d5 did not report its calibration region")
    return int(found.group(1)), int(found.group(2))


def residuals(
    a: np.ndarray, b: np.ndarray, gap: np.ndarray
) -> tuple[float, float, float, float, float]:
    """``(max, 99th percentile, share of pixels, median eigengap of the worst 1 %, 99th
    percentile where the gap is at least WELL_CONDITIONED_GAP)`` of ``‖a − b (bᴴa)‖`` over the
    pixels where both ``[C, H, W]`` maps are nonzero (each normalised to unit norm per pixel);
    ``gap`` ``[H, W]`` is ``λ₁ − λ₂`` of the exact per-pixel matrices."""
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    both = (na > 0) & (nb > 0)
    a, b, g = a[:, both] / na[both], b[:, both] / nb[both], gap[both]
    r = np.linalg.norm(a - b * (b.conj() * a).sum(0), axis=0)
    p99 = float(np.quantile(r, 0.99))
    well = r[g >= WELL_CONDITIONED_GAP]
    return (
        float(r.max()),
        p99,
        float(both.mean()),
        float(np.median(g[r >= p99])),
        float(np.quantile(well, 0.99)) if well.size else float("nan"),
    )


def power_iteration(gram: torch.Tensor, iters: int) -> torch.Tensor:
    """Top eigenvectors ``[P, C]`` of ``[P, C, C]`` Hermitian ``gram`` by ``iters`` power
    iterations from each matrix's column of largest diagonal entry (vectorised over pixels in a
    ``[C, C, P]`` layout: ``C`` multiply-adds of ``[C, P]`` planes per iteration)."""
    g = gram.permute(1, 2, 0).contiguous()
    p = g.shape[-1]
    best = torch.diagonal(g, dim1=0, dim2=1).real.argmax(1)
    v = g[:, best, torch.arange(p)]
    for _ in range(iters):
        v = v / torch.linalg.vector_norm(v, dim=0).clamp_min(1e-30)
        y = g[:, 0] * v[0]
        for b in range(1, g.shape[1]):
            y.addcmul_(g[:, b], v[b])
        v = y
    return (v / torch.linalg.vector_norm(v, dim=0).clamp_min(1e-30)).T


def eigen_step(k: np.ndarray, cols: np.ndarray, iters: list[int], repeats: int) -> list[list]:
    """Rows ``[solver, CPU ms, support pixels with residual > 1e-3 vs eigh, max residual]``:
    the per-pixel step alone on the slice's ``G`` (``eigh``, plain power iterations), then
    :func:`espirit_eigenmaps` end to end (kernels, ``G``, eigenvectors) with each solver."""
    c, h, w = k.shape
    block, res = _calibration_block(k * cols, cols, EspiritSettings(), None)
    blocks = torch.from_numpy(block)[None]
    corr = kernel_correlations(blocks, res.kernel_width, res.thresh)
    gram = image_gram(corr, h, w)[0].reshape(h * w, c, c)
    values, vectors = torch.linalg.eigh(gram)
    ref, support = vectors[..., -1], values[:, -1] > res.crop
    args = (blocks, h, w, res.kernel_width, res.thresh)
    fns = {"G only: eigh": lambda: torch.linalg.eigh(gram)[1][..., -1]}
    fns |= {f"G only: power, {n} iterations": lambda n=n: power_iteration(gram, n) for n in iters}
    fns["espirit_eigenmaps, eigh"] = lambda: espirit_eigenmaps(*args, solver="eigh")[0]
    fns["espirit_eigenmaps, power, crop 0"] = lambda: espirit_eigenmaps(*args, solver="power")[0]
    fns[f"espirit_eigenmaps, power, crop {res.crop}"] = lambda: espirit_eigenmaps(
        *args, crop=float(res.crop), solver="power"
    )[0]
    times = common.time_interleaved(fns, repeats, warmup=1)
    rows = []
    for name, t in times.items():
        vec = fns[name]()
        if vec.ndim == 4:  # maps [1, C, H, W]
            vec = vec[0].reshape(c, -1).T
        r = (vec - ref * (ref.conj() * vec).sum(-1, keepdim=True)).norm(dim=-1)[support]
        rows.append([name, t.cpu_median_ms, float((r > 1e-3).float().mean()), float(r.max())])
    return rows


def write_volumes(folder: Path, volumes: int, slices: int, coils: int, width: int) -> int:
    """``volumes`` fastMRI multicoil files of ``[slices, coils, 2·width, width]`` k-space (the
    test-file simulator); returns the number of slices."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for v in range(volumes):
        kspace, target = quirk_files.simulate_volume(rng, slices, coils, width, recon=width)
        header = quirk_files.header_xml(
            (2 * width, width), (width, width), coils, width // 2, width - 1
        )
        with h5py.File(folder / f"file_brain_{v:03d}.h5", "w") as hf:
            hf.create_dataset("ismrmrd_header", data=np.bytes_(header))
            hf.create_dataset("kspace", data=kspace)
            hf.create_dataset("reconstruction_rss", data=target)
            hf.attrs.update(acquisition="AXT2", max=float(target.max()), patient_id="b")
    return volumes * slices


def precompute_rate(
    volumes: int, slices: int, coils: int, width: int, device: torch.device | None = None
) -> list:
    """``[files, slices, k-space, wall s, CPU s, slices/s]`` of a cold-cache precompute: the CPU
    path (``device`` None, one slice per call), or the device path on ``device`` (wall clock
    read after ``torch.cuda.synchronize()``; slices/s from the wall clock either way)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "multicoil_val"
        n = write_volumes(data, volumes, slices, coils, width)
        cfg = MapsConfig(maps_cache_dir=Path(tmp) / "cache", enable_progress_bar=False)
        common.synchronize(device)
        c0, t0 = time.process_time(), time.perf_counter()
        if device is None:
            summary = precompute_maps(data, cfg)
        else:
            summary = precompute_maps(data, cfg, device=device)
            common.synchronize(device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if summary.computed != n:
        raise RuntimeError(f"precompute computed {summary.computed} of {n} slices")
    return [volumes, n, f"{coils}×{2 * width}×{width}", wall, cpu, n / wall]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=320, help="image size N (k-space C×N×N)")
    p.add_argument("--coils", type=int, default=16)
    p.add_argument("--acs", type=int, default=24, help="fully sampled centre columns")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds")
    p.add_argument("--batch", type=int, default=4, help="slices per call in the batch test")
    p.add_argument("--volumes", type=int, default=2, help="files in the precompute test")
    p.add_argument("--slices", type=int, default=4, help="slices per file")
    p.add_argument("--iters", type=int, nargs="+", default=[10, 30], help="power iterations")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="clock of the ratios")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--quick", action="store_true", help="128², 8 coils, 1 round (smoke test)")
    p.add_argument("--note", default=None, help="a line about the machine's load")
    common.add_device_argument(p)
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.coils, args.repeats = 128, 8, 1
        args.volumes, args.slices, args.batch, args.iters = 1, 2, 2, [10]
    torch.set_num_threads(1)
    device = args.device
    # our times: process CPU time on the CPU (unchanged); on CUDA wall clock after a sync
    device_clock = "cpu" if device.type == "cpu" else "wall"
    clock_text = {
        "cpu": "process CPU time",
        "wall": "wall clock read after torch.cuda.synchronize()",
    }[device_clock]

    def device_ms(t: common.Timing) -> float:
        """Our time of ``t`` on the benchmark's device, by ``device_clock``."""
        return t.cpu_median_ms if device_clock == "cpu" else t.median_ms

    machine = common.machine_description()
    k = slice_kspace(args.size, args.coils, args.seed)
    cols = equispaced_cols(args.size, args.acs)
    km = k * cols
    kt = torch.from_numpy(km).to(device)
    c, h, w = km.shape

    import sigpy.mri

    def sigpy_maps() -> np.ndarray:
        return sigpy.mri.app.EspiritCalib(
            km, calib_width=24, thresh=0.02, kernel_width=6, crop=0.9, show_pbar=False
        ).run()

    fns = {
        "ours, defaults": lambda: espirit_maps(kt, cols).cpu(),
        "ours, 24² k6 t0.02": lambda: espirit_maps(kt, cols, SQUARE).cpu(),
        "sigpy EspiritCalib, 24² k6 t0.02": sigpy_maps,
    }
    bart = shutil.which("bart")
    folder = Path(tempfile.mkdtemp())
    barts: dict[str, Bart] = {}
    if bart:
        write_cfl(folder / "kspace", km)
        _, res_rect = _calibration_block(km, cols, EspiritSettings(), None)
        ours_region = f"{res_rect.calib_rows}:{res_rect.calib_width}"
        barts = {
            "BART ecalib -m1 (defaults: 24², k6)": Bart(folder, []),
            f"BART ecalib -m1, ours: -r {ours_region} -k 5 -t {BART_T} -c 0.9": Bart(
                folder, ["-r", ours_region, "-k", "5", "-t", BART_T, "-c", "0.9"]
            ),
        }
        fns |= barts
    times = common.time_interleaved(fns, args.repeats, warmup=1, device=device)

    def clock(name: str) -> float:
        t = times[name]
        if name in barts:
            cpu = barts[name].cpu[1:]  # warm-up call first
            return 1e3 * float(np.median(cpu)) if args.clock == "cpu" else t.median_ms
        return t.cpu_median_ms if args.clock == "cpu" and device.type == "cpu" else t.median_ms

    bart_base = next(iter(barts), None)
    base = clock(bart_base) if bart_base else None

    def clock_name(name: str) -> str:
        if name in barts:
            return "cpu (child)" if args.clock == "cpu" else "wall"
        if name.startswith("ours"):
            return "cpu" if args.clock == "cpu" and device.type == "cpu" else "wall (synced)"
        return args.clock  # sigpy: numpy on the CPU

    timing = [
        [name, t.median_ms, clock(name), clock_name(name), clock(name) / base if base else None]
        for name, t in times.items()
    ]
    ratio = clock("ours, defaults") / base if base else None

    # agreement, same calibration region and settings (crop 0.9 in both)
    ours_sq = espirit_maps(km, cols, SQUARE)
    block, _ = _calibration_block(torch.from_numpy(km)[None], cols, SQUARE, None)
    _, eig_sq = espirit_eigenmaps(block.contiguous(), *km.shape[1:], 6, 0.02, solver="eigh")
    gap = (eig_sq[0, 0] - eig_sq[0, 1]).numpy()  # exact eigenvalues of every pixel
    agree = [["ours vs sigpy, 24² k6 t0.02 c0.9", *residuals(ours_sq, sigpy_maps(), gap)]]
    if bart:
        Bart(folder, ["-r", "24", "-k", "6", "-t", "0.0004", "-c", "0.9"])()
        agree.append(
            [
                "ours vs BART (default: orthogonal iterations), 24² k6 t0.02 c0.9",
                *residuals(ours_sq, read_cfl(folder / "maps", km.shape), gap),
            ]
        )
        square_args = ["-r", "24", "-k", "6", "-t", "0.0004", "-c", "0.9", "-O"]
        Bart(folder, square_args)()
        agree.append(
            [
                "ours vs BART -O (no orthogonal iterations), 24² k6 t0.02 c0.9",
                *residuals(ours_sq, read_cfl(folder / "maps", km.shape), gap),
            ]
        )
        # BART places its 24² region itself (it reports where): ours on that same block
        r0, c0 = bart_region(folder, square_args)
        same = torch.from_numpy(km[:, r0 : r0 + 24, c0 : c0 + 24].copy())[None]
        maps_same, eig_same = espirit_eigenmaps(same, *km.shape[1:], 6, 0.02, crop=0.9)
        ours_same = (maps_same[0] * (eig_same[0, 0] > 0.9)).numpy()
        _, exact_same = espirit_eigenmaps(same, *km.shape[1:], 6, 0.02, solver="eigh")
        agree.append(
            [
                f"ours vs BART -O, BART's block (rows {r0}–{r0 + 23}, columns {c0}–{c0 + 23})",
                *residuals(
                    ours_same,
                    read_cfl(folder / "maps", km.shape),
                    (exact_same[0, 0] - exact_same[0, 1]).numpy(),
                ),
            ]
        )
    shutil.rmtree(folder, ignore_errors=True)

    # batch
    batch = torch.from_numpy(np.stack([km] * args.batch)).to(device)
    single = {"one slice per call": lambda: [espirit_maps(s, cols) for s in batch]}
    single["batch per call"] = lambda: espirit_maps(batch, cols)
    bt = common.time_interleaved(single, args.repeats, warmup=1, device=device)
    one = device_ms(bt["one slice per call"]) / args.batch
    many = device_ms(bt["batch per call"]) / args.batch
    batch_rows = [[args.batch, one, many, one / many]]

    eig_rows = eigen_step(k, cols, args.iters, args.repeats)
    pre = precompute_rate(args.volumes, args.slices, args.coils, args.size)
    pre_device = (
        precompute_rate(args.volumes, args.slices, args.coils, args.size, device)
        if device.type != "cpu"
        else None
    )
    machine["load average at end"] = common.load_average()
    settings = {
        "size": args.size,
        "coils": args.coils,
        "acs": args.acs,
        "repeats": args.repeats,
        "batch": args.batch,
        "volumes": args.volumes,
        "slices": args.slices,
        "iters": args.iters,
        "clock": args.clock,
        "device": str(device),
        "device_clock": clock_text,
        "seed": args.seed,
        **({"quick": True} if args.quick else {}),
        **({"note": args.note} if args.note else {}),
    }
    return common.write_results(
        args.output_dir / "espirit_speed.json",
        title="ESPIRiT speed: ours vs sigpy vs BART",
        command=common.command_line("benchmarks/bench_espirit_speed.py", settings),
        machine=machine,
        settings=settings,
        notes=[
            f"k-space {c}×{h}×{w} (demo brain slice, readout oversampling removed), equispaced "
            f"4× mask with {args.acs} centre columns; one thread for every method "
            "(BART: OMP_NUM_THREADS=1).",
            f"Clock of the ratios: {args.clock} (cpu: process CPU time, BART's from its child "
            "process; wall medians are listed too). BART is timed end to end (file reading and "
            "writing included, a few ms).",
            f"Our maps on {device}: timed by {clock_text} (the batch table and our rows of the "
            "time table; on CUDA the process CPU time is only the host's share of the work).",
            "Ours, defaults: the rectangular ACS block (all ACS columns × 4× as many readout "
            "rows), kernel 5, thresh 0.005; 24²: the centred square region of sigpy's and "
            "BART's defaults with kernel 6 and thresh 0.02.",
            "Residual ‖a − b(bᴴa)‖ of unit-norm per-pixel maps over the pixels where both maps "
            "are nonzero (crop 0.9 in both; BART given -t = thresh², as it thresholds squared "
            "singular values; -O: BART's exact eigendecomposition instead of its default "
            "orthogonal iterations); large values sit where the two top eigenvalues are "
            "close and the eigenvector is ill-conditioned (sigpy: 100 power iterations; a "
            "perturbation ε of G turns the eigenvector by about ε / (λ₁ − λ₂)). BART places "
            "its 24² calibration region itself (its debug output names it; on these slices one "
            "readout row off the centred block of ours and sigpy's), so the maps of its "
            "default region differ where the eigengap is small; the last row compares ours (the "
            "default CPU solver, certified power iterations) on BART's own block.",
            "Per-pixel step: eigh of all C×C matrices vs power iterations from the column of "
            "largest diagonal entry; 'miss' = share of support pixels (top eigenvalue > 0.9) "
            "whose residual against eigh exceeds 1e-3.",
            "Precompute: precompute_maps end to end (h5 reading, default mask and readout crop, "
            "ESPIRiT, cache writing), cold cache, one process.",
        ],
        targets=[
            common.target("ours (defaults) / BART ecalib -m1 time", ratio, "<=", 0.5),
            common.target("ours vs sigpy residual, 99th percentile", agree[0][2], "<=", 1e-3),
            common.target(
                "ours vs BART -O on BART's calibration block, 99th percentile",
                agree[3][2] if bart else None,
                "<=",
                1e-3,
            ),
            common.target(
                "ours vs BART -O on BART's calibration block, max",
                agree[3][1] if bart else None,
                "<=",
                1e-3,
            ),
        ],
        tables=[
            common.table(
                "Time per slice (one thread)",
                ["method", "wall median ms", "ratio clock ms", "clock", "× BART defaults"],
                timing,
                ["", ".0f", ".0f", "", ".2f"],
                "lrrlr",
            ),
            common.table(
                "Per-pixel eigenvectors: eigh vs power iteration (CPU ms)",
                ["solver", "cpu median ms", "miss 1e-3", "max residual"],
                eig_rows,
                ["", ".0f", ".3f", ".1e"],
                "lrrr",
            ),
            common.table(
                "Batch: per-slice CPU time"
                if device_clock == "cpu"
                else f"Batch: per-slice time on {device} (wall, synchronized)",
                ["slices", "one per call ms", "batch per call ms", "speedup"],
                batch_rows,
                ["d", ".0f", ".0f", ".2f"],
                "rrrr",
            ),
            common.table(
                "Agreement of the maps (projection residual)",
                [
                    "pair",
                    "max",
                    "99th percentile",
                    "share of pixels compared",
                    "median λ₁−λ₂ of the worst 1 %",
                    f"99th percentile where λ₁−λ₂ ≥ {WELL_CONDITIONED_GAP}",
                ],
                agree,
                ["", ".1e", ".1e", ".2f", ".3f", ".1e"],
                "lrrrrr",  # fmt: skip
            ),
            common.table(
                "Precompute command (precompute_maps), cold cache",
                ["files", "slices", "k-space", "wall s", "CPU s", "slices/s"],
                [pre],
                ["d", "d", "", ".1f", ".1f", ".2f"],
                "rrlrrr",
            ),
            *(
                [
                    common.table(
                        f"Precompute command on {device} (precompute_maps, device path), "
                        "cold cache",
                        ["files", "slices", "k-space", "wall s (synced)", "host CPU s", "slices/s"],
                        [pre_device],
                        ["d", "d", "", ".1f", ".1f", ".2f"],
                        "rrlrrr",
                    )
                ]
                if pre_device is not None
                else []
            ),
        ],
    )


if __name__ == "__main__":
    print(f"wrote {main()}")
