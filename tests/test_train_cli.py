"""``python -m fastmri_pun.train`` options and config files, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastmri_pun.train import OPTIONS, build_parser, main, parse_config, prepare, valid_keys

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "fastmri_pun" / "configs").glob("*.yaml"))


def test_every_config_parses_and_demo_yaml_is_the_default():
    assert {p.name for p in CONFIGS} >= {
        "demo.yaml", "dense.yaml", "modl_dense_brain.yaml", "pun_it.yaml", "pun_at.yaml",
        "magnitude.yaml", "random.yaml", "snip.yaml", "imp.yaml",
    }  # fmt: skip
    keys = set(valid_keys(build_parser()))
    for path in CONFIGS:
        data = yaml.safe_load(path.read_text())
        if "train" in data:  # experiment plans (fastmri_pun.experiments): sections of flags
            sections = [data["train"], *(data.get("methods") or {}).values()]
            assert all(set(sec) <= keys for sec in sections), path.name
        else:
            parse_config(["--config", str(path)])
    defaults = parse_config([]).as_dict()
    demo = parse_config(["--config", str(REPO / "fastmri_pun" / "configs" / "demo.yaml")]).as_dict()
    demo.pop("config"), defaults.pop("config")
    assert demo == defaults
    brain = parse_config(
        ["--config", str(REPO / "fastmri_pun" / "configs" / "modl_dense_brain.yaml")]
    )
    assert (brain.num_unrolls, brain.num_cg_iters, brain.chans, brain.num_layers) == (10, 10, 64, 5)
    assert (brain.lam_init, brain.lr, brain.optimizer) == (0.05, 1e-3, "adam")


def test_flags_override_config_and_every_key_is_a_flag(tmp_path):
    dense = str(REPO / "fastmri_pun" / "configs" / "dense.yaml")
    cfg = parse_config(
        ["--config", dense, "--config", str(REPO / "fastmri_pun" / "configs" / "pun_it.yaml")]
    )
    assert (cfg.chans, cfg.prune, cfg.output_dir) == (64, "pun-it", "outputs/pun_it")
    cfg = parse_config(["--config", dense, "--max_epochs", "2", "--accelerations", "4", "8",
                        "--center_fractions", "0.08", "0.04"])  # fmt: skip
    assert (cfg.max_epochs, cfg.accelerations, cfg.center_fractions) == (2, [4, 8], [0.08, 0.04])
    assert parse_config(["--max_epochs", "2", "--config", dense]).max_epochs == 40  # order counts
    keys = valid_keys(build_parser())
    assert keys == sorted(o[1] for o in OPTIONS)
    help_text = build_parser().format_help()
    for key in keys:
        assert f"--{key}" in help_text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "max_epoch: 3\n",
            r"unknown key\(s\) 'max_epoch' \(did you mean 'max_epochs'\?\); valid keys: ",
        ),
        ("lr: !!python/object/apply:os.system ['echo hi']\n", "python tags are refused"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("center_fractions: 0.08\n", r"'center_fractions' must be a list"),
        ("max_epochs: many\n", "max_epochs"),
        ("sens_maps: walsh\n", "sens_maps"),
    ],
)
def test_bad_config_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        parse_config(["--config", str(path)])
    assert "\n" not in str(info.value)


def test_bad_command_lines(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'acceleration' \(did you mean"):
        parse_config(["--acceleration", "4"])
    with pytest.raises(ValueError, match="singlecoil is not supported yet"):
        parse_config(["--challenge", "singlecoil"])
    with pytest.raises(ValueError, match="same length"):
        parse_config(["--accelerations", "4", "8"])
    with pytest.raises(ValueError, match="--mode test needs a checkpoint"):
        parse_config(["--mode", "test"])
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit) as info:
        main(["--data_path", str(tmp_path / "nowhere")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"python -m fastmri_pun.train: error: --data_path {tmp_path / 'nowhere'} does not exist"
    )


def test_missing_or_empty_split_folders(tmp_path):
    root = tmp_path / "fastmri"
    (root / "multicoil_train").mkdir(parents=True)
    base = ["--data_path", str(root), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"multicoil_train holds no \.h5 files"):
        prepare(parse_config(base))
    (root / "multicoil_train" / "notes.txt").write_text("x")
    (root / "multicoil_train" / "file1.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="entries other than .h5 files"):
        prepare(parse_config(base))
    with pytest.raises(FileNotFoundError, match="--resume checkpoint .*last.ckpt does not exist"):
        prepare(parse_config([*base, "--resume", "last"]))


def test_module_entry_point_reports_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "fastmri_pun.train", "--challenge", "singlecoil"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m fastmri_pun.train: error: --challenge singlecoil is not supported yet; "
        "use --challenge multicoil"
    ]


def test_run_level_input_errors(demo_root, tmp_path):
    base = [
        "--data_path",
        str(demo_root),
        "--output_dir",
        str(tmp_path),
        "--center_fractions",
        "0.16",
    ]
    with pytest.raises(ValueError, match="--model varnet estimates its own coil maps"):
        prepare(parse_config([*base, "--model", "varnet"]))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run .* no last.ckpt"):
        prepare(parse_config(base))
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    for extra in ([], ["--resume", "last"]):  # an earlier run's last.ckpt is continued
        with pytest.raises(ValueError, match="last.ckpt cannot be loaded safely with torch.load"):
            prepare(parse_config([*base, *extra]))
