"""Shared helpers for the benchmark scripts in this folder.

- :func:`machine_description` — CPU model, cores, load, torch version and thread count (and the
  GPU, where CUDA is present).
- :func:`add_device_argument` / :func:`resolve_device` — every script's ``--device`` (``auto``: CUDA
  when present, else CPU).
- :func:`time_interleaved` — warm-up, then repeats of several callables in rotating order (so that
  load from other processes hits every variant alike); median/min/max in milliseconds; without
  autograd, or with it for training steps.
- :func:`peak_rss_delta` / :func:`peak_bytes` and :func:`run_children` — peak memory of one call
  (resident set on CPU, the caching allocator's peak on CUDA), measured in a fresh subprocess (torch's CPU allocator calls ``malloc`` directly, so Python's ``tracemalloc``
  does not see tensors; the kernel's peak-RSS counter does).
- :func:`saved_tensor_bytes` — bytes autograd keeps for backward (unique storages).
- :func:`command_line`, :func:`table`, :func:`target` and :func:`write_results` — a benchmark's measurements as one JSON
  file in ``benchmarks/results/`` (the schema ``render.py`` turns into ``RESULTS.md``).

Scripts import this module as ``common`` (``python benchmarks/<script>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastmri_pun.utils import atomic_write_json

RESULTS_DIR = Path(__file__).with_name("results")

# Environment for memory-measuring children: a fixed glibc mmap threshold sends every allocation
# >= 64 KiB to mmap and returns it to the OS on free, so the resident set follows live tensors
# instead of glibc's retained heap (setting it also disables glibc's dynamic threshold). One
# thread: peak memory does not depend on it, and on a loaded machine two OpenMP threads
# spin-waiting for each other made a small forward + backward ~50x slower.
MEASURE_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1/5/15-minute load averages as ``"a, b, c"`` (``"n/a"`` where the OS has none)."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def machine_description() -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, load, OS, Python, torch and its threads."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 0
    described = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "load average (1/5/15 min) at start": load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (intra-op threads {torch.get_num_threads()}, "
        f"inter-op threads {torch.get_num_interop_threads()})",
    }
    if torch.cuda.is_available():
        described["gpu"] = ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
    return described


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N``: where the benchmark's tensors live (auto: CUDA when
    present); parsed into a ``torch.device`` (:func:`resolve_device`), a bad value is a usage
    error."""
    parser.add_argument(
        "--device",
        type=_device_argument,
        default="auto",
        help="torch device to benchmark on: auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )


def _device_argument(name: str) -> torch.device:
    """:func:`resolve_device` as an argparse type: a bad value is a usage error."""
    try:
        return resolve_device(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` of a ``--device`` value.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown device string.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: CUDA is not available on this machine")
    return device


def synchronize(device: torch.device | None) -> None:
    """Wait for queued CUDA work (timings of asynchronous kernels); nothing on CPU."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Statistics of one callable, in milliseconds: wall clock (median, min, max) and the
    median process CPU time (which, with one torch thread, counts only this process's own work
    and not the time slices lost to other processes)."""

    median_ms: float
    min_ms: float
    max_ms: float
    cpu_median_ms: float
    repeats: int


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    autograd: bool = False,
    device: torch.device | None = None,
) -> dict[str, Timing]:
    """Time several callables side by side.

    Each callable runs ``warmup`` times, then ``repeats`` rounds; every round runs each callable
    once, starting at a different one each round, so slow phases caused by other processes are
    spread over all variants. Runs under ``torch.inference_mode()``, or with autograd as the
    caller has it when ``autograd=True`` (training steps: forward + backward). On a CUDA
    ``device`` every call is followed by a synchronisation, so the time covers its kernels.

    Raises:
        ValueError: ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    names = list(fns)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with contextlib.nullcontext() if autograd else torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                fns[name]()
            synchronize(device)
        for r in range(repeats):
            for i in range(len(names)):
                name = names[(r + i) % len(names)]
                c0, t0 = time.process_time_ns(), time.perf_counter_ns()
                fns[name]()
                synchronize(device)
                wall[name].append((time.perf_counter_ns() - t0) / 1e6)
                cpu[name].append((time.process_time_ns() - c0) / 1e6)
    return {
        n: Timing(
            statistics.median(wall[n]),
            min(wall[n]),
            max(wall[n]),
            statistics.median(cpu[n]),
            repeats,
        )
        for n in names
    }


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_rss_delta(fn: Callable[[], object]) -> int:
    """Peak resident-set growth in bytes while ``fn()`` runs (Linux only).

    Resets the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``), reads ``VmRSS`` before
    and ``VmHWM`` after. Meaningful in a fresh process started with :data:`MEASURE_ENV` (see
    :func:`run_children`) after one warm-up call, so library initialisation is not counted.

    Raises:
        RuntimeError: not on Linux (no ``/proc/self/clear_refs``).
    """
    if not Path("/proc/self/clear_refs").exists():
        raise RuntimeError("peak-RSS measurement needs Linux /proc/self/clear_refs")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory growth of one ``step``: resident set on CPU (:func:`peak_rss_delta`), the
    caching allocator's peak above what was allocated before on CUDA."""
    if device.type != "cuda":
        return peak_rss_delta(step)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def saved_tensor_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs.

    Counts each storage once (a tensor saved by several ops, or views of one buffer), and skips
    the storages of ``exclude`` (inputs that exist anyway).
    """
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def run_children(argvs: Sequence[Sequence[str]], timeout: float = 600.0) -> list[dict]:
    """Run ``python *argv`` for each argv in fresh processes with :data:`MEASURE_ENV`, all at once
    (their peak RSS values are per process, so running them side by side does not mix them up);
    return the JSON object each printed on its last stdout line.

    Raises:
        RuntimeError: a child ran longer than ``timeout`` seconds, failed, or printed nothing.
    """
    env = {**os.environ, **MEASURE_ENV}
    procs = [
        subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for argv in argvs
    ]
    results = []
    for argv, proc in zip(argvs, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(
                f"benchmark child {list(argv)} ran longer than {timeout} s"
            ) from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"benchmark child {list(argv)} failed with exit code {proc.returncode}: "
                f"{err.strip()[-2000:]}"
            )
        lines = out.strip().splitlines()
        if not lines:
            raise RuntimeError(f"benchmark child {list(argv)} printed nothing")
        results.append(json.loads(lines[-1]))
    return results


# --------------------------------------------------------------------------- results


def command_line(script: str, settings: Mapping[str, Any]) -> str:
    """``python SCRIPT --key value ...`` for the non-``None`` settings (lists space-separated)."""
    parts = [f"python {script}"]
    for key, value in settings.items():
        if value is not None:
            shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else value
            parts.append(f"--{key} {shown}")
    return " ".join(parts)


def table(
    caption: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    formats: Sequence[str],
    align: str,
) -> dict[str, Any]:
    """One table of a results file: raw values per row, and how ``render.py`` shows them.

    Args:
        caption: one line, becomes a ``###`` heading.
        header: column titles (units in the title, e.g. ``"wall median ms"``).
        rows: one sequence of values per row (numbers unrounded; ``None`` shows as ``—``).
        formats: a ``format()`` spec per column (``".2f"``, ``".1e"``; ``""``: ``str``).
        align: ``"l"`` or ``"r"`` per column (see ``fastmri_pun.utils.markdown.markdown_table``).

    Raises:
        ValueError: ``formats``, ``align`` or a row has another number of cells than ``header``.
    """
    rows = [list(r) for r in rows]
    n = len(header)
    if len(formats) != n or len(align) != n or any(len(r) != n for r in rows):
        raise ValueError(f"table {caption!r}: formats, align and every row need {n} cells")
    return {
        "caption": caption,
        "header": list(header),
        "formats": list(formats),
        "align": align,
        "rows": rows,
    }


def target(name: str, value: float | None, op: str, bound: float) -> dict[str, Any]:
    """A target with its verdict: ``met`` is ``value <= bound`` (``op="<="``) or ``value >=
    bound`` (``op=">="``); false when nothing was measured (``value=None``).

    Raises:
        ValueError: ``op`` is neither ``"<="`` nor ``">="``.
    """
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>=', got {op!r}")
    met = value is not None and (value <= bound if op == "<=" else value >= bound)
    return {"name": name, "value": value, "op": op, "bound": bound, "met": bool(met)}


def write_results(
    path: Path | str,
    *,
    title: str,
    command: str,
    machine: Mapping[str, str],
    settings: Mapping[str, Any],
    notes: Sequence[str],
    targets: Sequence[Mapping[str, Any]],
    tables: Sequence[Mapping[str, Any]],
) -> Path:
    """Write one benchmark's results atomically as JSON (the schema of ``render.py``).

    Args:
        path: e.g. ``benchmarks/results/physics.json``; the files render in name order.
        title: the ``##`` section title in ``RESULTS.md``.
        command: the command line that reproduces the numbers.
        machine: :func:`machine_description`, plus anything measured at the end.
        settings: the benchmark's parameters (JSON values).
        notes: short sentences on the method, one bullet each.
        targets: :func:`target` entries.
        tables: :func:`table` entries.

    Raises:
        ValueError: a value is NaN or infinite (nothing is written).
    """
    data = {
        "title": title,
        "command": command,
        "machine": dict(machine),
        "settings": dict(settings),
        "notes": list(notes),
        "targets": list(targets),
        "tables": list(tables),
    }
    return atomic_write_json(path, data, ensure_ascii=False)
