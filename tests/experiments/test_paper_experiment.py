"""Tiny end-to-end run of the paper experiment: two methods, two shifts, a few steps, resumable;
the experiment configuration is checked before any work."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_checkpoints import TINY_EXPERIMENT_TRAIN

from fastmri_pun.experiments.paper import cli as paper_cli
from fastmri_pun.experiments.paper import run as paper
from fastmri_pun.experiments.paper import scheduler as paper_scheduler
from fastmri_pun.experiments.paper.config import ExperimentConfig, packaged_config


def _config(tmp_path, demo_root, **over):
    cfg = {
        "budget": "tiny-test",
        "data_path": str(demo_root),
        "seeds": [0],
        "density": 0.3,
        "reference": "dense",
        "methods": {"dense": {"prune": "none"}, "pun-it": {"prune": "pun-it"}},
        "train": {**TINY_EXPERIMENT_TRAIN, "num_log_images": 1},
        "evaluate": {"shifts": ["in-dist", "lesions"], "n_boot": 500, "zero_filled": False},
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(tmp_path, demo_root, out):
    argv = ["--experiment", str(_config(tmp_path, demo_root)), "--output_dir", str(out),
            "--enable_progress_bar", "false"]  # fmt: skip
    return paper_cli.main(argv)


def test_paper_end_to_end_and_resume(tmp_path, demo_root, monkeypatch, capsys):
    out = tmp_path / "exp"
    assert _run(tmp_path, demo_root, out) == 0
    report = (out / "REPORT.md").read_text()
    # the verdict table: one row per shift with a verdict against dense
    for shift in ("in-dist", "lesions"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {shift} | "))
        verdicts = [v for v in ("better", "worse", "n.s.") if v in row]
        assert verdicts, row
    assert "## Density per layer" in report and "**29.98 %** (259)" in report  # 0.3 * 864
    assert "| pun-it | search (" in report and "sparse (" in report  # compute phases
    df = pd.read_csv(out / "eval" / "results.csv")
    assert df.groupby(["model", "shift"]).size().to_dict() == {
        (m, s): 4 for m in ("dense", "pun-it") for s in ("in-dist", "lesions")
    }
    diffs = pd.read_csv(out / "differences_pooled.csv")
    assert set(zip(diffs["shift"], diffs["metric"], strict=True)) >= {
        ("in-dist", "psnr"),
        ("lesions", "psnr"),
        ("lesions", "roi_psnr"),
    }
    done = json.loads((out / "runs" / "pun-it" / "DONE.json").read_text())
    assert done["density"]["density"] == pytest.approx(0.3, abs=0.01)
    assert [p["phase"] for p in done["compute"]] == ["search", "sparse"]
    assert done["config"]["prune"] == "pun-it" and done["config"]["density"] == 0.3
    dense = json.loads((out / "runs" / "dense" / "DONE.json").read_text())
    assert dense["checkpoint"] == done["checkpoint"].replace("pun-it", "dense")

    # rerun: finished runs and evaluations are skipped; an unfinished run folder is restarted
    def no_training(cfg):
        raise AssertionError(f"retrained {cfg.to_flat()['output_dir']}")

    monkeypatch.setattr(paper_scheduler, "fit", no_training)
    before = (out / "eval" / "results.csv").read_bytes()
    assert _run(tmp_path, demo_root, out) == 0
    assert (out / "eval" / "results.csv").read_bytes() == before
    (out / "runs" / "pun-it" / "DONE.json").unlink()
    capsys.readouterr()
    assert _run(tmp_path, demo_root, out) == 1  # a failed run: one line naming its log
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "run pun-it: job paper-pun-it (local-" in err and "AssertionError: retrained" in err
    log = Path(err.split("; log: ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "no_training" in log.read_text()
    assert (out / "runs" / "dense" / "DONE.json").is_file()
    assert not (out / "runs" / "pun-it").exists()  # the unfinished folder was cleared


def test_config_errors(tmp_path, demo_root, capsys):
    bad = _config(tmp_path, demo_root, epochs=3)
    assert paper_cli.main(["--experiment", str(bad), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s) 'epochs'" in err
    with pytest.raises(ValueError, match="set by the experiment driver"):
        ExperimentConfig.from_yaml(_config(tmp_path, demo_root, train={"seed": 3}))
    with pytest.raises(ValueError, match="reference 'x'"):
        ExperimentConfig.from_yaml(_config(tmp_path, demo_root, reference="x"))
    with pytest.raises(ValueError, match="max_epoch"):  # a typo in a training key
        ExperimentConfig.from_yaml(_config(tmp_path, demo_root, train={"max_epoch": 3}))
    with pytest.raises(ValueError, match="evaluate: unknown key"):
        ExperimentConfig.from_yaml(_config(tmp_path, demo_root, evaluate={"nboot": 3}))
    cfg = ExperimentConfig.from_yaml(_config(tmp_path, demo_root))
    with pytest.raises(ValueError, match="unknown method"):
        paper.run_paper(cfg, tmp_path / "o", methods=["dense", "imp"])
    assert not (tmp_path / "o" / "runs").exists()  # refused before any work


@pytest.mark.parametrize("budget", ["small", "full"])
def test_shipped_experiment_configs_are_valid(budget):
    shipped = ExperimentConfig.from_yaml(packaged_config(f"paper_{budget}"))
    assert {"dense", "pun-it", "pun-at", "magnitude", "random"} <= set(shipped.methods)
    assert shipped.reference == "dense" and shipped.budget == budget
    assert len(shipped.seeds) >= 3
    assert shipped.train["early_stopping_patience"] >= 5
    controls = {m: shipped.controls(m) for m in shipped.methods}
    assert {"match_compute": "pun-it"} in controls.values()
    assert {"match_compute": "pun-at"} in controls.values()
    assert {"match_size": True} in controls.values()
    assert any("select_weight_decay" in c for c in controls.values())
    assert controls["pun-at"] == {"dense_from": "dense"}
    run = shipped.train_config("pun-it", shipped.seeds[0], "data", "out").to_flat()
    assert run["prune"] == "pun-it" and run["density"] == shipped.density


def test_command_flags_lists_config_file_and_abbreviations(tmp_path, capsys):
    args = paper_cli.build_parser().parse_args(
        ["--methods", "dense", "pun-it", "--shifts", "in-dist", "noise"]
    )
    assert args.methods == ["dense", "pun-it"] and args.shifts == ["in-dist", "noise"]
    flags = tmp_path / "flags.yaml"
    flags.write_text("output_dir: out3\nseed: 5\nbudget: full\n")
    args = paper_cli.build_parser().parse_args(["--config", str(flags), "--seed", "6"])
    assert (args.output_dir, args.seed, args.budget) == ("out3", 6, "full")  # later flags win
    assert paper_cli.main(["--meth", "dense"]) == 2  # no silent abbreviations
    assert "--meth" in capsys.readouterr().err


def test_interrupted_training_stops_the_experiment_with_status_130(tmp_path, demo_root, monkeypatch,
                                                                    capsys):  # fmt: skip
    from fastmri_pun.app.train.run import TrainResult

    monkeypatch.setattr(paper_scheduler, "fit", lambda cfg: TrainResult(tmp_path, interrupted=True))
    argv = ["--experiment", str(_config(tmp_path, demo_root)), "--output_dir", str(tmp_path / "x")]
    assert paper_cli.main(argv) == 130
    assert capsys.readouterr().err.strip().endswith("interrupted")
    assert not (tmp_path / "x" / "runs" / "dense" / "DONE.json").exists()


def test_controls_two_seeds_two_jobs_end_to_end(tmp_path, demo_root):
    """Two seeds, every kind of control, --jobs 2: every table, the learning-curve figure, the
    equal-compute passes within one batch of PUN-IT's, PUN-AT from the dense run's weights."""
    out = tmp_path / "exp"
    path = _config(
        tmp_path,
        demo_root,
        seeds=[0, 1],
        methods={
            "dense": {"prune": "none"},
            "pun-it": {"prune": "pun-it"},
            "pun-at": {"prune": "pun-at", "dense_from": "dense"},
            "dense-eq-pun-it": {"prune": "none", "match_compute": "pun-it"},
            "dense-small": {"prune": "none", "match_size": True},
            "dense-wd": {"prune": "none", "optimizer": "adamw", "select_weight_decay": [0.0, 1.0]},
        },
        evaluate={"shifts": ["train", "in-dist"], "n_boot": 300, "zero_filled": False},
    )
    argv = ["--experiment", str(path), "--output_dir", str(out), "--jobs", "2",
            "--enable_progress_bar", "false"]  # fmt: skip
    assert paper_cli.main(argv) == 0
    report = (out / "REPORT.md").read_text()
    for heading in (
        "## Does PUN-IT beat dense and the controls?",
        "## Does PUN-AT beat dense and the controls?",
        "## Convergence",
        "## Train–test gap",
        "## Per seed",
        "## Density per layer",
        "## Compute cost",
    ):
        assert heading in report, heading
    for comparator in ("vs `dense`", "vs `dense-eq-pun-it`", "vs `dense-small`", "vs `dense-wd`"):
        assert comparator in report
    assert "hierarchical bootstrap (2 seeds resampled" in report
    assert (out / "figures" / "learning_curves.png").stat().st_size > 1000
    assert "![learning curves](figures/learning_curves.png)" in report
    runs = out / "runs"

    def done(name):
        return json.loads((runs / name / "DONE.json").read_text())

    for seed in (0, 1):
        pun_it, eq = done(f"pun-it-s{seed}"), done(f"dense-eq-pun-it-s{seed}")
        passes = sum(p["train_samples"] for p in pun_it["compute"])
        eq_passes = sum(p["train_samples"] for p in eq["compute"])
        assert 0 <= eq_passes - passes < 1  # batch size 1: exactly the same passes
        assert eq["config"]["max_train_samples"] == passes
        pun_at = done(f"pun-at-s{seed}")
        assert [p["phase"] for p in pun_at["compute"]] == ["dense", "search", "sparse"]
        assert pun_at["compute"][0]["reused_from"] == done(f"dense-s{seed}")["checkpoint"]
        # 3 layers: 36 c + 9 c² weights; c = 4 gives 288, the closest to 0.3 x 864 = 259
        assert done(f"dense-small-s{seed}")["config"]["chans"] == 4
    # the weight-decay candidates ran on seed 0; the one with the best validation SSIM is used
    cands = {wd: done(f"dense-wd-wd{wd:g}-s0") for wd in (0.0, 1.0)}
    best = max(cands, key=lambda wd: cands[wd]["val"]["summary"]["ssim"])
    assert done("dense-wd-s1")["config"]["weight_decay"] == best
    per_image = pd.read_csv(out / "differences_controls.csv")
    assert set(per_image["reference"]) == {"dense", "dense-eq-pun-it", "dense-small", "dense-wd"}
    assert (per_image["n_seeds"] == 2).all()
