"""Records that verify themselves: JSON records and ``torch.save`` payloads carrying a SHA-256
of their content, checked on every read against the digest and a schema.

* JSON records (``DONE.json``, the evaluation cache's metadata, compute records) embed
  ``"sha256"``: the digest of their canonical JSON without that key (:func:`seal`,
  :func:`unseal`, :func:`atomic_write_record`, :func:`read_record`); a record is also checked
  against a schema of required keys and types (:func:`record_problem`).
* ``torch.save`` payloads (the masks file) embed ``"sha256"`` of their content
  (:func:`content_digest`: keys, plain values, tensors' dtypes, shapes and bytes).

Binary cache files carry a digest trailer instead (:func:`fastmri_pun.utils.io.atomic_open`,
:func:`~fastmri_pun.utils.io.read_sealed_bytes`). What a reader does with a record without a
digest (written before digests) is its own choice: records are accepted when they pass their
schema.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config_checks import _matches, _type_name
from .io import atomic_write_json

__all__ = [
    "DIGEST_KEY",
    "DamagedFileError",
    "atomic_write_record",
    "content_digest",
    "json_digest",
    "read_json",
    "read_record",
    "record_problem",
    "seal",
    "unseal",
]

DIGEST_KEY = "sha256"


class DamagedFileError(ValueError):
    """A file the package wrote no longer holds what was written (digest mismatch, unreadable,
    not of its schema); ``path`` is the file, the message one line naming it and what to do."""

    def __init__(self, message: str, path: str | os.PathLike) -> None:
        super().__init__(message)
        self.path = Path(path)


def _canonical(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def json_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a JSON object's canonical form (sorted keys, no spaces, ASCII) without
    its :data:`DIGEST_KEY` entry, as it reads back from JSON (tuples as lists)."""
    plain = json.loads(json.dumps(dict(data), allow_nan=False))
    plain.pop(DIGEST_KEY, None)
    return hashlib.sha256(_canonical(plain)).hexdigest()


def seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with :data:`DIGEST_KEY` set to :func:`json_digest` of the rest.

    Raises:
        ValueError: NaN or infinity in ``record``.
        TypeError: a value JSON cannot hold.
    """
    out = {k: v for k, v in record.items() if k != DIGEST_KEY}
    out[DIGEST_KEY] = json_digest(out)
    return out


def unseal(record: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(record without its digest, whether it had one)``.

    Raises:
        ValueError: the digest is not a string or does not match the content.
    """
    content = {k: v for k, v in record.items() if k != DIGEST_KEY}
    if DIGEST_KEY not in record:
        return content, False
    recorded = record[DIGEST_KEY]
    if not isinstance(recorded, str) or recorded != json_digest(content):
        raise ValueError("its content does not match its sha256 (changed after it was written)")
    return content, True


def atomic_write_record(path: str | os.PathLike, record: Mapping[str, Any], **dumps: Any) -> Path:
    """Write the JSON object ``record`` :func:`seal` ed, atomically (:func:`atomic_write_json`,
    same ``dumps`` options); returns ``path``.

    Raises:
        ValueError: NaN or infinity in ``record`` (nothing is written).
        OSError: :func:`~fastmri_pun.utils.disk_full.disk_full_error` naming ``path``.
    """
    return atomic_write_json(path, seal(record), **dumps)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` for a missing one).
        ValueError: not UTF-8 JSON (``"not valid JSON (<reason>)"``).
    """
    text = Path(path).read_bytes()
    try:
        return json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not valid JSON ({err})") from None


def record_problem(
    record: Any, required: Mapping[str, Any], optional: Mapping[str, Any] | None = None
) -> str | None:
    """What is wrong with a record of a schema, or ``None``.

    Args:
        record: the value read.
        required: key → type annotation (``str``, ``int | None``, ``list[str]``, ``dict``, ...;
            an ``int`` passes as ``float``, a ``bool`` never as a number) of keys it must hold.
        optional: the same for keys it may hold; other keys are allowed.

    Returns:
        ``"not a JSON object"``, ``"no '<key>'"`` or ``"'<key>' must be <type>, got <value>"``.
    """
    if not isinstance(record, dict):
        return f"not a JSON object (a {type(record).__name__})"
    for key in required:
        if key not in record:
            return f"no {key!r}"
    for key, hint in {**(optional or {}), **required}.items():
        if key in record and not _matches(record[key], hint):
            return f"{key!r} must be {_type_name(hint)}, got {_short(record[key])}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_record(
    path: str | os.PathLike,
    check: Callable[[Any], str | None],
    *,
    kind: str,
    remedy: str,
) -> tuple[dict[str, Any], bool]:
    """Read a JSON record written by :func:`atomic_write_record`: its digest, then its schema.

    Args:
        path: the file.
        check: the schema, e.g. a :func:`record_problem` call: the record without its digest →
            what is wrong, or ``None``.
        kind: what the file is, for the message (``"finished-run record"``).
        remedy: what to do about a damaged file (``"delete it to train again"``).

    Returns:
        ``(record without its digest, whether it had one)``. A record without digest (written
        before digests) is returned when it passes ``check``; the caller decides whether to
        trust it.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: ``"<path>: damaged <kind> (<what>); <remedy>"``: unreadable, not JSON,
            digest mismatch, or ``check`` failed.
    """
    path = Path(path)
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object (a {type(data).__name__})")
        content, sealed = unseal(data)
        problem = check(content)
        if problem is not None:
            raise ValueError(problem)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        what = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DamagedFileError(f"{path}: damaged {kind} ({what}); {remedy}", path) from None
    return content, sealed


def content_digest(obj: Any) -> str:
    """SHA-256 (hex) of a ``torch.save``/``np.save`` payload's content: mappings (keys sorted,
    :data:`DIGEST_KEY` left out at the top), lists and tuples (alike), ``None``, booleans,
    integers, floats (exact), strings, and arrays/tensors (dtype, shape, bytes; moved to the
    CPU).

    Raises:
        TypeError: another type.
    """
    h = hashlib.sha256()
    top = dict(obj) if isinstance(obj, Mapping) else obj
    if isinstance(top, dict):
        top.pop(DIGEST_KEY, None)
    _feed(h, top)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, int):
        h.update(b"i%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"f" + obj.hex().encode() + b";")
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        h.update(b"s%d:" % len(raw) + raw)
    elif isinstance(obj, Mapping):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        h.update(b"d%d:" % len(items))
        for key, value in items:
            _feed(h, str(key))
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(b"l%d:" % len(obj))
        for value in obj:
            _feed(h, value)
    elif hasattr(obj, "detach") and hasattr(obj, "dtype"):  # a torch tensor (any dtype)
        import torch

        flat = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"t{obj.dtype}{tuple(obj.shape)}:".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif hasattr(obj, "dtype") and hasattr(obj, "tobytes"):  # a numpy array
        h.update(f"a{obj.dtype.str}{tuple(obj.shape)}:".encode())
        h.update(obj.tobytes(order="C"))
    else:
        raise TypeError(f"content_digest: cannot hash a {type(obj).__name__}")
