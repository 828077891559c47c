"""Smoke tests of the scripts in benchmarks/ at a tiny size.

Assert the measured quantities (agreement of operator variants, gradient differences, memory
ratios), the JSON results and the Markdown the renderer makes of them; never timings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import bench_espirit as be  # noqa: E402
import bench_espirit_speed as bes  # noqa: E402
import bench_gpu as bg  # noqa: E402
import bench_host_syncs as bhs  # noqa: E402
import bench_modl as bm  # noqa: E402
import bench_modl_memory as bmm  # noqa: E402
import bench_physics as bp  # noqa: E402
import bench_prune_cost as bpc  # noqa: E402
import bench_sparse_conv as bsc  # noqa: E402
import bench_structured as bst  # noqa: E402
import common  # noqa: E402
import physics_problem  # noqa: E402
import render  # noqa: E402

SETTINGS = {"size": 32, "coils": 2, "cg_iters": 10, "clock": "wall"}


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
    normal = bp.bench_normal(size=32, coils=2, batch=1, repeats=2, seed=0)
    grads = bp.bench_gradients(physics_problem.make_problem(32, 2, 1, seed=0), iters=[10, 40])
    # 128² x 4 coils: each coil image (512 KiB) is well above the children's 64 KiB mmap threshold
    # and the kernel's per-CPU slack in RSS accounting (~128 KiB per CPU)
    memory = bp.bench_memory(physics_problem.make_problem(128, 4, 1, seed=0), iters=10)
    return {"normal": normal, "grads": grads, "memory": memory}


def test_normal_operator_agrees_with_fastmri_and_times_are_positive(results):
    row = results["normal"]
    assert set(row["wall_ms"]) == set(bp.VARIANTS)
    for ms in (row[k][v] for k in ("wall_ms", "min_ms", "cpu_ms") for v in bp.VARIANTS):
        assert math.isfinite(ms) and ms > 0
    assert row["min_ms"]["ours"] <= row["wall_ms"]["ours"]
    assert set(row["rel_err"]) == {"fastmri"}
    assert row["rel_err"]["fastmri"] < 1e-5


def test_implicit_gradient_matches_unrolled_once_cg_converges(results):
    by_iters = {r["iters"]: r for r in results["grads"]}
    converged = by_iters[40]["implicit_vs_unrolled"]
    assert set(converged) == set(physics_problem.GRAD_NAMES)
    assert max(converged.values()) <= 1e-4
    # truncated CG: the implicit gradient is the better approximation of the exact-solve gradient
    early = by_iters[10]
    for name in ("rhs", "maps"):
        assert early["implicit_vs_exact"][name] < early["unrolled_vs_exact"][name]
    assert max(early["implicit_vs_unrolled"].values()) > 1e-3  # the truncation effect is real


def test_implicit_backward_uses_less_memory(results):
    mem = results["memory"]
    imp, unr = mem["implicit"], mem["unrolled"]
    assert 0 < imp["saved_bytes"] < 0.5 * unr["saved_bytes"]
    assert 0 < imp["peak_rss_bytes"] < 0.7 * unr["peak_rss_bytes"]
    # the unrolled peak holds at least what autograd saved; no CG at all needs the least
    assert unr["peak_rss_bytes"] > unr["saved_bytes"]
    assert mem["none"]["saved_bytes"] < imp["saved_bytes"]


def test_physics_results_file_holds_measurements_and_verdicts(results, tmp_path):
    args = argparse.Namespace(**SETTINGS)
    # gradients at --cg_iters must have been measured
    with pytest.raises(StopIteration):
        bp.gradient_results(results["grads"], cg_iters=7)
    built = bp.build_results(
        args, [results["normal"]], {"learned": results["memory"]}, results["grads"]
    )
    names = [t["name"] for t in built["targets"]]
    assert names == [
        "B=1: fastmri time / ours",
        "B=1: ours / bare-FFT floor",
        "learned maps: peak memory implicit / unrolled",
        "gradients at 10 CG iterations: worst rel. diff. implicit vs unrolled",
    ]
    row = results["normal"]
    speedup = built["targets"][0]
    assert speedup["value"] == pytest.approx(row["wall_ms"]["fastmri"] / row["wall_ms"]["ours"])
    assert speedup["met"] == (speedup["value"] >= bp.TARGET_VS_FASTMRI)
    worst = max(results["grads"][0]["implicit_vs_unrolled"].values())
    assert built["targets"][-1]["value"] == worst and built["targets"][-1]["met"] is False
    speed, memory, ratios, grads = built["tables"]
    assert [r[1] for r in speed["rows"]] == list(bp.VARIANTS.values())
    assert speed["rows"][1][-1] == row["rel_err"]["fastmri"] and speed["rows"][0][-1] is None
    assert len(memory["rows"]) == 3 and len(grads["rows"]) == 2 * 3
    mem = results["memory"]
    assert (
        ratios["rows"][0][1]
        == mem["implicit"]["peak_rss_bytes"] / mem["unrolled"]["peak_rss_bytes"]
    )

    path = common.write_results(
        tmp_path / "physics.json",
        title="Physics",
        command="python benchmarks/bench_physics.py --size 32",
        machine=common.machine_description(),
        settings=SETTINGS,
        notes=bp.NOTES,
        **built,
    )
    text = render.render(tmp_path)
    assert json.loads(path.read_text())["targets"][0]["name"] == "B=1: fastmri time / ours"
    assert (
        f"| 1 | fastmri real view (`fft2c`, `complex_mul`) | {row['wall_ms']['fastmri']:.2f} |"
        in text
    )
    assert text.count("**missed**") + text.count("| met |") == 4


SAMPLE = {
    "title": "Sample",
    "command": "python benchmarks/bench_sample.py --n 2",
    "machine": {"cpu": "test CPU", "cores": "2"},
    "settings": {"n": 2, "batch": [1, 4], "threads": None},
    "notes": ["One note."],
    "targets": [
        common.target("speed-up", 5.584, ">=", 2.5),
        common.target("memory ratio", 0.3949, "<=", 0.2),
        common.target("not measured", None, "<=", 1.0),
    ],
    "tables": [
        common.table(
            "Times",
            ["B", "variant", "ms", "rel. diff."],
            [[1, "ours", 4.7312, None], [4, "a|b", 141.587, 1.4e-07]],
            ["", "", ".2f", ".1e"],
            "rlrr",
        )
    ],
}
EXPECTED = """\
## Sample

