"""The regime map's statistics and ``REPORT.md``: where, in denoiser width × training-set size,
pruning at initialisation beats the dense early-stopped model, read against over-parameterisation.

Input everywhere: the combined per-image table ``results.csv`` of the regime map, one row per
cell, method, training seed, shift and image, with columns ``cell`` (str), ``chans``,
``train_slices`` (int), ``method`` (str), ``train_seed`` (int), ``density`` (float),
``prunable_weights``, ``pixels_per_slice`` (int), ``shift``, ``fname`` (str), ``slice_num`` (int)
and one float column per metric (``psnr``, ``ssim``, ...); other columns (``model``, ...) are
ignored. Within a cell, two methods are paired by ``(train_seed, fname, slice_num)`` — the method's
image under a seed with the reference's image under the same seed, what
:func:`~fastmri_pun.experiments.paper.report.pooled_results` achieves with ``sN/fname`` keys — and
the CI is the hierarchical bootstrap of :func:`~fastmri_pun.evaluation.stats.paired_differences`
(training seeds, then images). The ``train`` shift (the training slices) only gives the train–test
gap. Sweep methods are named ``<method>@<density>`` (e.g. ``pun-it@0.01``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...evaluation.stats import N_BOOT, NOT_ENOUGH_UNITS, paired_differences
from ...utils.io import atomic_write_text
from ...utils.markdown import markdown_table
from .figures import density_sweep_figure, regime_figure

__all__ = [
    "CELL_COLUMNS",
    "TRAIN_SHIFT",
    "density_sweep",
    "over_parameterisation",
    "regime_differences",
    "train_test_gaps",
    "write_regime_report",
]

#: per-cell columns of the combined table (one value per cell)
CELL_COLUMNS = ("chans", "train_slices", "prunable_weights", "pixels_per_slice")
#: the shift of the training slices themselves (train–test gap only, never compared)
TRAIN_SHIFT = "train"
_SEED = "train_seed"
_KEY = ["cell", "method", _SEED, "shift", "fname", "slice_num"]
_SHORT = {"better": "better", "worse": "worse", "no significant difference": "n.s."}
_FMT = {"psnr": "{:+.2f}", "ssim": "{:+.4f}"}


def _check(df: pd.DataFrame, metrics: Sequence[str] = ()) -> None:
    """ValueError when columns are missing or a cell repeats a (method, seed, shift, image)."""
    missing = [c for c in (*_KEY, *CELL_COLUMNS, *metrics) if c not in df.columns]
    if missing:
        raise ValueError(f"results lack the columns {', '.join(missing)}")
    dup = df.duplicated(_KEY)
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(f"{int(dup.sum())} repeated rows, e.g. {dict(r[_KEY])}")


def over_parameterisation(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell: prunable weights of its dense model per training pixel,
    ``ratio = prunable_weights / (train_slices × pixels_per_slice)``.

    Why: over-parameterisation compares the free parameters with the observations they are fitted
    to. A reconstruction network is trained on every pixel of every training target (the loss sums
    over them), so ``train_slices × pixels_per_slice`` is the number of fitted values; the ratio
    grows with width and shrinks with the training set, and the cells with the largest ratio are
    the ones whose weights the data constrain least — where a dense model can memorise and the
    regularising effect claimed for pruning at initialisation has something to act on. Neighbouring
    pixels are correlated, so the ratio orders cells; its value is no threshold (1 is not the
    interpolation point). Weights per training slice (``weights_per_slice``) gives the same order
    within one image size (the ratio divided by a constant); the ratio also compares image sizes.
    The dense model's count is used for every method of a cell (a pruned method keeps
    ``density × prunable_weights``), so all methods of a cell share its x.

    Returns:
        one row per cell, sorted by ``ratio`` then ``cell``: ``cell``, ``chans``, ``train_slices``,
        ``prunable_weights``, ``pixels_per_slice`` (int), ``weights_per_slice``, ``ratio``
        (float).

    Raises:
        ValueError: a column missing; a cell with two values of a column of
            :data:`CELL_COLUMNS`; a non-positive ``train_slices`` or ``pixels_per_slice``.
    """
    _check(df)
    per = df.groupby("cell", sort=False)[list(CELL_COLUMNS)]
    varying = per.nunique()
    if (varying > 1).any(axis=None):
        bad = varying[(varying > 1).any(axis=1)]
        raise ValueError(f"cells with several values of {list(CELL_COLUMNS)}: {list(bad.index)}")
    out = per.first().reset_index().astype({c: int for c in CELL_COLUMNS})
    if (out[["train_slices", "pixels_per_slice"]] <= 0).any(axis=None):
        raise ValueError("train_slices and pixels_per_slice must be positive")
    out["weights_per_slice"] = out["prunable_weights"] / out["train_slices"]
    out["ratio"] = out["weights_per_slice"] / out["pixels_per_slice"]
    return out.sort_values(["ratio", "cell"], kind="mergesort").reset_index(drop=True)


