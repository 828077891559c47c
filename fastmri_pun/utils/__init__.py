"""Helpers every layer may use (they import nothing else from the package): atomic file writes,
Markdown tables, stable seeds and cache folders, config checks."""

from .config_checks import check_field_types, unknown_keys_message
from .io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temp_files,
    save_figure,
)
from .markdown import markdown_table
from .seeding import default_cache_dir, stable_seed

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_field_types",
    "default_cache_dir",
    "markdown_table",
    "remove_stale_temp_files",
    "save_figure",
    "stable_seed",
    "unknown_keys_message",
]
