"""The verdict of the paper's comparison: a pruned method against the dense reference *and*
against each control, with seed-aware intervals, and which control explains a difference.

A control explains PUN-IT's difference to dense on a shift when PUN-IT is better than dense
there but not better than that control: the control reaches the same result without sparsity
at initialisation (more optimisation for the equal-compute control, fewer weights for the
same-size control, regularisation for the weight-decay control).

A comparison resting on fewer than two resampling units (one volume of one seed) has no interval
and no verdict (:data:`~fastmri_pun.evaluation.stats.NOT_ENOUGH_UNITS`): its cell reads
``[n/a] **n/a: not enough units (1 volume)**``, the lines say "no verdict against ..." with the
reason, and such a control never explains a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ...evaluation.stats import NOT_ENOUGH_UNITS, paired_differences
from ...utils.markdown import markdown_table
from .config import ExperimentConfig

__all__ = [
    "Comparator",
    "comparators",
    "compare",
    "explanation_lines",
    "summary_lines",
    "verdict_table",
]

_FORMATS = {"psnr": "{:+.2f} dB", "ssim": "{:+.4f}"}
_SHORT = {"better": "better", "worse": "worse", "no significant difference": "n.s."}
_PHRASE = {
    "better": "better than",
    "worse": "worse than",
    "no significant difference": "no significant difference to",
}
#: the pruning method compared with unstructured PUN-IT besides the dense controls
STRUCTURED = "pun-it-channels"
#: the summary's label of the comparisons without a verdict
_NO_VERDICT = f"no verdict ({NOT_ENOUGH_UNITS})"


def _decided(v: str | None) -> bool:
    """Whether ``v`` is a verdict (not ``None``, not "not enough units (...)")."""
    return v is not None and not v.startswith(NOT_ENOUGH_UNITS)


def _no_verdict(name: str, v: str) -> str:
    """``no verdict against `name` (not enough units (1 volume))``."""
    return f"no verdict against `{name}` ({v})"


@dataclass(frozen=True)
class Comparator:
    """A method a pruned method is compared with.

    Attributes:
        name: the method's name in the experiment.
        role: what it controls for (``"reference, early-stopped"``, ``"equal compute"``, ...).
        control: a dense control that can explain a difference to the reference (module
            docstring); ``False`` for another pruned method compared alongside (structured
            PUN against unstructured PUN-IT at the same weight count).
    """

    name: str
    role: str
    control: bool = True


def comparators(exp: ExperimentConfig, method: str, present: Sequence[str]) -> list[Comparator]:
    """The reference and the controls that apply to ``method`` (those among ``present``): dense
    methods with ``match_compute`` of ``method``, ``match_size`` or ``select_weight_decay``; for
    structured PUN (``prune: pun-it-channels``) also the unstructured PUN-IT methods (every
    pruned method of an experiment keeps the same fraction of the weights)."""
    out = [Comparator(str(exp.reference), "reference, early-stopped")]
    structured = exp.methods.get(method, {}).get("prune") == STRUCTURED
    for name in present:
        if name not in exp.methods:  # zero-filled
            continue
        if structured and exp.methods[name].get("prune") == "pun-it":
            out.append(Comparator(name, "unstructured PUN-IT, same weight count", control=False))
            continue
        c = exp.controls(name)
        if name == exp.reference or exp.methods[name].get("prune") != "none":
            continue
        if c.get("match_compute") == method:
            out.append(Comparator(name, f"equal compute (passes of {method})"))
        elif c.get("match_size"):
            out.append(Comparator(name, "same size (fewer channels)"))
        elif c.get("select_weight_decay"):
            out.append(Comparator(name, "weight decay (chosen on validation)"))
    return out


def compare(
    pooled: pd.DataFrame,
    method: str,
    against: Sequence[Comparator],
    metrics: list[str],
    n_boot: int,
    seed: int,
    by_volume: bool,
    seed_column: str,
) -> pd.DataFrame:
    """Paired differences ``method − comparator`` for every comparator (rows of
    :func:`~fastmri_pun.evaluation.stats.paired_differences` with the seed-aware hierarchical
    bootstrap; column ``reference`` names the comparator)."""
    frames = []
    for comp in against:
        sub = pooled[pooled["model"].isin([method, comp.name])]
        if sub.empty or comp.name not in set(sub["model"]) or method not in set(sub["model"]):
            continue
        d = paired_differences(
            sub, comp.name, metrics, n_boot, seed, by_volume, seed_column=seed_column
        )
        frames.append(d[d["model"] == method])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def verdict_table(
    diffs: pd.DataFrame, against: Sequence[Comparator], shifts: Sequence[str], metric: str
) -> list[str]:
    """Markdown table: one row per shift, one column per comparator, each cell the mean
    difference, its 95 % CI and the verdict (``[n/a] **n/a: <reason>**`` without an interval)."""
    fmt = _FORMATS.get(metric, "{:+.4f}")
    rows = []
    for shift in shifts:
        cells = []
        for comp in against:
            r = _row(diffs, comp.name, shift, metric)
            if r is None:
                cells.append("–")
                continue
            if not _decided(str(r["verdict"])):
                cells.append(f"{fmt.format(r['mean_diff'])} [n/a] **n/a: {r['verdict']}**")
                continue
            cells.append(
                f"{fmt.format(r['mean_diff'])} [{fmt.format(r['ci_low'])}, "
                f"{fmt.format(r['ci_high'])}] **{_SHORT[r['verdict']]}**"
            )
        rows.append([shift, *cells])
    header = ["shift", *(f"vs `{c.name}` ({c.role})" for c in against)]
    return markdown_table(header, rows)


def _row(diffs: pd.DataFrame, comp: str, shift: str, metric: str) -> pd.Series | None:
    """The row of ``diffs`` comparing with ``comp`` on ``shift`` and ``metric`` (``None``: none)."""
    r = diffs[
        (diffs["reference"] == comp) & (diffs["shift"] == shift) & (diffs["metric"] == metric)
    ]
    return None if r.empty else r.iloc[0]


def _verdict(diffs: pd.DataFrame, comp: str, shift: str, metric: str) -> str | None:
    r = _row(diffs, comp, shift, metric)
    return None if r is None else str(r["verdict"])


def explanation_lines(
    diffs: pd.DataFrame,
    method: str,
    against: Sequence[Comparator],
    shifts: Sequence[str],
    metric: str = "psnr",
) -> list[str]:
    """One bullet per shift: ``method`` against the reference, and what the controls say
    (module docstring)."""
    ref, controls = against[0], [c for c in against[1:] if c.control]
    others = [c for c in against[1:] if not c.control]
    lines = []
    for shift in shifts:
        v_ref = _verdict(diffs, ref.name, shift, metric)
        if v_ref is None:
            continue
        per = {c.name: _verdict(diffs, c.name, shift, metric) for c in controls}
        undecided = [n for n, v in per.items() if v is not None and not _decided(v)]
        if v_ref == "better":
            explains = [c for c in controls if _decided(per[c.name]) and per[c.name] != "better"]
            if explains:
                names = ", ".join(f"`{c.name}` ({c.role})" for c in explains)
                text = (
                    f"is better than `{ref.name}`, but not than {names}: that control reaches "
                    "the same without pruning at initialisation, so it explains the difference"
                )
            else:
                every = "every control with a verdict" if undecided else "every control"
                text = f"is better than `{ref.name}` and than {every}"
        else:
            if _decided(v_ref):
                word = "worse than" if v_ref == "worse" else "no significant difference to"
                text = f"is {word} `{ref.name}`"
            else:
                text = f"has {_no_verdict(ref.name, v_ref)}"
            beaten = [c.name for c in controls if per[c.name] == "better"]
            lost = [c.name for c in controls if per[c.name] == "worse"]
            if beaten:
                text += "; better than " + ", ".join(f"`{n}`" for n in beaten)
            if lost:
                text += "; worse than " + ", ".join(f"`{n}`" for n in lost)
        text += "".join(f"; {_no_verdict(n, per[n])}" for n in undecided)
        for c in others:
            v = _verdict(diffs, c.name, shift, metric)
            if v is not None and _decided(v):
                text += f"; {_PHRASE[v]} `{c.name}` ({c.role})"
            elif v is not None:
                text += f"; {_no_verdict(c.name, v)}"
        lines.append(f"- **{shift}** ({metric.upper()}): {method} {text}.")
    return lines


def summary_lines(
    diffs: pd.DataFrame,
    method: str,
    against: Sequence[Comparator],
    shifts: Sequence[str],
    metric: str = "psnr",
) -> list[str]:
    """One bullet per comparator: on which shifts ``method`` is better, worse, or not
    significantly different (the answer in one line per comparator), and, when there are such
    shifts, on which it has no verdict (not enough units)."""
    lines = []
    for comp in against:
        groups: dict[str, list[str]] = {"better": [], "worse": [], "no significant difference": []}
        for shift in shifts:
            v = _verdict(diffs, comp.name, shift, metric)
            if v is not None:
                groups.setdefault(v if _decided(v) else _NO_VERDICT, []).append(shift)
        parts = [
            f"{label} on {len(names)}" + (f" ({', '.join(names)})" if names else "")
            for label, names in groups.items()
        ]
        lines.append(f"- vs `{comp.name}` ({comp.role}): " + "; ".join(parts) + " shifts.")
    return lines
