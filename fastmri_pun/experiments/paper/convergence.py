"""Report sections that show whether the comparison's runs were trained to convergence and in
which regime: per-run convergence (validation curve flat at the end, early stop or budget),
train–test gaps per method, per-seed means, the learning-curve figure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ...app.run_folder import RunDir
from ...evaluation.figures import learning_curves_figure
from ...utils.markdown import markdown_table
from .learning_curves import overfit_check, plateau_check

__all__ = ["convergence_lines", "gap_lines", "per_seed_lines"]


def _fmt(value: float, spec: str = "+.2f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def convergence_lines(
    curves: pd.DataFrame,
    records: dict[str, dict[str, Any]],
    evaluated: dict[str, str],
    out: RunDir,
    window: int,
) -> list[str]:
    """The learning-curve figure and one row per evaluated run: epochs trained, why it stopped,
    the validation-PSNR gain over its last ``window`` epochs (flat = below 0.1 dB), and the
    slopes of training and validation PSNR over the second half of training."""
    lines = []
    if not curves.empty:
        path = learning_curves_figure(curves, out.root / "figures" / "learning_curves.png")
        lines += [f"![learning curves]({path.relative_to(out.root)})", ""]
    rows = []
    flat_ref, total_ref = 0, 0
    for name, run in evaluated.items():
        rec = records[run]
        cfg = rec.get("config") or {}
        curve = curves[curves["run"] == run] if not curves.empty else curves
        plateau = plateau_check(curve, window=window) if len(curve) else {}
        overfit = overfit_check(curve) if len(curve) > 2 else {}
        epochs = plateau.get("epochs", 0)
        if cfg.get("max_train_samples"):
            why = f"compute budget ({cfg['max_train_samples']} passes)"
        elif epochs < int(cfg.get("max_epochs") or 0):
            why = "early stop"
        else:
            why = "max_epochs"
        rows.append(
            [
                name,
                epochs,
                why,
                _fmt(plateau.get("last_gain_db", math.nan)),
                "yes" if plateau.get("flattened") else "**no**",
                _fmt(overfit.get("train_slope_db", math.nan)),
                _fmt(overfit.get("val_slope_db", math.nan)),
            ]
        )
        if rec.get("method") == records[next(iter(evaluated.values()))].get("method"):
            total_ref += 1
            flat_ref += bool(plateau.get("flattened"))
    header = [
        "run",
        "epochs",
        "stopped by",
        f"val PSNR gain, last {window} epochs (dB)",
        "flat (< 0.1 dB)",
        "train PSNR slope (dB/1k steps)",
        "val PSNR slope (dB/1k steps)",
    ]
    lines += markdown_table(header, rows, "lrlrlrr")
    return lines


def gap_lines(summary: pd.DataFrame, methods: list[str]) -> list[str]:
    """Train–test gap per method: mean PSNR on the training slices (``train`` shift) minus the
    in-distribution test PSNR, seeds pooled."""
    psnr = summary[summary["metric"] == "psnr"]
    rows = []
    for m in methods:
        sub = psnr[psnr["model"] == m].set_index("shift")["mean"]
        if "train" in sub and "in-dist" in sub:
            rows.append(
                [
                    m,
                    f"{sub['train']:.2f}",
                    f"{sub['in-dist']:.2f}",
                    f"{sub['train'] - sub['in-dist']:+.2f}",
                ]
            )
    if not rows:
        return ["(add the `train` and `in-dist` shifts to see train–test gaps)"]
    return markdown_table(
        ["method", "PSNR on training slices", "PSNR in-dist", "train − test gap (dB)"], rows, "lrrr"
    )


def per_seed_lines(seed_means: pd.DataFrame, reference: str, shifts: list[str]) -> list[str]:
    """Per method and training seed: in-distribution PSNR and the mean paired difference to
    ``reference`` under each shift (the spread behind the pooled intervals)."""
    psnr = seed_means[seed_means["metric"] == "psnr"]
    if psnr.empty:
        return []
    seeds = list(dict.fromkeys(psnr["train_seed"]))
    rows = []
    for model in dict.fromkeys(psnr["model"]):
        for seed in seeds:
            sub = psnr[(psnr["model"] == model) & (psnr["train_seed"] == seed)].set_index("shift")
            if sub.empty:
                continue
            cells = [
                "–"
                if s not in sub.index
                else (
                    f"{sub.loc[s, 'mean']:.2f}"
                    if model == reference
                    else f"{sub.loc[s, 'mean']:.2f} ({_fmt(sub.loc[s, 'mean_diff'])})"
                )
                for s in shifts
            ]
            rows.append([model, seed, *cells])
    return markdown_table(["method", "seed", *shifts], rows, "lr" + "r" * len(shifts))
