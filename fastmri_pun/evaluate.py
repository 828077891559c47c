"""Robustness evaluation of trained models under distribution shift.

    python -m fastmri_pun.evaluate --checkpoints dense/checkpoints/best.ckpt \\
        pun_it/checkpoints/best.ckpt --names dense pun-it --data_path DIR \\
        --shifts in-dist,accel-8x,mask-type,noise,anatomy,contrast,lesions --reference dense

For every model × shift: per-image PSNR, SSIM, NMSE (``fastmri.evaluate`` definitions on the
centre-cropped magnitude, peak = the file's ``max`` attribute) and, where fastMRI+ annotations
exist, ROI PSNR/SSIM inside the boxes. Writes ``results.csv``, ``summary.md`` (+ ``summary.csv``,
``differences.csv``) and ``figures/`` to ``--output_dir``; see
:mod:`fastmri_pun.evaluation.suite`. A rerun skips model × shift pairs that already finished.
Works the same on real fastMRI/fastMRI+ folders (use ``--test_split val``: fastMRI's test split
has no targets; ``--annotations brain.csv`` for fastMRI+ boxes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluation.suite import SuiteConfig, model_names, run_suite

DEFAULT_SHIFTS = "in-dist,accel-8x,mask-type,noise,anatomy,contrast,lesions"


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser (every flag documented in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m fastmri_pun.evaluate",
        description=__doc__.split("\n\n")[0] + " Scores every model on every shift and writes "
        "per-image results, a summary with paired bootstrap CIs and the paper's figures.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        help="Checkpoints written by fastmri_pun.train (ReconstructionModule; pruning masks "
        "are applied from the checkpoint).",
    )
    p.add_argument(
        "--names",
        nargs="+",
        default=None,
        help="Model names, one per checkpoint (default: the training run folder, "
        "RUN/checkpoints/x.ckpt -> RUN, else the file stem).",
    )
    p.add_argument(
        "--data_path",
        default=None,
        help="Dataset root holding multicoil_test/ and the shifted folders. Default: "
        "the demo set (built on first use, see --demo_size/--demo_coils).",
    )
    p.add_argument("--demo_size", type=int, default=128, help="Demo set only: image size N.")
    p.add_argument("--demo_coils", type=int, default=8, help="Demo set only: coils.")
    p.add_argument(
        "--shifts",
        default=DEFAULT_SHIFTS,
        help=f"Comma-separated shift names (default: {DEFAULT_SHIFTS}); see "
        "fastmri_pun.data.shifts for all.",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="Model the others are compared with (paired differences; default: the first).",
    )
    p.add_argument("--output_dir", default="outputs/eval", help="Output folder.")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the noise shift's k-space noise and of the bootstrap.",
    )
    p.add_argument(
        "--mask_type",
        default="equispaced_fraction",
        help="Training (in-distribution) mask type, as fastmri_pun.train's.",
    )
    p.add_argument("--center_fraction", type=float, default=0.08, help="Training centre fraction.")
    p.add_argument("--acceleration", type=float, default=4, help="Training acceleration.")
    p.add_argument(
        "--noise_snr_db",
        type=float,
        default=None,
        help="SNR (dB) of the noise shift (default: the registry's, 20 dB).",
    )
    p.add_argument(
        "--test_split",
        default="test",
        help="Folder suffix for the test data: multicoil_<split>[_anatomy|...]; use "
        "'val' on real fastMRI (its test split has no targets).",
    )
    p.add_argument(
        "--crop_readout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Remove the readout oversampling before reconstruction (must match "
        "training; fastmri_pun.train's default is on).",
    )
    p.add_argument("--maps_cache_dir", default=None, help="ESPIRiT map cache folder.")
    p.add_argument(
        "--annotations",
        default=None,
        help="fastMRI+ CSV (file,slice,study_level,x,y,width,height,label) used on "
        "every shift; rows of files outside a shift's folder are ignored there.",
    )
    p.add_argument(
        "--zero_filled",
        action="store_true",
        help="Also score fastMRI's zero-filled RSS baseline as model 'zero-filled'.",
    )
    p.add_argument(
        "--max_slices",
        type=int,
        default=None,
        help="At most this many (evenly spaced) slices per shift; default all.",
    )
    p.add_argument("--n_boot", type=int, default=10000, help="Bootstrap resamples.")
    p.add_argument(
        "--by_volume",
        action="store_true",
        help="Bootstrap whole volumes instead of images (slices of a volume are "
        "correlated; needs several volumes).",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'.")
    p.add_argument("--no_progress", action="store_true", help="Hide the tqdm progress bars.")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[dict[str, Path], SuiteConfig]:
    """``({name: checkpoint}, SuiteConfig)`` from parsed flags (demo data built if needed)."""
    if args.max_slices is not None and args.max_slices < 1:
        raise ValueError(f"--max_slices must be >= 1, got {args.max_slices}")
    if args.n_boot < 100:
        raise ValueError(f"--n_boot must be >= 100, got {args.n_boot}")
    shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
    if not shifts:
        raise ValueError("--shifts is empty")
    names = model_names(args.checkpoints, args.names)
    if args.data_path is None:
        from .demo.builder import ensure_demo_dataset

        data_path = Path(ensure_demo_dataset(size=args.demo_size, coils=args.demo_coils))
    else:
        data_path = Path(args.data_path)
    cfg = SuiteConfig(
        data_path=data_path,
        shifts=shifts,
        output_dir=Path(args.output_dir),
        mask_type=args.mask_type,
        center_fraction=args.center_fraction,
        acceleration=args.acceleration,
        noise_snr_db=args.noise_snr_db,
        test_split=args.test_split,
        crop_readout=args.crop_readout,
        sens_maps_cache=Path(args.maps_cache_dir) if args.maps_cache_dir else None,
        annotations=Path(args.annotations) if args.annotations else None,
        reference=args.reference,
        zero_filled=args.zero_filled,
        max_slices=args.max_slices,
        n_boot=args.n_boot,
        by_volume=args.by_volume,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    return dict(zip(names, (Path(c) for c in args.checkpoints), strict=True)), cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, run the suite, print where the outputs are. Bad input: one error line,
    exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        checkpoints, cfg = config_from_args(args)
        out = run_suite(checkpoints, cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m fastmri_pun.evaluate: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"results: {out['results_csv']}\nsummary: {out['summary_md']}\n"
        f"figures: {Path(cfg.output_dir) / 'figures'}"
    )
    return out


if __name__ == "__main__":
    main()