def _shifts(df: pd.DataFrame, shifts: Sequence[str] | None) -> list[str]:
    """``shifts`` or every shift of ``df`` in order of appearance, without :data:`TRAIN_SHIFT`."""
    names = list(dict.fromkeys(df["shift"])) if shifts is None else list(shifts)
    return [s for s in names if s != TRAIN_SHIFT]


def _pair(
    sub: pd.DataFrame, method: str, reference: str, metrics: Sequence[str], n_boot: int,
    seed: int, by_volume: bool,
) -> pd.DataFrame:  # fmt: skip
    """Rows of :func:`paired_differences` of ``method − reference`` in one cell's rows ``sub``
    (empty when either method is absent); columns ``method, reference, comparison, ...``."""
    pair = sub[sub["method"].isin([method, reference])]
    if not {method, reference} <= set(pair["method"]):
        return pd.DataFrame()
    d = paired_differences(
        pair.assign(model=pair["method"]), reference, list(metrics), n_boot, seed, by_volume,
        seed_column=_SEED,
    )  # fmt: skip
    if d.empty:
        return d
    d = d.rename(columns={"model": "method"})
    d.insert(0, "comparison", f"{method} − {reference}")
    return d


def regime_differences(
    df: pd.DataFrame,
    reference: str = "dense",
    methods: Sequence[str] = ("pun-it", "dense-wd", "magnitude"),
    shifts: Sequence[str] | None = None,
    metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = N_BOOT,
    seed: int = 0,
    *,
    focus: str = "pun-it",
    controls: Sequence[str] = ("dense-wd", "magnitude"),
    by_volume: bool = False,
) -> pd.DataFrame:
    """Per cell, paired differences ``method − reference`` for every method of ``methods`` and
    ``focus − control`` for every control, on every shift but :data:`TRAIN_SHIFT`.

    Returns:
        one row per (cell, comparison, shift, metric), cells by ratio, then comparisons, shifts
        and metrics in the order given: ``cell, chans, train_slices, ratio, comparison`` (e.g.
        ``"pun-it − dense"``), ``method, reference, shift, metric, n, n_seeds, mean_diff,
        std_diff, median_diff, ci_low, ci_high, verdict`` (``"better"``, ``"worse"``, ``"no
        significant difference"`` or ``"not enough units (1 image)"`` with NaN CI). A comparison
        missing a method in a cell has no rows there.

    Raises:
        ValueError: as :func:`over_parameterisation`; a metric column missing.
    """
    _check(df, metrics)
    cells = over_parameterisation(df)
    shifts = _shifts(df, shifts)
    pairs = [(m, reference) for m in methods if m != reference]
    pairs += [(focus, c) for c in controls if c not in (focus, reference)]
    frames = []
    for cell in cells.itertuples(index=False):
        sub = df[(df["cell"] == cell.cell) & df["shift"].isin(shifts)]
        for method, ref in pairs:
            d = _pair(sub, method, ref, metrics, n_boot, seed, by_volume)
            if not d.empty:
                info = {k: getattr(cell, k) for k in ("cell", "chans", "train_slices", "ratio")}
                frames.append(d.assign(**info))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    order = {"cell": list(cells["cell"]), "comparison": [f"{m} − {r}" for m, r in pairs]}
    order |= {"shift": shifts, "metric": list(metrics)}
    out = out.sort_values(
        list(order), key=lambda c: c.map({v: i for i, v in enumerate(order[c.name])}),
        kind="mergesort",
    )  # fmt: skip
    head = ["cell", "chans", "train_slices", "ratio", "comparison", "method", "reference"]
    return out[head + [c for c in out.columns if c not in head]].reset_index(drop=True)


