"""The regime map's statistics and ``REPORT.md``: where, in denoiser width × training-set size,
pruning at initialisation beats the dense early-stopped model, read against over-parameterisation.

Input everywhere: the combined per-image table ``results.csv``, one row per cell, method, training
seed, shift and image, with columns ``cell, method, shift, fname`` (str), ``chans, train_slices,
train_seed, slice_num, prunable_weights, pixels_per_slice`` (int), ``density`` (float) and one
float column per metric (``psnr``, ``ssim``, ...); other columns (``model``, ...) are ignored.
Sweep methods are named ``<method>@<density>`` (e.g. ``pun-it@0.01``). Within a cell, two methods
are paired by ``(train_seed, fname, slice_num)`` — a method's image under a seed with the
reference's image under the same seed, as the ``sN/fname`` keys of
:func:`~fastmri_pun.experiments.paper.report.pooled_results` do — and the CI is the hierarchical
bootstrap of :func:`~fastmri_pun.evaluation.stats.paired_differences` (training seeds, then
images). The ``train`` shift (the training slices) only gives the train–test gap.
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

__all__ = ["TRAIN_SHIFT", "density_sweep", "over_parameterisation", "regime_differences",
           "train_test_gaps", "write_regime_report"]  # fmt: skip

#: the shift of the training slices themselves (train–test gap only, never compared)
TRAIN_SHIFT = "train"
_CELL = ["chans", "train_slices", "prunable_weights", "pixels_per_slice"]  # one value per cell
_SEED = "train_seed"
_KEY = ["cell", "method", _SEED, "shift", "fname", "slice_num"]
_SHORT = {"better": "better", "worse": "worse", "no significant difference": "n.s."}
_ROLE = {"dense-wd": "regularisation (weight decay)", "magnitude": "a cheap (magnitude) mask"}


def _check(df: pd.DataFrame, metrics: Sequence[str] = ()) -> None:
    """ValueError when columns are missing or a cell repeats a (method, seed, shift, image)."""
    missing = [c for c in (*_KEY, *_CELL, *metrics) if c not in df.columns]
    if missing:
        raise ValueError(f"results lack the columns {', '.join(missing)}")
    dup = df.duplicated(_KEY)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} repeated rows, e.g. {dict(df[dup].iloc[0][_KEY])}")


def over_parameterisation(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell, prunable weights of its dense model per training pixel:
    ``ratio = prunable_weights / (train_slices × pixels_per_slice)``.

    Why: over-parameterisation compares free parameters with the values they are fitted to. The
    network is trained on every pixel of every training target (the loss sums over them), so
    ``train_slices × pixels_per_slice`` counts the fitted values; the ratio grows with width and
    shrinks with the training set, and the cells with the largest ratio are those whose weights
    the data constrain least — where a dense model can memorise its training slices and the
    regularising effect claimed for pruning at initialisation has something to act on.
    Neighbouring pixels are correlated, so the ratio orders cells; its value is no threshold.
    Weights per training slice (``weights_per_slice``) gives the same order within one image size
    (it is the ratio times a constant); the ratio also compares image sizes. Every method of a
    cell gets the dense count (a pruned one keeps ``density × prunable_weights``): one x per cell.

    Returns:
        one row per cell, sorted by ``ratio`` then ``cell``: ``cell``, ``chans, train_slices,
        prunable_weights, pixels_per_slice`` (int), ``weights_per_slice, ratio`` (float).

    Raises:
        ValueError: a column missing; repeated rows; a cell with two values of ``chans``,
            ``train_slices``, ``prunable_weights`` or ``pixels_per_slice``; a non-positive
            ``train_slices`` or ``pixels_per_slice``.
    """
    _check(df)
    per = df.groupby("cell", sort=False)[_CELL]
    varying = per.nunique().max(axis=1) > 1
    if varying.any():
        raise ValueError(f"cells with several values of {_CELL}: {list(varying[varying].index)}")
    out = per.first().reset_index().astype({c: int for c in _CELL})
    if (out[["train_slices", "pixels_per_slice"]] <= 0).any(axis=None):
        raise ValueError("train_slices and pixels_per_slice must be positive")
    out["weights_per_slice"] = out["prunable_weights"] / out["train_slices"]
    out["ratio"] = out["weights_per_slice"] / out["pixels_per_slice"]
    return out.sort_values(["ratio", "cell"], kind="mergesort").reset_index(drop=True)