`python benchmarks/bench_sample.py --n 2`

Machine:

- cpu: test CPU
- cores: 2

Settings: n 2, batch 1 4, threads —.

- One note.

### Targets

| target | measured | required | verdict |
|---|---:|---|---|
| speed-up | 5.58 | ≥ 2.5 | met |
| memory ratio | 0.395 | ≤ 0.2 | **missed** |
| not measured | — | ≤ 1 | **missed** |

### Times

| B | variant | ms | rel. diff. |
|---:|---|---:|---:|
| 1 | ours | 4.73 | — |
| 4 | a\\|b | 141.59 | 1.4e-07 |"""


def test_render_section_gives_the_expected_markdown():
    assert "\n".join(render.render_section(SAMPLE)) == EXPECTED
    assert [t["met"] for t in SAMPLE["targets"]] == [True, False, False]


def test_render_writes_every_file_in_name_order_and_twice_the_same(tmp_path):
    common.write_results(tmp_path / "b.json", **SAMPLE)
    common.write_results(tmp_path / "a.json", **{**SAMPLE, "title": "First"})
    out = tmp_path / "RESULTS.md"
    render.main(["--results_dir", str(tmp_path), "--output", str(out)])
    first = out.read_text()
    assert first.startswith("# Benchmark results\n")
    assert first.index("## First") < first.index("## Sample") and first.endswith("1.4e-07 |\n")
    assert EXPECTED in first
    render.main(["--results_dir", str(tmp_path), "--output", str(out)])
    assert out.read_text() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_committed_results_md_is_rendered_from_the_json_files():
    assert render.render(BENCH_DIR / "results") == (BENCH_DIR / "RESULTS.md").read_text()


def test_bad_results_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        render.render(tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"title": "x"}))
    with pytest.raises(ValueError, match=r"x.json: missing keys \['command'"):
        render.render(tmp_path)
    with pytest.raises(ValueError, match="NaN|Out of range"):
        common.write_results(tmp_path / "y.json", **{**SAMPLE, "settings": {"v": math.nan}})
    assert not (tmp_path / "y.json").exists()
    with pytest.raises(ValueError, match="3 cells"):
        common.table("t", ["a", "b", "c"], [[1, 2]], ["", "", ""], "lll")
    with pytest.raises(ValueError, match="op must be"):
        common.target("t", 1.0, "<", 2.0)


def test_command_line_lists_the_given_settings():
    settings = {"size": 32, "batch": [1, 4], "threads": None, "clock": "wall"}
    line = common.command_line("benchmarks/bench_physics.py", settings)
    assert line == "python benchmarks/bench_physics.py --size 32 --batch 1 4 --clock wall"
    assert bp.parse_args(line.split()[2:]).batch == [1, 4]


RECORDS = {
    "pun-it": [("search", 12, 0), ("sparse", 48, 12)],
    "pun-at": [("dense", 48, 12), ("search", 12, 0), ("sparse", 48, 12)],
    "imp": [(f"imp-{r}", 48, 12) for r in range(1, 6)] + [("sparse", 48, 12)],
}


def test_prune_cost_totals_and_targets():
    results = {
        method: bpc.totals(
            [
                {"phase": p, "train_samples": t, "val_samples": v, "wall_time_s": 0.1 * t}
                for p, t, v in records
            ]
        )
        for method, records in RECORDS.items()
    }
    assert results["pun-at"] == {
        "phases": "dense + search + sparse",
        "forward": 132,
        "backward": 108,
        "wall_s": pytest.approx(10.8),
    }
    built = bpc.build_results(results)
    by_name = {t["name"]: t for t in built["targets"]}
    assert by_name["PUN-IT / PUN-AT: backward passes"]["value"] == pytest.approx(60 / 108)
    assert by_name["PUN-IT / PUN-AT: backward passes"]["met"] is True
    assert by_name["PUN-IT / IMP: wall time"]["value"] == pytest.approx(60 / 288)
    assert by_name["PUN-IT / IMP: wall time"]["met"] is False
    assert built["tables"][0]["rows"][2][:4] == [
        "imp",
        "imp-1 + imp-2 + imp-3 + imp-4 + imp-5 + sparse",
        360,
        288,
    ]


def test_prune_cost_training_configs_use_the_workflow_names(tmp_path):
    args = bpc.parse_args(["--search_steps", "3", "--sample_rate", "0.5"])
    flat = bpc.train_config("pun-at", tmp_path / "run", args).to_flat()
    assert flat["prune"] == "pun-at" and flat["search_steps"] == 3 and flat["max_epochs"] == 1
    assert flat["sample_rate"] == 0.5 and flat["imp_rounds"] == 5 and flat["seed"] == 0
    assert Path(flat["output_dir"]) == tmp_path / "run"
    defaults = bpc.TrainConfig.from_flat({}).to_flat()
    assert flat["density"] == defaults["density"]  # not repeated by the benchmark


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


def test_espirit_benchmark_quick_run_measures_the_defaults(tmp_path: Path, one_thread) -> None:
    """The quick ESPIRiT benchmark's default-settings row is within 0.5 dB of CG-SENSE with the
    true maps, with no hole inside the object, and both targets say so."""
    path = be.main(["--quick", "--slices", "1", "--output_dir", str(tmp_path)])
    data = json.loads(path.read_text())
    assert data["settings"]["quick"] is True
    targets = {t["name"]: t for t in data["targets"]}
    worst = targets["defaults: worst ΔPSNR over all cases (dB)"]
    holes = targets["defaults: holes inside the object"]
    assert worst["met"] and math.isfinite(worst["value"]) and worst["value"] >= -0.5
    assert holes["met"] and holes["value"] == 0
    (defaults,) = [t for t in data["tables"] if t["caption"].startswith("Defaults")]
    row = dict(zip(defaults["header"], defaults["rows"][0], strict=True))
    assert row["holes"] == 0 and row["crop"] == 0.9 and row["min object eigenvalue"] > 0.9


def test_espirit_speed_quick_run_agrees_with_sigpy_and_certifies_the_power_solver(
    tmp_path: Path, one_thread
) -> None:
    """The quick speed benchmark: our maps equal sigpy's up to a phase (99th percentile ≤ 1e-3),
    the certified power solver misses no support pixel, the precompute computed every slice."""
    path = bes.main(["--quick", "--output_dir", str(tmp_path)])
    data = json.loads(path.read_text())
    assert data["settings"]["quick"] is True
    targets = {t["name"]: t for t in data["targets"]}
    sigpy = targets["ours vs sigpy residual, 99th percentile"]
    assert sigpy["met"] and sigpy["value"] <= 1e-3
    tables = {t["caption"]: t for t in data["tables"]}
    solvers = {
        r[0]: r for r in tables["Per-pixel eigenvectors: eigh vs power iteration (CPU ms)"]["rows"]
    }
    assert solvers["espirit_eigenmaps, power, crop 0"][2] == 0.0
    assert solvers["espirit_eigenmaps, power, crop 0"][3] <= 1.1e-3
    assert solvers["G only: eigh"][2] == 0.0
    (pre,) = tables["Precompute command (precompute_maps), cold cache"]["rows"]
    assert pre[1] == 2 and pre[5] > 0
    (batch,) = tables["Batch: per-slice CPU time"]["rows"]
    assert batch[0] == 2 and batch[1] > 0 and batch[2] > 0


def test_modl_memory_step_and_held_bytes_at_a_tiny_size(one_thread):
    """The benchmark's training step runs and, checkpointed, the forward holds a small part of
    what it holds without (values only; the peak RSS needs the subprocesses of a real run)."""
    args = bmm.parse_args(["--quick", "--unrolls", "5", "--size", "32", "--chans", "4"])
    assert (args.size, args.chans, args.num_layers, args.unrolls) == (64, 16, 3, [5])
    inputs = bmm.modl_inputs(physics_problem.make_problem(32, 2, 1, seed=0))
    assert inputs["masked_kspace"].shape == (1, 2, 32, 32, 2)
    assert inputs["mask"].shape == (1, 1, 1, 32, 1) and inputs["sens_maps"].is_complex()
    held = {}
    for ckpt in (False, True):
        model = bmm.build(args, 5, ckpt)
        bmm.make_step(model, inputs)()
        assert all(q.grad is not None for q in model.parameters())
        held[ckpt] = bmm.held_bytes(model, inputs)
    assert 0 < held[True] < 0.1 * held[False]


def test_modl_memory_results_targets_and_tables():
    args = bmm.parse_args(["--unrolls", "10", "1", "5"])
    assert args.unrolls == [1, 5, 10] and args.clock == "cpu"
    mib = 2**20
    memory = {
        (k, ckpt): {"peak_rss_bytes": (20 + (0 if ckpt else 30 * (k - 1))) * mib,
                    "held_bytes": (1 if ckpt else 30) * k * mib}
        for k, ckpt in bmm.configurations(args.unrolls)
    }  # fmt: skip
    times = {
        (k, ckpt): {"wall_ms": 110.0 * k, "cpu_ms": (130.0 if ckpt else 100.0) * k}
        for k, ckpt in bmm.configurations(args.unrolls)
    }
    built = bmm.build_results(args, memory, times)
    flat, overhead = built["targets"]
    assert flat["name"] == "checkpointed: peak memory at K=10 / K=1"
    assert flat["value"] == 1.0 and flat["met"]
    assert overhead["value"] == pytest.approx(1.3) and overhead["met"]
    rows, ratios = built["tables"]
    assert [r[:2] for r in rows["rows"]] == [[1, "off"], [1, "on"], [5, "off"], [5, "on"],
                                             [10, "off"], [10, "on"]]  # fmt: skip
    assert rows["rows"][4][2] == 20 + 30 * 9 and rows["rows"][5][3] == 10
    assert ratios["rows"][2] == [10, 20 / 290, 1.0, 290 / 20, pytest.approx(1.3)]
    text = "\n".join(render.render_section({**SAMPLE, **built, "title": "MoDL memory"}))
    assert "| checkpointed: peak memory at K=10 / K=1 | 1 | ≤ 1.5 | met |" in text


def test_modl_benchmark_variants_agree_and_results_hold_the_ratios(one_thread, monkeypatch):
    args = bm.parse_args(["--size", "16", "--coils", "2", "--chans", "4", "--layers", "3"])
    args.unrolls, args.cg_iters = 1, 3
    p = physics_problem.make_problem(16, 2, 1, seed=0)
    ks, mask, tgt = torch.view_as_real(p.y).contiguous(), p.mask[..., None], p.target.abs()
    torch.manual_seed(0)
    state = bm.ours("ours", args, None).state_dict()
    m64 = bm.ours("ours", args, state).double()
    exact = bm.compare(
        m64, None, lambda: m64(ks.double(), mask, sens_maps=p.maps.to(torch.complex128)),
        tgt.double(),
    )  # fmt: skip
    for kind in ("ours", "view", "channels_last", "winograd"):
        model = bm.ours(kind, args, state)
        res = bm.compare(model, exact, lambda m=model: m(ks, mask, sens_maps=p.maps), tgt)
        assert res["out_rel"] < 1e-5 and res["grad_rel"] < 1e-3, kind

    def timing(ms):
        return common.Timing(ms, ms, ms, ms, 3)

    train = {
        k: timing(ms)
        for k, ms in zip(bm.TRAIN_VARIANTS, [2000, 1600, 1000, 1700, 0, 1500, 900], strict=True)
    }
    ev = {k: timing(ms) for k, ms in zip(bm.EVAL_VARIANTS, [300, 320, 290, 230, 220], strict=True)}
    row = {"size": 16, "train": train, "eval": ev, "checks": {}, "eval_rel": {},
           "skipped": {"bf16": "not run"}}  # fmt: skip
    built = bm.build_results([row], "wall")
    (tgt_entry,) = built["targets"]
    assert tgt_entry["value"] == pytest.approx(900 / 2000) and tgt_entry["met"] is True
    step_table, eval_table = built["tables"]
    by_label = {r[0]: r for r in step_table["rows"]}
    assert by_label[bm.TRAIN_VARIANTS["ours"]][4] == pytest.approx(0.5)  # × deepinv
    assert by_label[bm.TRAIN_VARIANTS["winograd"]][5] == pytest.approx(0.9)  # × ours
    assert any(r[0].endswith("(not run)") and r[1] is None for r in step_table["rows"])
    assert eval_table["rows"][-1][3] == pytest.approx(220 / 320)

    monkeypatch.setitem(sys.modules, "deepinv", None)  # import fails as when not installed
    with pytest.raises(SystemExit, match="pip install deepinv"):
        bm.main(["--quick"])


def test_sparse_conv_benchmark_variants_equal_dense_and_results_hold_the_ratios(
    tmp_path: Path, one_thread
) -> None:
    """Every sparse kernel of the quick run equals the dense conv (the script fails otherwise);
    the results hold one ratio per variant, the targets at 3 % and render."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 4, 10, 12, generator=gen), torch.randn(6, 4, 3, 3, generator=gen)
    w = w * bsc.random_mask(w.shape, 0.1, gen)
    assert int(torch.count_nonzero(w)) == round(0.1 * w.numel())
    fns = bsc.kernels(x, w, torch.zeros(6))
    ref = fns.pop("dense")()
    fns.pop("unfold")
    assert {"csr_unfold", "scipy_unfold", "csr_shift", "compact_shift", "shift_acc"} <= set(fns)
    for f in fns.values():
        assert bsc._rel(f(), ref) <= bsc.MAX_REL_ERR
    path = bsc.main(["--quick", "--output_dir", str(tmp_path)])
    data = json.loads(path.read_text())
    assert data["settings"]["quick"] is True and data["settings"]["device"] == "cpu"
    layer_table, model_table = data["tables"]
    assert len(layer_table["rows"]) == 3 * 2  # three layers, two densities
    assert all(row[-1] <= bsc.MAX_REL_ERR for row in layer_table["rows"])
    assert all(r > 0 for row in layer_table["rows"] for r in row[3:-1] if r is not None)
    assert {row[0] for row in model_table["rows"]} == {"denoiser", "modl"}
    assert all(row[-1] is None or row[-1] <= 1e-4 for row in model_table["rows"])
    names = [t["name"] for t in data["targets"]]
    assert "32²: 16→16 conv at 3 %, shift-accumulate / dense" in names
    assert "32²: denoiser at 3 %, sparse / dense" in names
    assert "Unstructured sparsity" in "\n".join(render.render_section(data))


