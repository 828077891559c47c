"""Smoke test of benchmarks/bench_physics.py and benchmarks/common.py at a tiny size.

Asserts that the measured quantities are sane (agreement of operator variants, gradient
differences, memory ratios, well-formed RESULTS.md sections); never asserts timings.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import bench_physics as bp  # noqa: E402
import common  # noqa: E402


@pytest.fixture(scope="module")
def results() -> dict:
    # one thread: on a loaded 2-core machine two OpenMP threads spin-wait for each other and tiny
    # problems get many times slower; nothing here asserts timings
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure()
    finally:
        torch.set_num_threads(threads)


def _measure() -> dict:
    normal = bp.bench_normal(size=32, coils=2, batch=1, repeats=2, seed=0, cg_iters=3)
    grads = bp.bench_gradients(bp.make_problem(32, 2, 1, seed=0), iters=[10, 40])
    # 128² x 4 coils: each coil image (512 KiB) is well above the children's 64 KiB mmap threshold
    # and the kernel's per-CPU slack in RSS accounting (~128 KiB per CPU)
    memory = bp.bench_memory(
        bp.make_problem(128, 4, 1, seed=0), iters=10, modes=("implicit", "unrolled")
    )
    return {"normal": normal, "grads": grads, "memory": memory}


def test_normal_operator_variants_agree_and_times_are_positive(results):
    row = results["normal"]
    assert set(row["ms"]) == set(bp.NORMAL_VARIANTS)
    times = [row[k][v] for k in ("ms", "wall_ms", "min_ms", "cpu_ms") for v in bp.NORMAL_VARIANTS]
    for ms in [*times, *row["cg_ms"].values()]:
        assert math.isfinite(ms) and ms > 0
    for key, err in row["rel_err"].items():
        assert err < 1e-5, key


def test_implicit_gradient_matches_unrolled_once_cg_converges(results):
    by_iters = {r["iters"]: r for r in results["grads"]}
    converged = by_iters[40]["implicit_vs_unrolled"]
    assert set(converged) == set(bp.GRAD_NAMES)
    assert max(converged.values()) <= 1e-4
    # truncated CG: the implicit gradient is the better approximation of the exact-solve gradient
    early = by_iters[10]
    for name in ("rhs", "maps"):
        assert early["implicit_vs_exact"][name] < early["unrolled_vs_exact"][name]
    assert max(early["implicit_vs_unrolled"].values()) > 1e-3  # the truncation effect is real


def test_implicit_backward_uses_less_memory(results):
    imp, unr = results["memory"]["implicit"], results["memory"]["unrolled"]
    assert 0 < imp["saved_bytes"] < 0.5 * unr["saved_bytes"]
    assert 0 < imp["peak_rss_bytes"] < 0.7 * unr["peak_rss_bytes"]
    # the unrolled peak holds at least what autograd saved
    assert unr["peak_rss_bytes"] > unr["saved_bytes"]


def test_render_and_write_section(results, tmp_path):
    args = argparse.Namespace(
        size=32,
        coils=2,
        batch=[1],
        repeats=2,
        cg_iters=10,
        seed=0,
        lam=0.05,
        note="smoke",
        clock="wall",
        threads=None,
    )
    body = bp.render(
        args,
        common.machine_description(),
        [results["normal"]],
        {"learned": results["memory"]},
        results["grads"],
        "0.00",
    )
    assert body.count("**met**") + body.count("**MISSED**") == 4  # 2 speed, 1 memory, 1 gradient
    out = tmp_path / "RESULTS.md"
    common.write_section("Other", "kept as is\n\n### sub", out)
    common.write_section("Physics", "old", out)
    common.write_section("Physics", body, out)
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("## Physics") == 1 and "old" not in text.split("## Physics")[1][:10]
    assert "kept as is\n\n### sub" in text and text.index("## Other") < text.index("## Physics")
    assert "ours: `SenseOp.normal`" in text
    assert not list(tmp_path.glob(".RESULTS.md.*"))  # no temp file left behind
    assert out.stat().st_mode & 0o777 == 0o666 & ~common._umask()  # not mkstemp's 0600


def test_write_section_rejects_bad_input(tmp_path):
    out = tmp_path / "RESULTS.md"
    with pytest.raises(ValueError, match="level-2"):
        common.write_section("Physics", "text\n## Sneaky\nmore", out)
    with pytest.raises(ValueError, match="one non-empty line"):
        common.write_section("a\nb", "text", out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        common.write_section("Physics", "text", tmp_path / "missing" / "RESULTS.md")
    # a '## ' line inside a code fence is not a heading
    common.write_section("Physics", "```\n## not a heading\n```", out)
    assert common._split_sections(out.read_text())[1][0][0] == "Physics"
    assert len(common._split_sections(out.read_text())[1]) == 1


def test_timing_and_machine_helpers():
    calls = []
    t = common.time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls.count("a") == calls.count("b") == 4
    assert all(v.repeats == 3 and 0 <= v.min_ms <= v.median_ms <= v.max_ms for v in t.values())
    assert all(v.cpu_median_ms >= 0 for v in t.values())
    with pytest.raises(ValueError, match="repeats"):
        common.time_interleaved({"a": lambda: None}, repeats=0)
    desc = common.machine_description()
    assert {"cpu", "cores", "torch", "date"} <= set(desc)
    assert "threads" in desc["torch"]
