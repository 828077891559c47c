"""The names of the evaluated models: the rows, partial results and figure captions name them."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ...evaluation.scoring import ZERO_FILLED
from ..run_folder import RunDir

__all__ = ["model_names"]

# a name is part of file names (partial/<model>__<shift>.csv), so it is a plain token without
# the separator "__"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def model_names(
    checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None = None
) -> list[str]:
    """Names of the models: ``names`` or, by default, the training run folder of each checkpoint
    (``RUN/checkpoints/best.ckpt`` → ``RUN``'s name) or the checkpoint's stem.

    Raises:
        ValueError: wrong count, a name that is not a plain file-name token, or a repeated or
            reserved (``zero-filled``) name.
    """
    if names:
        if len(names) != len(checkpoints):
            raise ValueError(f"--names has {len(names)} entries for {len(checkpoints)} checkpoints")
        out = list(names)
    else:
        out = []
        for c in checkpoints:
            run = RunDir.of_checkpoint(c)
            out.append(run.root.name if run is not None else Path(c).stem)
    for n in out:
        if not _NAME_RE.match(n) or "__" in n:
            raise ValueError(
                f"model name {n!r} must be letters, digits, '.', '_', '+', '-' "
                "(no '__'); pass --names"
            )
    dup = sorted({n for n in out if out.count(n) > 1} | ({ZERO_FILLED} & set(out)))
    if dup:
        raise ValueError(f"model names {dup} are not unique (or reserved); pass --names")
    return out