def test_structured_benchmark_quick_run_checks_slim_against_masked(tmp_path: Path, one_thread):
    path = bst.main(["--quick", "--output_dir", str(tmp_path), "--device", "cpu"])
    data = json.loads(path.read_text())
    assert data["command"] == "python benchmarks/bench_structured.py --device cpu --quick"
    (tab,) = data["tables"]
    rows = {r[0]: r for r in tab["rows"]}
    assert list(rows) == [
        "dense", "unstructured", "slim 0.5", "slim 0.25", "slim 0.125", "slim 0.03 weights"
    ]  # fmt: skip
    # 3-layer 16-channel denoiser: 2·16·9 + 16·16·9 + 16·2·9 = 2880 weights; per-layer fractions;
    # 3 % = 86 weights: 2 channels per layer give 36 + 36 + 36 = 108 (1: 45, 3: 189)
    assert [rows[k][1] for k in rows] == [2880, 86, 2 * 8 * 9 * 2 + 8 * 8 * 9, 288, 108, 108]
    assert all(rows[k][6] < 1e-5 for k in rows if k.startswith("slim"))
    assert [t["name"] for t in data["targets"]] == [
        "32²: dense / slim time at 0.25 of the channels"
    ]
    assert "dense against channel-slimmed" in "\n".join(render.render_section(data))