def train_test_gaps(
    df: pd.DataFrame, method: str = "dense", *, metric: str = "psnr", test_shift: str = "in-dist"
) -> pd.DataFrame:
    """Per cell, the train–test gap of ``method``: mean ``metric`` on :data:`TRAIN_SHIFT` − mean
    on ``test_shift``, seeds pooled, and its spread over seeds (the same gap per seed).

    Returns:
        one row per cell (sorted by ratio): ``cell, chans, train_slices, ratio, method, gap,
        gap_seed_min, gap_seed_max, n_seeds`` (seeds with both shifts), ``train_mean,
        test_mean`` (float), ``n_train, n_test`` (images, int) and ``note`` (empty, or why the gap
        is NaN: no ``train`` rows, no ``test_shift`` rows).

    Raises:
        ValueError: as :func:`over_parameterisation`; ``metric`` not a column.
    """
    _check(df, [metric])
    rows = []
    for cell in over_parameterisation(df).itertuples(index=False):
        m = df[(df["cell"] == cell.cell) & (df["method"] == method) & df[metric].notna()]
        tr, te = m[m["shift"] == TRAIN_SHIFT], m[m["shift"] == test_shift]
        row: dict[str, Any] = {
            "cell": cell.cell, "chans": cell.chans, "train_slices": cell.train_slices,
            "ratio": cell.ratio, "method": method, "gap": np.nan, "gap_seed_min": np.nan,
            "gap_seed_max": np.nan, "n_seeds": 0, "train_mean": np.nan, "test_mean": np.nan,
            "n_train": len(tr), "n_test": len(te), "note": "",
        }  # fmt: skip
        if m.empty:
            row["note"] = f"no `{method}` results in this cell"
        elif tr.empty or te.empty:
            row["note"] = f"no `{TRAIN_SHIFT if tr.empty else test_shift}` shift for `{method}`"
        else:
            per_seed = (
                tr.groupby(_SEED)[metric].mean() - te.groupby(_SEED)[metric].mean()
            ).dropna()
            row |= {
                "train_mean": tr[metric].mean(), "test_mean": te[metric].mean(),
                "gap": tr[metric].mean() - te[metric].mean(), "n_seeds": len(per_seed),
                "gap_seed_min": per_seed.min(), "gap_seed_max": per_seed.max(),
            }  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def density_sweep(
    df: pd.DataFrame,
    cell: str,
    reference: str = "dense",
    method: str = "pun-it",
    shifts: Sequence[str] | None = None,
    metrics: Sequence[str] = ("psnr",),
    n_boot: int = N_BOOT,
    seed: int = 0,
    *,
    by_volume: bool = False,
) -> pd.DataFrame:
    """Paired differences against ``reference`` in ``cell`` of ``method`` (at its density) and of
    its sweep methods ``<method>@<density>``, on every shift but :data:`TRAIN_SHIFT`.

    Returns:
        one row per (method, shift, metric), sorted by density: ``cell, method, reference,
        density`` (mean of the method's ``density`` column), ``shift, metric, n, n_seeds,
        mean_diff, ci_low, ci_high, verdict``; empty without such methods.

    Raises:
        ValueError: ``cell`` not in ``df``; ``reference`` not a method of that cell; as
            :func:`regime_differences`.
    """
    _check(df, metrics)
    sub = df[df["cell"] == cell]
    if sub.empty:
        raise ValueError(f"cell {cell!r} not in results; cells: {', '.join(df['cell'].unique())}")
    if reference not in set(sub["method"]):
        raise ValueError(f"reference {reference!r} not a method of cell {cell!r}")
    sub = sub[sub["shift"].isin(_shifts(df, shifts))]
    names = [m for m in dict.fromkeys(sub["method"]) if m == method or m.startswith(method + "@")]
    frames = []
    for name in names:
        d = _pair(sub, name, reference, metrics, n_boot, seed, by_volume)
        density = float(sub.loc[sub["method"] == name, "density"].mean())
        frames.append(d.assign(cell=cell, density=density))
    cols = ["cell", "method", "reference", "density", "shift", "metric", "n", "n_seeds"]
    cols += ["mean_diff", "ci_low", "ci_high", "verdict"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    return out.sort_values(["density", "method"], kind="mergesort").reset_index(drop=True)


def _sweep_cells(df: pd.DataFrame, method: str) -> list[str]:
    """Cells with a sweep method ``<method>@...``, in order of appearance."""
    sweep = df["method"].astype(str).str.startswith(method + "@")
    return list(dict.fromkeys(df.loc[sweep, "cell"]))


def _cell_text(r: pd.Series, metric: str = "psnr") -> str:
    """``+1.02 [+0.85, +1.20] better`` (``[n/a] n/a: <reason>`` without an interval)."""
    fmt = _FMT.get(metric, "{:+.4f}")
    if str(r["verdict"]).startswith(NOT_ENOUGH_UNITS):
        return f"{fmt.format(r['mean_diff'])} [n/a] n/a: {r['verdict']}"
    ci = f"[{fmt.format(r['ci_low'])}, {fmt.format(r['ci_high'])}]"
    return f"{fmt.format(r['mean_diff'])} {ci} **{_SHORT[r['verdict']]}**"


def _lookup(d: pd.DataFrame, **eq: Any) -> pd.DataFrame:
    """Rows of ``d`` whose columns equal the given values."""
    mask = np.ones(len(d), dtype=bool)
    for k, v in eq.items():
        mask &= (d[k] == v).to_numpy()
    return d[mask]


def _grid_table(diffs: pd.DataFrame, gaps: pd.DataFrame, shifts: list[str], comp: str) -> list[str]:
    rows = []
    for g in gaps.itertuples(index=False):
        gap = (
            "n/a"
            if np.isnan(g.gap)
            else f"{g.gap:+.2f} [{g.gap_seed_min:+.2f}, {g.gap_seed_max:+.2f}]"
        )
        cells = []
        for shift in shifts:
            r = _lookup(diffs, cell=g.cell, comparison=comp, shift=shift, metric="psnr")
            cells.append("–" if r.empty else _cell_text(r.iloc[0]))
        rows.append([g.cell, g.chans, g.train_slices, f"{g.ratio:.3g}", gap, *cells])
    header = ["cell", "chans", "train slices", "ratio", "dense gap (dB) [seed min, max]"]
    return markdown_table(
        header + [f"{s}: Δ PSNR (dB) [95 % CI]" for s in shifts], rows, "lrrrr" + "l" * len(shifts)
    )


def _names(rows: pd.DataFrame) -> str:
    return ", ".join(
        f"{r.cell} (ratio {r.ratio:.3g}, {r.mean_diff:+.2f} dB [{r.ci_low:+.2f}, {r.ci_high:+.2f}])"
        for r in rows.itertuples(index=False)
    )


def _spearman(x: pd.Series, y: pd.Series) -> tuple[float, int]:
    """Spearman's ρ of the finite pairs and their number (ρ NaN below 3 pairs)."""
    ok = np.isfinite(x.to_numpy(dtype=float)) & np.isfinite(y.to_numpy(dtype=float))
    n = int(ok.sum())
    rho = float(x[ok].reset_index(drop=True).corr(y[ok].reset_index(drop=True), method="spearman"))
    return (rho if n >= 3 else float("nan")), n


def _verdict_lines(diffs: pd.DataFrame, gaps: pd.DataFrame, shifts: list[str], focus: str,
                   reference: str, controls: Sequence[str]) -> list[str]:  # fmt: skip
    comp = f"{focus} − {reference}"
    lines = []
    gap = gaps.set_index("cell")["gap"]
    for shift in shifts:
        d = _lookup(diffs, comparison=comp, shift=shift, metric="psnr")
        if d.empty:
            continue
        v = d["verdict"].astype(str)
        win, tie, lose = d[v == "better"], d[v == "no significant difference"], d[v == "worse"]
        none = d[v.str.startswith(NOT_ENOUGH_UNITS)]
        text = f"- **{shift}** (PSNR, {len(d)} cells): {focus} beats {reference} in {len(win)}"
        text += f": {_names(win)}" if len(win) else ""
        text += f"; ties in {len(tie)}" + (f" ({', '.join(tie['cell'])})" if len(tie) else "")
        text += f"; loses in {len(lose)}" + (f": {_names(lose)}" if len(lose) else "")
        if len(none):
            text += f"; no verdict in {len(none)} ({', '.join(f'{r.cell}: {r.verdict}' for r in none.itertuples())})"
        decided = d[~v.str.startswith(NOT_ENOUGH_UNITS)]
        others = decided[decided["verdict"] != "better"]
        if len(win) and len(others):
            if win["ratio"].min() > others["ratio"].max():
                text += f". Every winning cell is more over-parameterised (ratio ≥ {win['ratio'].min():.3g}) than every other cell (≤ {others['ratio'].max():.3g})"
            else:
                text += f". Wins and non-wins overlap in ratio (wins {win['ratio'].min():.3g}–{win['ratio'].max():.3g}, others {others['ratio'].min():.3g}–{others['ratio'].max():.3g})"
        rho_r, n_r = _spearman(d["mean_diff"], d["ratio"])
        rho_g, n_g = _spearman(d["mean_diff"], d["cell"].map(gap))
        text += f". Spearman ρ of Δ with the ratio {rho_r:+.2f} ({n_r} cells), with the {reference} gap {rho_g:+.2f} ({n_g} cells)."
        ctrl = []
        for c in controls:
            vc = _lookup(diffs, comparison=f"{focus} − {c}", shift=shift, metric="psnr")
            vc = vc.set_index("cell")["verdict"]
            if vc.empty:
                continue
            also = [cell for cell in win["cell"] if vc.get(cell) == "better"]
            own = _lookup(diffs, comparison=f"{c} − {reference}", shift=shift, metric="psnr")
            ctrl.append(
                f"vs `{c}`: {focus} better in {int((vc == 'better').sum())}, worse in {int((vc == 'worse').sum())} of {len(vc)} cells; "
                f"of its {len(win)} wins over {reference}, {len(also)} also beat `{c}`"
                + (f" ({', '.join(also)})" if also else "")
                + f"; `{c}` itself beats {reference} in {int((own['verdict'] == 'better').sum())} of {len(own)} cells"
            )
        if ctrl:
            text += " Controls — " + "; ".join(ctrl) + "."
        lines.append(text)
    return lines


def write_regime_report(
    out_dir: str | os.PathLike,
    df: pd.DataFrame,
    config_summary: Mapping[str, Any],
    *,
    reference: str = "dense",
    focus: str = "pun-it",
    controls: Sequence[str] = ("dense-wd", "magnitude"),
    metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = N_BOOT,
    seed: int = 0,
    by_volume: bool = False,
) -> Path:
    """Write ``REPORT.md``, ``regime_differences.csv``, ``train_test_gaps.csv``,
    ``density_sweep.csv`` (when a cell has sweep methods) and the figures ``regime.png`` and
    ``density_sweep.png`` (``density_sweep_<cell>.png`` for several sweep cells) into
    ``out_dir``; returns the report's path. Every number of the report comes from these files,
    which come from ``df`` alone.

    Args:
        df: the combined per-image table (module docstring).
        config_summary: setup lines of the report, ``key → value`` (e.g. grid values, image
            size, seeds), printed as ``- key: value``.
        reference, focus, controls: the reference, the method in question and the controls it
            is compared with (:func:`regime_differences`); ``metrics``, ``n_boot``, ``seed``,
            ``by_volume``: as there.

    Raises:
        ValueError: as :func:`regime_differences`; no comparison ``focus − reference`` at all.
    """
    out = Path(out_dir)
    methods = [m for m in (focus, *controls) if m != reference]
    diffs = regime_differences(df, reference, methods, None, metrics, n_boot, seed, focus=focus,
                               controls=controls, by_volume=by_volume)  # fmt: skip
    comp = f"{focus} − {reference}"
    if diffs.empty or comp not in set(diffs["comparison"]):
        raise ValueError(f"no cell has both {focus!r} and {reference!r} results")
    gaps = train_test_gaps(df, reference)
    shifts = list(dict.fromkeys(diffs["shift"]))
    atomic_write_text(out / "regime_differences.csv", diffs.to_csv(index=False))
    atomic_write_text(out / "train_test_gaps.csv", gaps.to_csv(index=False))
    regime_figure(diffs, gaps, out / "regime.png", comp)
    sweep_cells = _sweep_cells(df, focus)
    sweeps = [density_sweep(df, c, reference, focus, None, metrics, n_boot, seed, by_volume=by_volume)
              for c in sweep_cells]  # fmt: skip
    sweep_lines = []
    for cell, sw in zip(sweep_cells, sweeps, strict=True):
        png = "density_sweep.png" if len(sweep_cells) == 1 else f"density_sweep_{cell}.png"
        density_sweep_figure(sw, out / png)
        rows = [
            [r.method, f"{100 * r.density:.3g} %",
             *("–" if (x := _lookup(sw, method=r.method, shift=s, metric="psnr")).empty
               else _cell_text(x.iloc[0]) for s in shifts)]
            for r in sw.drop_duplicates("method").itertuples(index=False)
        ]  # fmt: skip
        sweep_lines += [f"### Cell {cell}: {focus} − {reference}, PSNR (dB)", "", f"![density sweep {cell}]({png})", "",
                        *markdown_table(["method", "density", *shifts], rows, "lr" + "l" * len(shifts)), ""]  # fmt: skip
    if sweeps:
        atomic_write_text(out / "density_sweep.csv", pd.concat(sweeps).to_csv(index=False))
    notes = [f"- {g.cell}: {g.note}." for g in gaps.itertuples(index=False) if g.note]
    n_seeds = int(df[_SEED].nunique())
    lines = [
        "# Regime map: where does pruning at initialisation help?",
        "",
        "## Setup",
        "",
        *(f"- {k}: {v}" for k, v in config_summary.items()),
        f"- Statistics: paired difference per image under the same training seed within a cell; 95 % CI from a hierarchical bootstrap ({n_seeds} seeds resampled, then {'volumes' if by_volume else 'images'} within each seed; {n_boot} draws, seed {seed}). *better/worse* = the CI excludes 0, *n.s.* = no significant difference, *n/a* = fewer than two resampling units.",
        "- Over-parameterisation ratio = prunable weights of the cell's dense model / (training slices × pixels per slice): weights per training pixel (same order as weights per training slice at one image size).",
        f"- Gap = mean PSNR of `{reference}` on its training slices (`{TRAIN_SHIFT}` shift) − on `in-dist`, seeds pooled; in brackets the per-seed min and max.",
        "",
        f"## Grid ({comp}, PSNR)",
        "",
        *_grid_table(diffs, gaps, shifts, comp),
        "",
        *(["Gaps not available:", "", *notes, ""] if notes else []),
        f"![regime](regime.png)\n\n*Figure:* Δ PSNR ({comp}) against the ratio (log x), one panel per shift, 95 % CI bars, marker/colour = width, text = training slices; hollow = no interval. Top panel: the `{reference}` train–test gap (bars: seed min/max) on the same x axis.",
        "",
    ]
    if sweep_lines:
        lines += ["## Density sweep", "", *sweep_lines]
    lines += [
        "## Verdict",
        "",
        "Computed from `regime_differences.csv` and `train_test_gaps.csv` (PSNR); the Spearman correlations over so few cells are descriptive, not a test."
        + (
            f" With {n_seeds} training seeds the intervals tend to be too narrow; treat verdicts near the CI boundary as weak."
            if n_seeds < 5
            else ""
        ),
        "",
        *_verdict_lines(diffs, gaps, shifts, focus, reference, controls),
        "",
        "Per-image results: `results.csv`; all comparisons and SSIM: `regime_differences.csv`.",
        "",
    ]
    return atomic_write_text(out / "REPORT.md", "\n".join(lines))
