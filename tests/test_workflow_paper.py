"""Tiny end-to-end run of the paper experiment: two methods, two shifts, a few steps, resumable."""

import json

import pandas as pd
import pytest
import yaml

from fastmri_pun.experiments import paper


def _config(tmp_path, demo_root, **over):
    cfg = {
        "budget": "tiny-test",
        "data_path": str(demo_root),
        "seeds": [0],
        "density": 0.3,
        "reference": "dense",
        "methods": {"dense": {"prune": "none"}, "pun-it": {"prune": "pun-it"}},
        "train": {
            "center_fractions": [0.16],  # 10 ACS columns at width 64 (ESPIRiT needs >= 7)
            "num_unrolls": 1,
            "num_cg_iters": 2,
            "chans": 8,
            "num_layers": 3,
            "max_epochs": 1,
            "search_steps": 3,
            "accelerator": "cpu",
            "num_log_images": 1,
        },
        "evaluate": {"shifts": ["in-dist", "lesions"], "n_boot": 500, "zero_filled": False},
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_paper_end_to_end_and_resume(tmp_path, demo_root, monkeypatch):
    out = tmp_path / "exp"
    res = paper.main(["--config", str(_config(tmp_path, demo_root)), "--output_dir", str(out),
                      "--no_progress"])  # fmt: skip
    report = (out / "REPORT.md").read_text()
    # the verdict table: one row per shift with a verdict for PSNR and SSIM
    for shift in ("in-dist", "lesions"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {shift} | "))
        verdicts = [v for v in ("better", "worse", "no significant difference") if v in row]
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
    assert res["records"]["dense"]["checkpoint"] == done["checkpoint"].replace("pun-it", "dense")

    # rerun: finished runs and evaluations are skipped; an unfinished run folder is restarted
    from fastmri_pun import train

    def no_training(argv):
        raise AssertionError(f"retrained {argv}")

    monkeypatch.setattr(train, "main", no_training)
    before = (out / "eval" / "results.csv").read_bytes()
    paper.main(["--config", str(_config(tmp_path, demo_root)), "--output_dir", str(out),
                "--no_progress"])  # fmt: skip
    assert (out / "eval" / "results.csv").read_bytes() == before
    (out / "runs" / "pun-it" / "DONE.json").unlink()
    with pytest.raises(AssertionError, match="retrained"):
        paper.main(["--config", str(_config(tmp_path, demo_root)), "--output_dir", str(out),
                    "--no_progress"])  # fmt: skip
    assert (out / "runs" / "dense" / "DONE.json").is_file()
    assert not (out / "runs" / "pun-it").exists()  # the unfinished folder was cleared


def test_config_errors(tmp_path, demo_root, capsys):
    bad = _config(tmp_path, demo_root, epochs=3)
    with pytest.raises(SystemExit):
        paper.main(["--config", str(bad), "--output_dir", str(tmp_path / "o")])
    assert "unknown key(s) ['epochs']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="set by the experiment driver"):
        paper.load_config(_config(tmp_path, demo_root, train={"seed": 3}))
    with pytest.raises(ValueError, match="reference 'x'"):
        paper.load_config(_config(tmp_path, demo_root, reference="x"))
    cfg = paper.load_config(_config(tmp_path, demo_root))
    with pytest.raises(ValueError, match="unknown method"):
        paper.run_experiment(cfg, tmp_path / "o", methods=["dense", "imp"])
    assert paper.train_argv({"a": [1, 2], "b": True, "c": None, "d": 0.5}) == [
        "--a", "1", "2", "--b", "true", "--c", "null", "--d", "0.5",
    ]  # fmt: skip
    for budget in ("small", "full"):  # the shipped configs are valid
        shipped = paper.load_config(paper.CONFIG_DIR / f"paper_{budget}.yaml")
        assert {"dense", "pun-it", "pun-at", "magnitude", "random"} <= set(shipped["methods"])