def _shifts(df: pd.DataFrame, shifts: Sequence[str] | None) -> list[str]:
    """``shifts`` or every shift of ``df`` in order of appearance, without :data:`TRAIN_SHIFT`."""
    names = list(dict.fromkeys(df["shift"])) if shifts is None else list(shifts)
    return [s for s in names if s != TRAIN_SHIFT]


def _pair(sub: pd.DataFrame, method: str, reference: str, metrics: Sequence[str], n_boot: int,
          seed: int, by_volume: bool) -> pd.DataFrame:  # fmt: skip
    """:func:`paired_differences` of ``method − reference`` on one cell's rows ``sub`` (columns
    ``comparison, method, reference, ...``); empty when either method is absent."""
    pair = sub[sub["method"].isin([method, reference])]
    if not {method, reference} <= set(pair["method"]):
        return pd.DataFrame()
    d = paired_differences(pair.assign(model=pair["method"]), reference, list(metrics), n_boot,
                           seed, by_volume, seed_column=_SEED)  # fmt: skip
    return d.rename(columns={"model": "method"}).assign(comparison=f"{method} − {reference}")


def regime_differences(
    df: pd.DataFrame, reference: str = "dense",
    methods: Sequence[str] = ("pun-it", "dense-wd", "magnitude"),
    shifts: Sequence[str] | None = None, metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = N_BOOT, seed: int = 0, *, focus: str = "pun-it",
    controls: Sequence[str] = ("dense-wd", "magnitude"), by_volume: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Per cell, paired differences ``method − reference`` for every method of ``methods`` and
    ``focus − control`` for every control, on ``shifts`` (default: all) but :data:`TRAIN_SHIFT`.

    Returns:
        one row per (cell, comparison, shift, metric) — cells by ratio, then comparisons, shifts
        and metrics in the order given — with columns ``cell, chans, train_slices, ratio,
        comparison`` (e.g. ``"pun-it − dense"``), ``method, reference, shift, metric, n,
        n_seeds, mean_diff, std_diff, median_diff, ci_low, ci_high, verdict`` (``"better"``,
        ``"worse"``, ``"no significant difference"``, or ``"not enough units (1 image)"`` with
        NaN CI). A comparison with a method absent from a cell has no rows there; empty
        DataFrame when no comparison has both methods anywhere.

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
                frames.append(d.assign(cell=cell.cell, chans=cell.chans,
                                       train_slices=cell.train_slices, ratio=cell.ratio))  # fmt: skip
    if not frames:
        return pd.DataFrame()
    order = {"cell": list(cells["cell"]), "comparison": [f"{m} − {r}" for m, r in pairs]}
    order |= {"shift": shifts, "metric": list(metrics)}
    out = pd.concat(frames, ignore_index=True).sort_values(
        list(order), key=lambda c: c.map(order[c.name].index), kind="mergesort"
    )
    head = ["cell", "chans", "train_slices", "ratio", "comparison", "method", "reference"]
    return out[head + [c for c in out.columns if c not in head]].reset_index(drop=True)


def train_test_gaps(
    df: pd.DataFrame, method: str = "dense", *, metric: str = "psnr", test_shift: str = "in-dist"
) -> pd.DataFrame:
    """Per cell, the train–test gap of ``method``: mean ``metric`` on :data:`TRAIN_SHIFT` − mean
    on ``test_shift``, seeds pooled, and its spread (min, max) over the per-seed gaps.

    Returns:
        one row per cell, by ratio: ``cell, chans, train_slices, ratio, method, gap,
        gap_seed_min, gap_seed_max, n_seeds`` (seeds with both shifts), ``train_mean, test_mean``
        (float), ``n_train, n_test`` (images, int) and ``note``: empty, or why the gap is NaN
        (no ``method`` rows, no ``train`` shift, no ``test_shift``) — never an error.

    Raises:
        ValueError: as :func:`over_parameterisation`; ``metric`` not a column.
    """
    _check(df, [metric])
    rows = []
    for cell in over_parameterisation(df).itertuples(index=False):
        m = df[(df["cell"] == cell.cell) & (df["method"] == method) & df[metric].notna()]
        tr, te = m.loc[m["shift"] == TRAIN_SHIFT, [_SEED, metric]], m[m["shift"] == test_shift]
        row: dict[str, Any] = dict(
            cell=cell.cell, chans=cell.chans, train_slices=cell.train_slices, ratio=cell.ratio,
            method=method, gap=np.nan, gap_seed_min=np.nan, gap_seed_max=np.nan, n_seeds=0,
            train_mean=np.nan, test_mean=np.nan, n_train=len(tr), n_test=len(te), note="",
        )  # fmt: skip
        if m.empty:
            row["note"] = f"no `{method}` results in this cell"
        elif tr.empty or te.empty:
            row["note"] = f"no `{TRAIN_SHIFT if tr.empty else test_shift}` shift for `{method}`"
        else:
            seeds = (tr.groupby(_SEED)[metric].mean() - te.groupby(_SEED)[metric].mean()).dropna()
            row.update(train_mean=tr[metric].mean(), test_mean=te[metric].mean(),
                       gap=tr[metric].mean() - te[metric].mean(), n_seeds=len(seeds),
                       gap_seed_min=seeds.min(), gap_seed_max=seeds.max())  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def density_sweep(
    df: pd.DataFrame, cell: str, reference: str = "dense", method: str = "pun-it",
    shifts: Sequence[str] | None = None, metrics: Sequence[str] = ("psnr",),
    n_boot: int = N_BOOT, seed: int = 0, *, by_volume: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Paired differences against ``reference`` in ``cell`` of ``method`` (at its density) and of
    its sweep methods ``<method>@<density>``, on ``shifts`` (default: all) but :data:`TRAIN_SHIFT`.

    Returns:
        one row per (method, shift, metric), by density: ``cell, method, reference, density``
        (mean of the method's ``density`` column: kept fraction of its prunable weights),
        ``shift, metric, n, n_seeds, mean_diff, ci_low, ci_high, verdict``; no rows without such
        methods.

    Raises:
        ValueError: ``cell`` not in ``df``; ``reference`` not a method of that cell; as
            :func:`regime_differences`.
    """
    _check(df, metrics)
    sub = df[df["cell"] == cell]
    if sub.empty:
        raise ValueError(f"cell {cell!r} not in results; cells: {', '.join(df['cell'].unique())}")
    if reference not in set(sub["method"]):
        raise ValueError(f"reference {reference!r} is not a method of cell {cell!r}")
    sub = sub[sub["shift"].isin(_shifts(df, shifts))]
    cols = "cell method reference density shift metric n n_seeds mean_diff ci_low ci_high verdict"
    cols = cols.split()
    frames = [pd.DataFrame(columns=cols)]
    for name in dict.fromkeys(sub["method"]):
        if name == method or str(name).startswith(method + "@"):
            d = _pair(sub, name, reference, metrics, n_boot, seed, by_volume)
            density = float(sub.loc[sub["method"] == name, "density"].mean())
            frames += [] if d.empty else [d.assign(cell=cell, density=density)[cols]]
    out = pd.concat(frames[1:], ignore_index=True) if len(frames) > 1 else frames[0]
    return out.sort_values(["density", "method"], kind="mergesort").reset_index(drop=True)


def _ci_text(r: Any) -> str:
    """``+1.02 [+0.85, +1.20] **better**`` of a differences row in dB (``[n/a] n/a: <reason>``
    without an interval)."""
    if str(r.verdict).startswith(NOT_ENOUGH_UNITS):
        return f"{r.mean_diff:+.2f} [n/a] n/a: {r.verdict}"
    return f"{r.mean_diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] **{_SHORT[r.verdict]}**"


def _table(d: pd.DataFrame, key: str, rows: dict[Any, list[Any]], header: list[str],
           shifts: list[str]) -> list[str]:  # fmt: skip
    """Markdown table: per ``rows`` item ``k → first cells``, those cells, then :func:`_ci_text`
    of the row of ``d`` with ``d[key] == k`` on every shift (``–`` when there is none)."""
    at = {(getattr(r, key), r.shift): r for r in d.itertuples(index=False)}
    body = [[*first, *(_ci_text(at[k, s]) if (k, s) in at else "–" for s in shifts)]
            for k, first in rows.items()]  # fmt: skip
    return markdown_table(header + [f"{s}: Δ PSNR (dB) [95 % CI]" for s in shifts], body)


def _named(rows: pd.DataFrame, numbers: bool = True) -> str:
    """``": c64-n2 (ratio 5.5, +1.00 dB [+0.95, +1.05]), ..."``; ``" (c64-n2, ...)"`` without
    numbers; empty without rows."""
    if rows.empty or not numbers:
        return f" ({', '.join(rows['cell'])})" if len(rows) else ""
    return ": " + ", ".join(f"{r.cell} (ratio {r.ratio:.3g}, {r.mean_diff:+.2f} dB "
                            f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}])" for r in rows.itertuples())  # fmt: skip


def _spearman(x: pd.Series, y: pd.Series) -> tuple[float, int]:
    """Spearman's ρ of the finite pairs of ``x, y [K]`` and their number (NaN below 3 pairs)."""
    xy = pd.DataFrame({"x": x.to_numpy(dtype=float), "y": y.to_numpy(dtype=float)}).dropna()
    return float(xy["x"].corr(xy["y"], method="spearman") if len(xy) >= 3 else np.nan), len(xy)


def _count(v: pd.Series, word: str) -> int:
    return int((v.astype(str) == word).sum())


def _shift_verdict(psnr: pd.DataFrame, gap: pd.Series, shift: str, focus: str, reference: str,
                   controls: Sequence[str]) -> str:  # fmt: skip
    """One bullet: in which cells ``focus`` wins, ties, loses against ``reference`` on ``shift``,
    whether the wins line up with the ratio and the gap, and what the controls say."""
    at = {c: g for c, g in psnr[psnr["shift"] == shift].groupby("comparison")}
    if f"{focus} − {reference}" not in at:
        return f"- **{shift}**: no {focus} − {reference} comparison."
    d = at[f"{focus} − {reference}"]
    v = d["verdict"].astype(str)
    none = v.str.startswith(NOT_ENOUGH_UNITS)
    win, tie, lose = d[v == "better"], d[v == "no significant difference"], d[v == "worse"]
    text = (
        f"- **{shift}** ({len(d)} cells): {focus} beats {reference} in {len(win)}{_named(win)}; "
        f"ties in {len(tie)}{_named(tie, False)}; loses in {len(lose)}{_named(lose)}"
    )
    if none.any():
        why = ", ".join(f"{r.cell}: {r.verdict}" for r in d[none].itertuples())
        text += f"; no verdict in {int(none.sum())} ({why})"
    others = d[~none & (v != "better")]
    if len(win) and len(others):
        lo, hi = win["ratio"].min(), others["ratio"].max()
        text += (f". Every winning cell has a higher ratio (≥ {lo:.3g}) than every other cell (≤ {hi:.3g})"
                 if lo > hi else f". Wins and other cells overlap in ratio (wins from {lo:.3g}, others up to {hi:.3g})")  # fmt: skip
    ok = d[~none]  # cells with an interval
    (rho_r, n_r), (rho_g, n_g) = (_spearman(ok["mean_diff"], x) for x in (ok["ratio"], ok["cell"].map(gap)))  # fmt: skip
    r, g = (f"{x:+.2f}" if np.isfinite(x) else "n/a" for x in (rho_r, rho_g))
    text += f". Spearman ρ of Δ with the ratio: {r} ({n_r} cells); with the {reference} gap: {g} ({n_g} cells)."  # fmt: skip
    for c in controls:
        if f"{focus} − {c}" not in at:
            continue
        vc = at[f"{focus} − {c}"].set_index("cell")["verdict"]
        own = at.get(f"{c} − {reference}", d.iloc[:0])["verdict"]
        text += (
            f" Against `{c}`: {focus} better in {_count(vc, 'better')}, worse in "
            f"{_count(vc, 'worse')} of {len(vc)} cells; `{c}` itself beats {reference} in "
            f"{_count(own, 'better')} of {len(own)}"
        )
        vw, role = win["cell"].map(vc).astype(str), _ROLE.get(c, f"`{c}`")
        also, same = win[vw == "better"], win[vw.isin(["no significant difference", "worse"])]
        if len(win):
            text += f"; {len(also)} of the {len(win)} wins over {reference} also beat `{c}`{_named(also, False)}"  # fmt: skip
            text += f": the effect is more than {role}" if len(also) == len(win) else ""
            text += f"; in {len(same)}{_named(same, False)} {role} does as well or better" if len(same) else ""  # fmt: skip
        text += "."
    return text


def write_regime_report(
    out_dir: str | os.PathLike, df: pd.DataFrame, config_summary: Mapping[str, Any], *,
    sweep_cell: str | None = None, reference: str = "dense", focus: str = "pun-it",
    controls: Sequence[str] = ("dense-wd", "magnitude"), metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = N_BOOT, seed: int = 0, by_volume: bool = False,
) -> Path:  # fmt: skip
    """Write ``REPORT.md``, ``regime_differences.csv``, ``train_test_gaps.csv``, the figure
    ``regime.png`` and, with a density sweep, ``density_sweep.csv`` and ``density_sweep.png``
    (``density_sweep_<cell>.png`` for several sweep cells) into ``out_dir``; returns the report's
    path. Every number of the report is in these tables, computed from ``df`` alone.

    Args:
        df: the combined per-image table (module docstring).
        config_summary: setup lines ``key → value`` (grid, image size, seeds), as ``- key: value``.
        sweep_cell: the density sweep's cell (``None``: every cell with a ``<focus>@...`` method).
        reference, focus, controls, metrics, n_boot, seed, by_volume: as
            :func:`regime_differences` (``focus``: the method in question).

    Raises:
        ValueError: as :func:`regime_differences`; no cell with both ``focus`` and
            ``reference``; ``sweep_cell`` not a cell or without ``reference``.
    """
    out = Path(out_dir)
    methods = [m for m in (focus, *controls) if m != reference]
    diffs = regime_differences(df, reference, methods, None, metrics, n_boot, seed, focus=focus,
                               controls=controls, by_volume=by_volume)  # fmt: skip
    comp = f"{focus} − {reference}"
    if diffs.empty or comp not in set(diffs["comparison"]) or "psnr" not in set(diffs["metric"]):
        raise ValueError(f"no cell has PSNR results of both {focus!r} and {reference!r}")
    gaps = train_test_gaps(df, reference)
    shifts = list(dict.fromkeys(diffs["shift"]))
    psnr = diffs[diffs["metric"] == "psnr"]
    atomic_write_text(out / "regime_differences.csv", diffs.to_csv(index=False))
    atomic_write_text(out / "train_test_gaps.csv", gaps.to_csv(index=False))
    regime_figure(diffs, gaps, out / "regime.png", comp)
    sweeps = {
        c: density_sweep(df, c, reference, focus, None, metrics, n_boot, seed, by_volume=by_volume)
        for c in ([sweep_cell] if sweep_cell is not None else dict.fromkeys(
            df.loc[df["method"].astype(str).str.startswith(focus + "@"), "cell"]))
    }  # fmt: skip
    sweeps = {c: s for c, s in sweeps.items() if (s["metric"] == "psnr").any()}
    sweep_lines = ["## Density sweep\n"] if sweeps else []
    for cell, sw in sweeps.items():
        png = "density_sweep.png" if len(sweeps) == 1 else f"density_sweep_{cell}.png"
        density_sweep_figure(sw, out / png)
        rows = {
            m: [m, f"{100 * x:.3g} %"] for m, x in zip(sw["method"], sw["density"], strict=True)
        }
        sweep_lines += [
            f"Cell {cell}: {comp} per density (kept fraction of the prunable weights).\n",
            *_table(sw[sw["metric"] == "psnr"], "method", rows, ["method", "density"], shifts),
            f"\n![density sweep {cell}]({png})\n",
        ]  # fmt: skip
    if sweeps:
        atomic_write_text(out / "density_sweep.csv", pd.concat(sweeps.values()).to_csv(index=False))
    grid = {
        g.cell: [g.cell, g.chans, g.train_slices, f"{g.ratio:.3g}", "n/a" if np.isnan(g.gap)
                 else f"{g.gap:+.2f} [{g.gap_seed_min:+.2f}, {g.gap_seed_max:+.2f}]"]
        for g in gaps.itertuples(index=False)
    }  # fmt: skip
    notes = [f"- {g.cell}: {g.note}." for g in gaps.itertuples(index=False) if g.note]
    n_seeds = int(df[_SEED].nunique())
    v = psnr.loc[psnr["comparison"] == comp, "verdict"].astype(str)
    lines = [
        "# Regime map: where does pruning at initialisation help?\n\n## Setup\n",
        *(f"- {k}: {val}" for k, val in config_summary.items()),
        f"- Statistics: paired difference per image under the same training seed within a cell; 95 % CI from a hierarchical bootstrap ({n_seeds} seeds resampled, then {'volumes' if by_volume else 'images'} within each seed; {n_boot} draws, seed {seed}). *better/worse*: the CI excludes 0; *n.s.*: no significant difference; *n/a*: fewer than two resampling units, no verdict.",
        "- Ratio: prunable weights of the cell's dense model / (training slices × pixels per slice), i.e. weights per training pixel (the same order as weights per training slice at one image size).",
        f"- Gap: mean PSNR of `{reference}` on its training slices (`{TRAIN_SHIFT}` shift) − on `in-dist`, seeds pooled; in brackets the per-seed min and max.",
        f"\n## Grid ({comp}, PSNR)\n",
        *_table(psnr[psnr["comparison"] == comp], "cell", grid, ["cell", "chans", "train slices", "ratio", f"{reference} gap (dB) [seed min, max]"], shifts),
        "",
        *(["Gaps not available:\n", *notes, ""] if notes else []),
        "![regime](regime.png)\n",
        f"*Figure:* Δ PSNR ({comp}) against the ratio (log x), one panel per shift, 95 % CI bars; marker and colour: width, text: training slices (sl), hollow: no interval. Top panel (an extra panel on the same x axis): the `{reference}` train–test gap, bars: seed min/max.",
        "",
        *sweep_lines,
        "## Verdict\n",
        f"PSNR, from `regime_differences.csv` and `train_test_gaps.csv`. Over all {len(v)} cell × shift comparisons {focus} is better than {reference} in {_count(v, 'better')}, not significantly different in {_count(v, 'no significant difference')}, worse in {_count(v, 'worse')} and without verdict in {int(v.str.startswith(NOT_ENOUGH_UNITS).sum())}. Spearman correlations over so few cells are descriptive, not a test."
        + (f" With {n_seeds} training seeds the intervals tend to be too narrow; treat verdicts near the CI boundary as weak." if n_seeds < 5 else ""),
        "",
        *(_shift_verdict(psnr, gaps.set_index("cell")["gap"], s, focus, reference, controls) for s in shifts),
        "\nPer-image results: `results.csv`; every comparison, SSIM included: `regime_differences.csv`.",
        "",
    ]  # fmt: skip
    return atomic_write_text(out / "REPORT.md", "\n".join(lines))
