"""The masks file of a pruned training run: the pruning masks found before the sparse training.

A training run saves what its pruning method found (``RunDir.search_masks``,
``checkpoints/masks.pt``) right after the search, before the sparse training starts; a rerun of
the same run loads it instead of searching again. The file is a ``torch.save`` dict readable with
``torch.load(..., weights_only=True)``::

    {"format": 1, "method": "pun-it", "density": 0.03, "seed": 42,
     "settings": {"temperature": 0.2, ...},     # every PruneConfig field of the search
     "phases": ["search"],                      # phases the search ran
     "masks": {name: BoolTensor},               # parameter name (unpruned model) -> pruning
                                                # mask, CPU
     "init_state_dict": {key: Tensor} | None,   # weights the sparse training starts from,
                                                # stored for methods that train first (else None)
     "sha256": str}                             # content_digest of the rest

``sha256`` (:func:`fastmri_pun.utils.records.content_digest`: every key, value, tensor dtype, shape and
byte) is checked on every read, and the payload against its schema (keys and types above): a
damaged file (a flipped byte, an edited value, unreadable) is one ``ValueError`` naming the file
and saying to delete it to search again; it is never used. A file written before the digest
(no ``sha256``) is accepted when it passes the schema (backward compatibility).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils.records import DIGEST_KEY, content_digest, record_problem
from .apply import PruningMasks
from .config import PruneConfig
from .payload_file import save_payload

__all__ = [
    "MASKS_FILE_FORMAT",
    "SavedMasks",
    "load_masks_file",
    "mask_settings",
    "requested_pruning",
    "save_masks_file",
]

#: version of the masks file layout
MASKS_FILE_FORMAT = 1


@dataclass
class SavedMasks:
    """Content of a masks file (the pruning masks of a training run).

    Attributes:
        method: the pruning method (``--prune``).
        density: the target density.
        seed: the run's seed.
        masks: parameter name → bool pruning mask (CPU).
        phases: the phases the search ran (``"search"``, ``"dense"``, ``"imp-1"``, ...).
        init_state_dict: the weights the sparse training starts from, for methods that train
            before pruning (``None`` when the sparse training starts from the initial weights).
        settings: the pruning settings the masks were found with (``PruneConfig`` fields: search
            steps, temperature, channel allocation, ...); a rerun with other values is refused.
            Empty in files written before the settings were recorded.
    """

    method: str
    density: float
    seed: int
    masks: PruningMasks
    phases: list[str] = field(default_factory=list)
    init_state_dict: dict[str, torch.Tensor] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def mask_settings(cfg: PruneConfig) -> dict[str, Any]:
    """The pruning settings recorded with (and checked against) a masks file: every
    :class:`~fastmri_pun.pruning.config.PruneConfig` field except those the file records on its
    own (density, seed)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("density", "seed")}


def requested_pruning(path: str | os.PathLike) -> tuple[str, float, dict[str, Any]] | None:
    """``(method, requested density, recorded settings)`` of a masks file, ``None`` when the file
    is missing or no masks file. The requested density is what ``--density`` asked for; a pruned
    checkpoint holds the density reached, which differs for whole-channel methods."""
    if not Path(path).is_file():
        return None
    try:
        data = _read(Path(path))
        return str(data["method"]), float(data["density"]), dict(data.get("settings") or {})
    except (ValueError, KeyError, TypeError):
        return None


#: the masks file's schema (:func:`fastmri_pun.utils.records.record_problem`); tensors: :func:`_read`
_SCHEMA_REQUIRED = {"format": int, "method": str, "density": float, "seed": int, "masks": dict}
_SCHEMA_OPTIONAL = {"settings": dict, "phases": list[str], "init_state_dict": dict | None}


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(
        f"masks file {path} is damaged ({what}); delete it to search again (or choose another "
        "--output_dir)"
    )


