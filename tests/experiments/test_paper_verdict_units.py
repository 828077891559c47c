"""The paper's verdict when a comparison rests on fewer than two resampling units: no interval,
no verdict, and the reason shown (never "better" from a zero-width interval)."""

from __future__ import annotations

import pandas as pd

from fastmri_pun.evaluation.stats import NOT_ENOUGH_UNITS
from fastmri_pun.experiments.paper.verdict import (
    Comparator,
    compare,
    explanation_lines,
    summary_lines,
    verdict_table,
)

AGAINST = [
    Comparator("dense", "reference, early-stopped"),
    Comparator("dense-small", "same size (fewer channels)"),
]


def _pooled(volumes: int) -> pd.DataFrame:
    """PUN-IT 1 dB above dense and 0.5 dB above dense-small on every slice of ``volumes``
    volumes (two slices each), one training seed."""
    rows = []
    for model, offset in (("dense", 0.0), ("dense-small", 0.5), ("pun-it", 1.0)):
        for v in range(volumes):
            for s in range(2):
                rows.append(
                    {
                        "model": model,
                        "shift": "noise",
                        "fname": f"v{v}.h5",
                        "slice_num": s,
                        "psnr": 30.0 + v + s + offset,
                        "train_seed": 0,
                    }
                )
    return pd.DataFrame(rows)


def test_one_volume_gives_no_verdict_and_says_why() -> None:
    diffs = compare(_pooled(1), "pun-it", AGAINST, ["psnr"], 200, 0, True, "train_seed")
    assert diffs["ci_low"].isna().all() and diffs["ci_high"].isna().all()
    assert set(diffs["verdict"]) == {f"{NOT_ENOUGH_UNITS} (1 volume)"}
    table = "\n".join(verdict_table(diffs, AGAINST, ["noise"], "psnr"))
    assert "better" not in table and "[+" not in table
    assert "+1.00 dB [n/a] **n/a: not enough units (1 volume)**" in table
    assert "+0.50 dB [n/a] **n/a: not enough units (1 volume)**" in table
    (line,) = explanation_lines(diffs, "pun-it", AGAINST, ["noise"])
    assert line == (
        "- **noise** (PSNR): pun-it has no verdict against `dense` (not enough units "
        "(1 volume)); no verdict against `dense-small` (not enough units (1 volume))."
    )
    ref, small = summary_lines(diffs, "pun-it", AGAINST, ["noise"])
    assert ref == (
        "- vs `dense` (reference, early-stopped): better on 0; worse on 0; "
        "no significant difference on 0; no verdict (not enough units) on 1 (noise) shifts."
    )
    assert "no verdict (not enough units) on 1 (noise)" in small


def test_a_control_without_verdict_does_not_explain_a_difference() -> None:
    diffs = pd.DataFrame(
        [
            {"reference": "dense", "shift": "noise", "metric": "psnr", "verdict": "better"},
            {
                "reference": "dense-small",
                "shift": "noise",
                "metric": "psnr",
                "verdict": f"{NOT_ENOUGH_UNITS} (1 volume)",
            },
        ]
    )
    (line,) = explanation_lines(diffs, "pun-it", AGAINST, ["noise"])
    assert line == (
        "- **noise** (PSNR): pun-it is better than `dense` and than every control with a "
        "verdict; no verdict against `dense-small` (not enough units (1 volume))."
    )


def test_several_volumes_keep_their_verdicts() -> None:
    diffs = compare(_pooled(3), "pun-it", AGAINST, ["psnr"], 200, 0, True, "train_seed")
    assert list(diffs["verdict"]) == ["better", "better"]
    table = "\n".join(verdict_table(diffs, AGAINST, ["noise"], "psnr"))
    assert "+1.00 dB [+1.00 dB, +1.00 dB] **better**" in table
