"""``python -m fastmri_pun.export``: see :mod:`fastmri_pun.cli.export`."""

from .cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