def test_bart_region_reads_the_calibration_block_bart_reports(monkeypatch, tmp_path):
    """BART picks its calibration region itself; the benchmark compares with ours on the block
    named in ``ecalib -d5``'s output (x = readout = our rows), and fails loudly without it."""
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        text = "Calibration region...  (size: 24x24x1, pos: 149x148x0)\nDone.\n"
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr=text)

    monkeypatch.setattr(bes.subprocess, "run", fake_run)
    assert bes.bart_region(tmp_path, ["-r", "24", "-O"]) == (149, 148)
    assert seen["cmd"][:4] == ["bart", "ecalib", "-d5", "-m1"] and "-O" in seen["cmd"]
    monkeypatch.setattr(
        bes.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "", "")
    )
    with pytest.raises(RuntimeError, match="did not report its calibration region"):
        bes.bart_region(tmp_path, [])


# --------------------------------------------------------------------------- GPU scripts

REPO = BENCH_DIR.parent
NO_CUDA_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _run_without_cuda(cmd: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``cmd`` from an empty folder with no visible CUDA device and ``TMPDIR`` in ``tmp_path``;
    returns the process and the modification times of ``benchmarks/results`` before the run."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in (BENCH_DIR / "results").iterdir()}
    env = {**os.environ, **NO_CUDA_ENV, "TMPDIR": str(tmp)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return proc, before


def _assert_nothing_written(tmp_path: Path, before: dict) -> None:
    assert list((tmp_path / "cwd").iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []
    after = {p.name: p.stat().st_mtime_ns for p in (BENCH_DIR / "results").iterdir()}
    assert after == before


def test_gpu_check_without_cuda_prints_one_line_and_writes_nothing(tmp_path):
    proc, before = _run_without_cuda(["bash", str(BENCH_DIR / "gpu_check.sh")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "no CUDA device: skipping the GPU check\n" and proc.stderr == ""
    _assert_nothing_written(tmp_path, before)


def test_bench_gpu_without_cuda_prints_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "cwd" / "out"
    cmd = [sys.executable, str(BENCH_DIR / "bench_gpu.py"), "--output_dir", str(out)]
    proc, before = _run_without_cuda(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == bg.NO_CUDA + "\n"
    _assert_nothing_written(tmp_path, before)


def test_bench_gpu_measurements_on_the_cpu_at_the_quick_size(one_thread):
    """The GPU benchmark's functions on the CPU: TF32 leaves CPU numbers unchanged, float32 is
    within rounding of float64, exported sparse and slim models compute their masked model's
    function, the CPU and "device" ESPIRiT maps agree, and the results hold the targets."""
    args = bg.parse_args(["--quick"])
    assert (args.size, args.chans, args.layers, args.unrolls) == (96, 8, 3, 2)
    cpu = torch.device("cpu")
    step = bg.bench_modl_step(args, cpu)
    assert step["diffs"]["tf32"] == (0.0, 0.0)  # TF32 is a CUDA setting
    assert step["diffs"]["float32"][0] < 1e-5 and step["diffs"]["float32"][1] < 1e-3
    assert set(step["times"]) == set(bg.VARIANTS) - set(step["skipped"])
    assert all(m is None for m in step["memory"].values())  # peak memory on CUDA only
    built = bg.modl_results(step, args)
    assert [t["name"] for t in built["targets"]] == [
        "tf32: output rel. diff. from float32",
        "amp_bf16: output rel. diff. from float32",
    ]
    assert built["tables"][0]["rows"][0][3] == 1.0  # float32's speed-up over itself
    assert built["targets"][0]["met"] is True

    esp = bg.bench_espirit(args, cpu)
    assert esp["res_max"] < 1e-6 and esp["cpu_ms"] > 0 and esp["batch_ms"] > 0
    targets = bg.espirit_results(esp, args)["targets"]
    assert targets[1]["met"] is True

    inf = bg.bench_inference(args, cpu)
    # 3-layer 8-channel denoiser: 2·8·9 + 8·8·9 + 8·2·9 = 864 weights; 3 % = 26; half the
    # channels: 2·4·9 + 4·4·9 + 4·2·9 = 288; a quarter: 2·2·9 + 2·2·9 + 2·2·9 = 108
    assert inf["weights"] == {"dense": 864, "sparse file": 26, "slim 0.5": 288, "slim 0.25": 108}
    assert inf["rel"]["sparse file"] == 0.0
    assert inf["rel"]["slim 0.5"] < 1e-5 and inf["rel"]["slim 0.25"] < 1e-5
    built = bg.inference_results(inf, args)
    assert built["targets"][0]["name"] == "dense / slim 0.25 time"
    assert [r[0] for r in built["tables"][0]["rows"]] == list(inf["weights"])
    assert render.render_section({**SAMPLE, **built, "title": bg.TITLES["inference"]})


def test_gpu_description_names_the_device_or_says_none():
    desc = bg.gpu_description(torch.device("cpu"))
    assert desc["gpu"] == desc["gpu capability"] == desc["cudnn"] == "n/a"
    assert desc["cuda (torch build)"] == str(torch.version.cuda) and "cpu" in desc


def test_host_syncs_at_a_tiny_size_counts_every_step_and_its_sites(tmp_path):
    tiny = ["--unrolls", "2", "--cg-iters", "2", "--size", "32", "--chans", "8", "--layers", "3",
            "--coils", "4", "--steps", "1", "--repeats", "1", "--warmup", "0"]  # fmt: skip
    cmd = [sys.executable, str(BENCH_DIR / "bench_host_syncs.py"), *tiny, "--output_dir",
           str(tmp_path)]  # fmt: skip
    env = {**os.environ, **NO_CUDA_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / bhs.RESULTS_FILE).read_text())
    assert set(data) == {*render.KEYS, "sync_sites"}
    assert data["settings"]["unrolls"] == 2 and data["settings"]["cg_iters"] == 2
    counts, sites = data["tables"]
    keys = [f"{kind} {maps}" for kind in bhs.STEPS for maps in bhs.MAPS]
    assert list(data["sync_sites"]) == keys and len(counts["rows"]) == len(keys)
    for key, row in zip(keys, counts["rows"], strict=True):
        per_step, in_hooks, first, wall, cpu = row[2:]
        assert per_step > 0 and per_step == int(per_step), (key, row)
        assert sum(data["sync_sites"][key].values()) == pytest.approx(per_step)
        assert all(":" in site for site in data["sync_sites"][key])
        assert first >= per_step and wall > 0 and cpu > 0
        assert (in_hooks is None) == (not key.startswith(("lightning", "pun_lightning")))
        assert in_hooks is None or in_hooks <= per_step
    assert len(sites["rows"]) == sum(len(s) for s in data["sync_sites"].values())
    assert [t["name"] for t in data["targets"]] == [
        f"{maps} maps: host syncs per Lightning MoDL training step" for maps in bhs.MAPS
    ]
    assert "## Host synchronisations" in "\n".join(render.render_section(data))


def test_host_sync_count_does_not_depend_on_the_image_size(one_thread):
    small = bhs.parse_args(["--unrolls", "2", "--cg_iters", "2", "--chans", "4", "--layers", "2",
                            "--coils", "2", "--size", "32"])  # fmt: skip
    large = bhs.parse_args(["--unrolls", "2", "--cg_iters", "2", "--chans", "4", "--layers", "2",
                            "--coils", "2", "--size", "48"])  # fmt: skip
    for maps in bhs.MAPS:
        a, b = bhs.count("plain", small, maps), bhs.count("plain", large, maps)
        assert a["per_step"] == b["per_step"] > 0 and a["sites"] == b["sites"], maps
    with pytest.raises(SystemExit):
        bhs.parse_args(["--size", "40"])  # the learned maps' U-Net needs a multiple of 16
