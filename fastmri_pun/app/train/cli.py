"""``python -m fastmri_pun.train``: flags → :class:`~fastmri_pun.app.train.run.TrainConfig` →
:func:`~fastmri_pun.app.train.run.fit` → a short report.

::

    python -m fastmri_pun.train --challenge multicoil            # demo: builds data, trains, tests
    python -m fastmri_pun.train --config fastmri_pun/configs/dense.yaml --max_epochs 50
    python -m fastmri_pun.train --mode test --resume outputs/demo/checkpoints/best.ckpt
    python -m fastmri_pun.train --challenge singlecoil --output_dir outputs/demo_singlecoil

Command-line design. Lightning's ``LightningCLI`` was weighed first: it builds the parser from the
module/datamodule signatures, but its options are nested (``--model.init_args.lr``,
``--trainer.max_epochs``, ``--data.batch_size``), it replaces ``--mode`` with ``fit``/``test``
sub-commands, and it cannot express things that are not constructor arguments (building the
demo set, ESPIRiT settings of the transforms, the pruning procedure that runs before training).
fastMRI's scripts use flat argparse flags (``--data_path --mask_type --center_fractions 0.08
--accelerations 4 ...``). So this uses jsonargparse's ``ArgumentParser`` (the parser under
LightningCLI) directly, with one flat flag per field of the config dataclasses
(:func:`fastmri_pun.app.train.run.train_flags`; the help is the field's docstring line, list
fields take several values: ``--accelerations 4 8``); the model flags are the settings of the
selected ``--model`` (from the flags or a config file), so a newly registered model brings its
own. ``--config FILE.yaml`` (``ActionConfigFile``): every key is a flag and flags given after it
override it; unknown keys and flags are errors; ``--print_config`` dumps a complete YAML of a run.
YAML files are additionally read with ``yaml.safe_load`` before parsing, to reject python tags
and to list the valid keys (with a "did you mean") on a typo.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import docstring_parser
from jsonargparse import ActionConfigFile, ArgumentParser
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ...models import list_models
from ...pruning.methods import pruning_methods_help
from ...utils.config_checks import unknown_keys_message
from ..config_files import check_config_keys, config_file_paths, read_config_file
from ..config_files import config_keys as valid_keys  # the keys a flag or config file may set
from ..errors import run_command
from ..run_folder import RunDir
from .config import Flag, ModelConfig, TrainConfig, train_flags
from .run import TrainResult, fit

__all__ = ["PROG", "build_parser", "main", "parse_args", "report", "valid_keys"]

PROG = "python -m fastmri_pun.train"
_NOT_KEYS = {"help", "config", "print_config"}


@functools.cache
def _field_help(owner: type) -> dict[str, str]:
    """``{field: help}`` from the ``Attributes:``/``Args:`` section of ``owner``'s docstring."""
    doc = docstring_parser.parse(inspect.getdoc(owner) or "")
    return {p.arg_name: " ".join((p.description or "").split()) for p in doc.params}


def _help(flag: Flag) -> str:
    return flag.help or _field_help(flag.owner).get(flag.field, "")


def _is_list(flag: Flag) -> bool:
    return get_origin(flag.type) is list


