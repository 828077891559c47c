"""``python -m fastmri_pun.train`` options and config files, one-line errors on bad input, and
the :class:`~fastmri_pun.app.train.run.TrainConfig` behind them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import yaml
from torch import nn

from fastmri_pun.app.train.checks import demo_data_dir, resolve_data_path
from fastmri_pun.app.train.cli import build_parser, main, parse_args, valid_keys
from fastmri_pun.app.train.run import TrainConfig, TrainResult, fit, prepare
from fastmri_pun.data import EspiritSettings, SenseDataTransform
from fastmri_pun.experiments.paper.config import CONTROL_KEYS
from fastmri_pun.models import ModelSettings, ModlSettings, register_model, unregister_model

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# the flags of `python -m fastmri_pun.train` (MoDL, the default model): a fixed public interface
FLAGS = [
    "challenge", "mode", "output_dir", "resume", "seed", "deterministic", "dense_checkpoint",
    "data_path", "demo_size", "demo_coils", "test_split", "test_path", "sample_rate",
    "val_sample_rate", "test_sample_rate", "mask_type", "center_fractions", "accelerations",
    "sens_maps", "maps_cache_dir", "crop_readout", "skip_bad_files", "check_values", "batch_size", "num_workers",
    "model", "num_unrolls", "num_cg_iters", "denoiser", "chans", "num_layers", "batchnorm",
    "lam_init", "learn_lam", "unet_chans", "unet_pools", "sens_chans", "sens_pools",
    "checkpoint_unrolls",
    "conv_algorithm", "denoiser_bf16", "fuse_bn_eval",
    "loss", "l1_weight", "optimizer", "lr", "weight_decay", "lr_scheduler", "lr_step_size",
    "lr_gamma", "gradient_clip_val",
    "max_epochs", "max_train_samples", "early_stopping_patience", "early_stopping_min_delta",
    "accelerator", "devices", "strategy", "num_nodes", "log_every_n_steps",
    "num_log_images", "enable_progress_bar", "float32_matmul_precision",
    "prune", "density", "temperature", "kl_weight", "prior_p", "search_steps", "search_lr",
    "imp_rounds", "imp_rate", "channel_allocation", "channel_fraction",
]  # fmt: skip
# one per ESPIRiT setting, generated from the dataclass (its fields may change), in the data group
FLAGS[FLAGS.index("num_workers") + 1 : FLAGS.index("num_workers") + 1] = [
    f"espirit_{f.name}" for f in fields(EspiritSettings)
]


@pytest.fixture(autouse=True)
def _empty_working_folder(tmp_path_factory, monkeypatch):
    """Each test runs in an empty working folder and must leave it empty: what a user's folder
    holds (e.g. the finished ``outputs/demo`` of the README's command) never changes a result,
    and a default ``--output_dir`` or other relative path a test forgets fails here."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    yield
    left = sorted(p.name for p in cwd.iterdir())
    assert not left, f"the test wrote into the working folder: {left}"


def _finished_run(out: Path, **flat) -> None:
    """``out`` as a finished training run (its ``DONE.json``) of the default settings + ``flat``."""
    out.mkdir(parents=True)
    config = TrainConfig.from_flat({"output_dir": str(out), **flat}).to_flat()
    (out / "DONE.json").write_text(json.dumps({"config": config}, default=str))


def parse_config(argv):
    """Parse a command line into the flat ``{flag: value}`` mapping of its config."""
    return parse_args(argv).to_flat()


def test_every_config_parses_and_demo_yaml_is_the_default():
    assert {p.name for p in CONFIGS} >= {
        "demo.yaml", "dense.yaml", "modl_dense_brain.yaml", "pun_it.yaml", "pun_at.yaml",
        "magnitude.yaml", "random.yaml", "snip.yaml", "imp.yaml",
    }  # fmt: skip
    keys = set(valid_keys(build_parser()))
    for path in CONFIGS:
        data = yaml.safe_load(path.read_text())
        if "train" in data:  # experiment plans (fastmri_pun.experiments): sections of flags
            methods = (data.get("methods") or {}).values()  # + the driver's control keys
            sections = [data["train"], *({k: v for k, v in m.items() if k not in CONTROL_KEYS}
                                         for m in methods)]  # fmt: skip
            assert all(set(sec) <= keys for sec in sections), path.name
        else:
            parse_config(["--config", str(path)])
    defaults = parse_config([])
    demo = parse_config(["--config", str(REPO / "configs" / "demo.yaml")])
    assert demo == defaults == TrainConfig().to_flat()
    brain = parse_args(["--config", "modl_dense_brain"])  # a shipped config by its name
    modl = brain.model.settings
    assert (modl.num_unrolls, modl.num_cg_iters, modl.chans, modl.num_layers) == (10, 10, 64, 5)
    assert (modl.lam_init, brain.optimisation.lr, brain.optimisation.optimizer) == (
        0.05,
        1e-3,
        "adam",
    )


def test_flags_override_config_and_every_key_is_a_flag(tmp_path):
    dense = str(REPO / "configs" / "dense.yaml")
    cfg = parse_config(["--config", dense, "--config", "pun_it.yaml"])
    assert (cfg["chans"], cfg["prune"], cfg["output_dir"]) == (64, "pun-it", "outputs/pun_it")
    cfg = parse_config(["--config", dense, "--max_epochs", "2", "--accelerations", "4", "8",
                        "--center_fractions", "0.08", "0.04"])  # fmt: skip
    assert (cfg["max_epochs"], cfg["accelerations"], cfg["center_fractions"]) == (
        2,
        [4, 8],
        [0.08, 0.04],
    )
    assert parse_config(["--max_epochs", "2", "--config", dense])["max_epochs"] == 40  # order
    keys = valid_keys(build_parser())
    assert keys == sorted(FLAGS)
    assert list(TrainConfig().to_flat()) == FLAGS
    help_text = build_parser().format_help()
    for key in keys:
        assert f"--{key}" in help_text
    # every flag is explained: the help line of the field's docstring is in the help
    packed = "".join(help_text.split())
    for action in build_parser()._actions:
        if action.dest in keys:
            assert action.help, action.dest
            assert "".join(action.help.split()) in packed, action.dest


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
    with pytest.raises(
        ValueError,
        match=r"unrecognized arguments: --acceleration 4 \(did you mean --accelerations\?\)",
    ):
        parse_config(["--acceleration", "4"])
    with pytest.raises(ValueError, match="challenge.*singlecoil"):
        parse_config(["--challenge", "bicoil"])
    with pytest.raises(ValueError, match="same length"):
        parse_config(["--accelerations", "4", "8"])
    with pytest.raises(ValueError, match="--mode test needs a checkpoint"):
        parse_config(["--mode", "test"])
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(
        FileNotFoundError,
        match=r"nor is it a shipped config: did you mean dense\? shipped: demo, dense, ",
    ):
        parse_config(["--config", "dens"])
    assert main(["--data_path", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)]) == 2
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
        prepare(parse_args(base))
    (root / "multicoil_train" / "notes.txt").write_text("x")
    (root / "multicoil_train" / "file1.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="entries other than .h5 files"):
        fit(parse_args(base))
    # the data are checked first: with them fixed, the missing checkpoint is named
    (root / "multicoil_train" / "notes.txt").unlink()
    for split in ("val", "test"):
        (root / f"multicoil_{split}").mkdir()
        (root / f"multicoil_{split}" / "file1.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="--resume checkpoint .*last.ckpt does not exist"):
        fit(parse_args([*base, "--resume", "last"]))


def test_module_entry_point_reports_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "fastmri_pun.train", "--data_path", str(missing),
         "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=Path.cwd(), timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"python -m fastmri_pun.train: error: --data_path {missing} does not exist"
    ]


def test_data_errors_come_before_the_output_folder_s(tmp_path, capsys):
    out = tmp_path / "out"
    _finished_run(out)  # the README's demo run, finished: other settings are refused there
    before = sorted(p.name for p in out.iterdir())
    missing = tmp_path / "nowhere"
    assert main(["--data_path", str(missing), "--output_dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"python -m fastmri_pun.train: error: --data_path {missing} does not exist"
    )
    root = tmp_path / "fastmri"
    (root / "multicoil_train").mkdir(parents=True)
    (root / "multicoil_train" / "file1.h5").write_bytes(b"")
    assert main(["--data_path", str(root), "--output_dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"python -m fastmri_pun.train: error: data folder {root / 'multicoil_val'} does not exist"
    )
    (root / "multicoil_val").mkdir()
    (root / "multicoil_val" / "file2.h5").write_bytes(b"")
    argv = ["--data_path", str(root), "--output_dir", str(out), "--test_path", str(missing)]
    assert main(argv) == 2
    assert f"error: --test_path {missing} does not exist" in capsys.readouterr().err
    # --test_path replaces <challenge>_test: with it, the folders are complete, so the next
    # problem is the finished run in the output folder
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "file3.h5").write_bytes(b"")
    argv[-1] = str(tmp_path / "test")
    assert main(argv) == 2
    assert f"--output_dir {out} holds a finished run with other settings" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written


def test_the_demo_set_s_folder_is_printed_first(tmp_path, monkeypatch, capsys):
    import fastmri_pun.app.train.cli as cli

    monkeypatch.setattr(cli, "fit", lambda cfg: TrainResult(Path(cfg.run.output_dir)))
    assert main(["--output_dir", str(tmp_path), "--demo_coils", "4"]) == 0
    folder = Path(os.environ["FASTMRI_PUN_CACHE"]) / "demo" / "size128_coils4_seed0"
    assert capsys.readouterr().out.splitlines()[0] == (
        f"Data: the demo set in {folder} (built there on first use; --data_path DIR for fastMRI "
        "data)"
    )
    root = tmp_path / "fastmri"
    for split in ("train", "val", "test"):
        (root / f"multicoil_{split}").mkdir(parents=True)
        (root / f"multicoil_{split}" / "file.h5").write_bytes(b"")
    assert main(["--output_dir", str(tmp_path), "--data_path", str(root)]) == 0
    assert "demo set" not in capsys.readouterr().out
    # the folder named is the one the run uses (ensure_demo_dataset builds into it)
    import fastmri_pun.demo.builder as builder

    built = []
    monkeypatch.setattr(
        builder, "build_demo_dataset", lambda target, *a, **k: built.append(target) or target
    )
    data = TrainConfig.from_flat({"demo_size": 96, "demo_coils": 4}).data
    resolve_data_path(data)
    assert built == [demo_data_dir(data)] == [folder.with_name("size96_coils4_seed0")]


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
        fit(parse_args([*base, "--model", "varnet"]))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run .* no last.ckpt"):
        fit(parse_args(base))
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    for extra in ([], ["--resume", "last"]):  # an earlier run's last.ckpt is continued
        with pytest.raises(ValueError, match=r"last.ckpt: not a PyTorch checkpoint; continue from"):
            fit(parse_args([*base, *extra]))


def test_from_flat_round_trip_and_unknown_keys():
    cfg = TrainConfig.from_flat({"max_epochs": 2, "accelerations": (4, 8),
                                 "center_fractions": [0.08, 0.04], "prune": "snip", "seed": 3})  # fmt: skip
    assert (cfg.trainer.max_epochs, cfg.data.accelerations, cfg.prune) == (2, [4, 8], "snip")
    assert TrainConfig.from_flat(cfg.to_flat()) == cfg
    assert TrainConfig.from_flat({}) == TrainConfig()
    with pytest.raises(ValueError) as info:
        TrainConfig.from_flat({"max_epoch": 3, "chans": 8})
    msg = str(info.value)
    assert "unknown key(s) 'max_epoch' (did you mean 'max_epochs'?)" in msg
    assert "valid keys: " + ", ".join(sorted(FLAGS)) in msg
    # model flags are the selected model's settings: VarNet has its own names
    varnet = TrainConfig.from_flat({"model": "varnet", "num_cascades": 2, "chans": 6})
    assert varnet.model.settings.model_kwargs(sens_maps="learned") == {
        "num_cascades": 2, "chans": 6, "pools": 4, "sens_chans": 8, "sens_pools": 4,
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'num_unrolls'.*num_cascades"):
        TrainConfig.from_flat({"model": "varnet", "num_unrolls": 2})
    with pytest.raises(ValueError, match="unknown model 'nope'; registered models: .*modl"):
        TrainConfig.from_flat({"model": "nope"})
    # MoDL's learned sensitivity network is built only when the maps are learned
    assert ModlSettings().model_kwargs(sens_maps="espirit")["learn_sens_maps"] is False
    assert ModlSettings().model_kwargs(sens_maps="learned")["learn_sens_maps"] is True


@pytest.mark.parametrize(
    ("flat", "match"),
    [
        ({"max_epochs": "many"}, r"--max_epochs must be int, got 'many'"),
        ({"max_epochs": 0}, r"--max_epochs must be >= 1, got 0"),
        ({"sens_maps": "walsh"}, r"--sens_maps must be 'espirit' or 'learned', got 'walsh'"),
        ({"prune": "pun"}, r"--prune must be one of none, pun-it, .*got 'pun'"),
        ({"density": 1.5}, r"density must be in \(0, 1\]"),
        ({"num_unrolls": 0}, r"num_unrolls must be >= 1, got 0"),
        ({"challenge": "bicoil"}, r"--challenge must be .multicoil. or .singlecoil., got .bicoil."),
        ({"accelerations": [4, 8]}, "same length"),
        ({"mode": "test"}, "--mode test needs a checkpoint"),
    ],
)
def test_config_values_are_checked_when_built(flat, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_flat(flat)


def test_library_fit_raises_instead_of_exiting(tmp_path):
    root = tmp_path / "fastmri"
    (root / "multicoil_train").mkdir(parents=True)
    cfg = TrainConfig.from_flat({"data_path": root, "output_dir": tmp_path / "out"})
    assert cfg.data.data_path == str(root)  # paths are kept as strings (the flag type)
    with pytest.raises(ValueError, match=r"multicoil_train holds no \.h5 files"):
        fit(cfg)
    cfg.data.data_path = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="--data_path .*nowhere does not exist"):
        fit(cfg)
    assert not (tmp_path / "out").exists()  # nothing is written before the input is checked


@dataclass
class _ToySettings(ModelSettings):
    """A toy model's options.

    Attributes:
        width: Channels of the toy network's only convolution.
        smooth: Average the image instead of convolving it.
    """

    width: int = 3
    smooth: bool = False


def test_a_registered_model_gets_its_flags_without_cli_changes(capsys):
    def toy(width: int = 3, smooth: bool = False) -> nn.Module:
        return nn.Conv2d(2, width, 1)

    register_model("toy", settings=_ToySettings)(toy)
    try:
        help_text = " ".join(build_parser("toy").format_help().split())
        assert "--width WIDTH Channels of the toy network's only convolution." in help_text
        assert "--smooth {true,false}" in help_text and "--num_unrolls" not in help_text
        with pytest.raises(SystemExit) as done:
            main(["--model", "toy", "--help"])
        assert done.value.code == 0 and "--width" in capsys.readouterr().out
        cfg = parse_args(["--model", "toy", "--width", "5", "--smooth", "true"])
        assert cfg.model.settings == _ToySettings(width=5, smooth=True)
        assert parse_args(["--model=toy", "--width=5", "--smooth=true"]) == cfg
        assert cfg.to_flat()["width"] == 5 and "chans" not in cfg.to_flat()
        assert TrainConfig.from_flat(cfg.to_flat()) == cfg
        with pytest.raises(ValueError, match=r"unrecognized arguments: --num_unrolls 3"):
            parse_args(["--model", "toy", "--num_unrolls", "3"])
    finally:
        unregister_model("toy")
    with pytest.raises(ValueError, match="unknown model 'toy'"):
        parse_args(["--model", "toy"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sens_maps", "walsh"], "sens_maps"),
        (["--max_epochs", "0"], "--max_epochs must be >= 1, got 0"),
        (["--acceleration", "4"], "unrecognized arguments: --acceleration 4 (did you mean"),
        (["--model", "varnet", "--num_unrolls", "4"], "unrecognized arguments: --num_unrolls 4"),
        (["--config", "fastmri_pun/configs/dense.yaml"], "moved to configs/"),
        (["--config", "paper_small"], "run it with: fastmri-pun paper --budget small"),
    ],
)
def test_cli_bad_input_is_exit_2_and_one_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m fastmri_pun.train: error: ")
    assert message in lines[0]
    assert captured.out == ""


def test_print_config_is_a_loadable_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["--max_epochs", "7", "--print_config"])
    assert done.value.code == 0
    path = tmp_path / "printed.yaml"
    path.write_text(capsys.readouterr().out)
    assert parse_config(["--config", str(path)]) == {**TrainConfig().to_flat(), "max_epochs": 7}


def test_three_flags_reach_their_consumers_as_one_settings_object():
    from fastmri_pun.app.train.pruning_phase import prune_config
    from fastmri_pun.app.train.run import build_module, transform_settings

    cfg = parse_args(["--num_cg_iters", "7", "--density", "0.2", "--espirit_crop", "0.8",
                      "--num_unrolls", "1", "--chans", "4", "--seed", "5"])  # fmt: skip
    # --num_cg_iters: ModlSettings -> the MoDL the module trains -> its CG solves
    assert isinstance(cfg.model.settings, ModlSettings) and cfg.model.settings.num_cg_iters == 7
    module = build_module(cfg)
    assert module.model.num_cg_iters == 7 and module.hparams.model_kwargs["num_cg_iters"] == 7
    # --density: the run's PruneConfig, handed to the library with the run's seed
    assert (prune_config(cfg).density, prune_config(cfg).seed) == (0.2, 5)
    # --espirit_crop: the EspiritSettings object itself goes into the transform settings and
    # is the transform's, which hands it to espirit_maps (tests/data/test_data_transforms.py)
    assert transform_settings(cfg).espirit is cfg.data.espirit
    assert SenseDataTransform.from_settings(transform_settings(cfg)).espirit is cfg.data.espirit
    assert cfg.data.espirit == EspiritSettings(crop=0.8)


def test_density_reaches_the_top_k_from_the_procedure(monkeypatch):
    """--density goes from the run's PruneConfig through the procedure straight to topk_mask."""
    from fastmri_pun.app.train.pruning_phase import prune_config
    from fastmri_pun.app.train.run import build_module
    from fastmri_pun.pruning import find_masks, procedures

    cfg = parse_args(["--density", "0.2", "--num_unrolls", "1", "--chans", "4"])
    seen = []
    real = procedures.topk_mask

    def spy(scores, density, min_per_layer):
        seen.append(density)
        return real(scores, density, min_per_layer)

    monkeypatch.setattr(procedures, "topk_mask", spy)
    result = find_masks("magnitude", build_module(cfg).model, prune_config(cfg))
    assert seen == [0.2] and abs(result.report["density"] - 0.2) < 0.01


def test_model_built_from_its_settings_has_the_registry_s_weights():
    import torch

    from fastmri_pun.models import build_model

    settings = ModlSettings(num_unrolls=1, chans=4)
    torch.manual_seed(0)
    built = settings.build(sens_maps="espirit")
    torch.manual_seed(0)
    registry = build_model("modl", **settings.model_kwargs(sens_maps="espirit"))
    assert type(built) is type(registry)
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(),
                                                  registry.state_dict().values(), strict=True))  # fmt: skip