def _read(path: Path) -> dict[str, Any]:
    """The payload of a masks file, its digest and schema checked (module docstring).

    Raises:
        ValueError: the file cannot be read, is no masks file of this format, or is damaged.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (any unreadable file: one line)
        raise _damaged(path, f"not readable: {type(err).__name__}") from None
    if not isinstance(data, dict):
        raise _damaged(path, f"not a masks file: a {type(data).__name__}")
    if data.get("format") != MASKS_FILE_FORMAT:
        raise ValueError(
            f"masks file {path} is not a masks file of format {MASKS_FILE_FORMAT} (format "
            f"{data.get('format')!r}); delete it to search again"
        )
    if DIGEST_KEY in data:
        try:
            ok = data[DIGEST_KEY] == content_digest(data)
        except TypeError as err:
            raise _damaged(path, str(err)) from None
        if not ok:
            raise _damaged(path, "its content does not match its sha256")
    problem = record_problem(data, _SCHEMA_REQUIRED, _SCHEMA_OPTIONAL)
    if problem is None:
        bad = [n for n, m in data["masks"].items() if not _is_bool_tensor(m)]
        init = data.get("init_state_dict") or {}
        bad += [k for k, v in init.items() if not isinstance(v, torch.Tensor)]
        if bad:
            problem = f"{bad[0]!r} is not a tensor of the right kind"
    if problem is not None:
        raise _damaged(path, problem)
    return data


def _is_bool_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.bool


def save_masks_file(path: str | os.PathLike, saved: SavedMasks) -> Path:
    """Write ``saved`` to ``path`` atomically with its digest (module docstring); returns
    ``path``.

    Raises:
        OSError: the disk is full (one line naming ``path``; the previous file is unchanged).
    """
    path = Path(path)
    init = saved.init_state_dict
    payload = {
        "format": MASKS_FILE_FORMAT,
        "method": str(saved.method),
        "density": float(saved.density),
        "seed": int(saved.seed),
        "settings": dict(saved.settings),
        "phases": [str(p) for p in saved.phases],
        "masks": {n: m.detach().to("cpu", torch.bool) for n, m in saved.masks.items()},
        "init_state_dict": (
            {k: v.detach().to("cpu") for k, v in init.items()} if init is not None else None
        ),
    }
    payload[DIGEST_KEY] = content_digest(payload)
    return save_payload(path, payload)


def load_masks_file(
    path: str | os.PathLike,
    *,
    method: str,
    density: float,
    seed: int,
    shapes: Mapping[str, Sequence[int]],
    settings: Mapping[str, Any] | None = None,
) -> SavedMasks:
    """Read a masks file and check that it belongs to this run.

    Args:
        path: the file (``RunDir.search_masks``).
        method, density, seed: the run's pruning method, target density and seed.
        shapes: the run's prunable parameters, name → shape (the masks must cover exactly these).
        settings: the run's pruning settings; every one the file recorded must be equal (a file
            without recorded settings is accepted).

    Raises:
        ValueError: the file cannot be read or is damaged (module docstring: "delete it to
            search again"), or its method, density, seed, recorded settings or masked parameters
            differ from the run's (one line naming the first difference and the file).
    """
    path = Path(path)
    data = _read(path)
    expected = {"method": method, "density": float(density), "seed": int(seed)}
    recorded = data.get("settings") or {}
    expected.update({k: v for k, v in (settings or {}).items() if k in recorded})
    for key, value in expected.items():
        if (recorded if key in recorded else data).get(key) != value:
            found = (recorded if key in recorded else data).get(key)
            raise ValueError(
                f"masks file {path} holds {key} {found!r}, this run has {value!r}; "
                "delete it or choose another --output_dir"
            )
    masks = data.get("masks") or {}
    got = {n: tuple(m.shape) for n, m in masks.items()}
    want = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or sorted(n for n in got if got[n] != want[n])
        raise ValueError(
            f"masks file {path} does not match this run's prunable parameters (first difference: "
            f"{diff[0]}); delete it or choose another --output_dir"
        )
    return SavedMasks(
        method=data["method"],
        density=data["density"],
        seed=data["seed"],
        masks={n: m.to(torch.bool) for n, m in masks.items()},
        phases=list(data.get("phases") or []),
        init_state_dict=data.get("init_state_dict"),
        settings=dict(recorded),
    )