def build_parser(model: str = ModelConfig.model) -> ArgumentParser:
    """The parser for a run of ``model`` (whose settings are the model flags). Defaults are the
    CPU demo (128² brain slices, small MoDL, a few epochs).

    Raises:
        ValueError: no model is registered as ``model``.
    """
    flags = train_flags(model)
    parser = ArgumentParser(
        prog=PROG,
        description=(
            "Train and test MoDL (or another model registered in fastmri_pun.models) on "
            "fastMRI-format data (multicoil, or singlecoil with --challenge singlecoil) with "
            "pytorch-lightning 2, dense or pruned. With no "
            "arguments: build the demo data set (real brain MR images, simulated 8-coil "
            "acquisition) in the cache folder, train a small MoDL on CPU, validate, test, and "
            "write checkpoints, reconstructions, metrics.md/metrics.csv and a figure to "
            "--output_dir. Every option can also be a key of a --config YAML file; options given "
            "after --config override it."
        ),
        epilog=(
            f"Model flags: those of --model {model} above; registered models: "
            f"{', '.join(list_models())} (with --help after --model NAME: that model's flags). "
            f"Pruning methods (--prune): {pruning_methods_help()}; 'none' = dense."
        ),
        exit_on_error=False,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file whose keys are any of the options below (read with yaml.safe_load: no "
        "python tags; unknown keys are errors). Repeatable; later files and flags override.",
    )
    groups: dict[str, Any] = {}
    for flag in flags:
        if flag.group not in groups:
            title = f"model ({model})" if flag.group == "model" else flag.group
            groups[flag.group] = parser.add_argument_group(title)
        kwargs: dict[str, Any] = {"type": flag.type, "default": flag.default, "help": _help(flag)}
        if _is_list(flag):  # fastMRI's `--accelerations 4 8`; YAML lists in config files
            kwargs.update(type=get_args(flag.type)[0], nargs="+")
        groups[flag.group].add_argument(f"--{flag.name}", **kwargs)
    return parser


def _selected_model(argv: Sequence[str], files: dict[str, dict[str, Any]]) -> str:
    """The ``model`` of the run: the last one set by a ``--config`` file or ``--model`` flag."""
    model = ModelConfig.model
    for i, tok in enumerate(argv):
        name, eq, value = tok.partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if name == "--config" and "model" in files.get(value, {}):
            model = files[value]["model"]
        elif name == "--model":
            model = value
    return str(model)


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line (and its config files) into a :class:`TrainConfig`.

    Raises:
        ValueError, FileNotFoundError: bad input, with one clear line.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    files = {path: read_config_file(path) for path in config_file_paths(argv)}
    model = _selected_model(argv, files)
    flags = train_flags(model)
    for path, data in files.items():
        check_config_keys(
            path, data, [f.name for f in flags], [f.name for f in flags if _is_list(f)]
        )
    keys = [f.name for f in flags]
    given = [t.split("=", 1)[0][2:] for t in argv if t.startswith("--") and len(t) > 2]
    bad = [g for g in given if g not in keys and g not in _NOT_KEYS]
    if bad:
        message = unknown_keys_message(bad, keys, "command line")
        raise ValueError(message.replace("key(s)", "option(s)"))
    parser = build_parser(model)
    try:
        ns = parser.parse_args(argv)
    except Exception as err:  # jsonargparse.ArgumentError: type/choice errors
        raise ValueError(" ".join(str(err).split())) from err
    return TrainConfig.from_flat({k: v for k, v in ns.as_dict().items() if k not in _NOT_KEYS})


def report(result: TrainResult) -> str:
    """The summary printed after a run: output paths, logs, and the metrics table."""
    lines = ["", "=== fastmri_pun.train finished ==="]
    if result.reused:
        lines.append(
            f"{result.output_dir} holds this run, finished earlier: nothing was run (re-test it "
            "with --mode test --resume best; another --output_dir trains afresh)"
        )
    for key in (
        "best_checkpoint",
        "last_checkpoint",
        "metrics_md",
        "metrics_csv",
        "reconstructions",
        "figure",
    ):
        if getattr(result, key):
            lines.append(f"{key:>16}: {getattr(result, key)}")
    logs = RunDir(result.output_dir).logs
    lines.append(f"{'logs':>16}: {logs}/csv, {logs}/tensorboard (tensorboard --logdir {logs})")
    if result.metrics_md:
        lines += ["", Path(result.metrics_md).read_text()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run :func:`~fastmri_pun.app.train.run.fit`, print the report (rank 0).

    Returns:
        the exit status: 0, 2 after bad input (one line on stderr), 130 when interrupted.
    """
    results: list[TrainResult] = []
    try:
        status = run_command(PROG, lambda: results.append(fit(parse_args(argv))))
    except SystemExit as done:  # --help, --print_config
        return done.code if isinstance(done.code, int) else 0
    if status or not results:
        return status
    if results[0].interrupted:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if rank_zero_only.rank == 0:
        print(report(results[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
